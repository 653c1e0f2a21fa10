#!/usr/bin/env python3
"""Helper of bench/adaptive.sh (see there for the experiment). Subcommands:

  poll       --url U --admin-key K --out FILE [--interval S]
             appends {"t_ms": unix ms, "config": GET /admin/v1/config} lines
             until the server stops answering (the active configuration
             over time, a cross-check of the switch log)
  knobs      --results DIR --out FILE
             picks, per static configuration, the sweep run with the highest
             goodput (ties: fewer failed requests, then lower p99 TTFT) and
             writes {"chosen": {config: {max_num_seqs, target_tpot_ms, ...}},
             "runs": [every sweep run's summary]}
  get-knobs  --knobs FILE --config C --default-seqs N --default-tpot T
             prints "max_num_seqs target_tpot_ms" for C (the defaults when
             the file or C is absent)
  agreement  --run DIR --tidal BIN --model M [--agree-tokens X] [--threads N]
             writes DIR/agreement_requests.jsonl ({"prompt_ids",
             "output_ids"} of every successful request of DIR/bench.json
             that carried both) and DIR/agreement.json (`tidal agreement`'s
             JSON, plus how many requests had no ids, or the reason it could
             not run)
  report     --results DIR --out-json FILE --out-png FILE [--slo-...]
             assembles adaptive.json from every run under DIR/runs and draws
             the PNG (gnuplot)

Each run directory (written by adaptive.sh) holds run.json (what was
served and how), bench.json (tidal-bench --json), and for servers with an
admin API switches.json, decisions.json, config_timeline.jsonl.

Python stdlib only.
"""
import argparse
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

# Variants in the order the plot stacks them (most accurate first, as
# docs/VARIANTS.md measures top-1 agreement); others are appended.
VARIANT_ORDER = ["base", "f32", "w4a16-g32", "w8a16-g32", "f16", "bf16", "int8-g32-rot", "int8-g32", "int8-rot",
                 "int8", "int4-g32", "int4-g64", "int4-g128", "w4a16-g128"]


def load_json(path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def write_json(path, obj):
    pathlib.Path(path).write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")


def http_get(url, key, timeout=5):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.load(resp)


# --- statistics --------------------------------------------------------------

def log_binom_pmf(n, k, p):
    if p <= 0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1:
        return 0.0 if k == n else -math.inf
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) +
            (n - k) * math.log1p(-p))


def binom_upper_tail(n, k, p):
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    terms = [log_binom_pmf(n, i, p) for i in range(k, n + 1)]
    m = max(terms)
    if m == -math.inf:
        return 0.0
    return min(1.0, math.exp(m) * sum(math.exp(t - m) for t in terms))


def clopper_pearson_lower(k, n, confidence):
    """Exact one-sided lower confidence bound of a binomial proportion (k successes of n)."""
    if n <= 0:
        return None
    if k <= 0:
        return 0.0
    alpha = 1.0 - confidence
    lo, hi = 0.0, k / n
    for _ in range(100):  # P(X >= k | p) rises with p; find p where it equals alpha
        mid = (lo + hi) / 2
        if binom_upper_tail(n, k, mid) < alpha:
            lo = mid
        else:
            hi = mid
    return lo


def percentile(values, p):
    """numpy's default (linear interpolation), as tidal-bench."""
    if not values:
        return None
    s = sorted(values)
    rank = p / 100.0 * (len(s) - 1)
    lo = int(math.floor(rank))
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (rank - lo)


# --- poll ----------------------------------------------------------------------

def cmd_poll(args):
    misses = 0
    with open(args.out, "a", encoding="utf-8") as out:
        while misses < args.max_misses:
            t_ms = int(time.time() * 1000)
            try:
                cfg = http_get(args.url + "/admin/v1/config", args.admin_key, timeout=args.interval + 2)
                misses = 0
                out.write(json.dumps({"t_ms": t_ms, "config": cfg}) + "\n")
                out.flush()
            except (OSError, ValueError):
                misses += 1
            time.sleep(args.interval)


# --- knobs ---------------------------------------------------------------------

def run_summary(run_dir):
    run = load_json(run_dir / "run.json", {})
    bench = load_json(run_dir / "bench.json")
    out = {"name": run_dir.name, "config": run.get("config"), "max_num_seqs": run.get("max_num_seqs"),
           "target_tpot_ms": run.get("target_tpot_ms")}
    if bench is None:
        out["error"] = "no bench.json (tidal-bench failed?)"
        return out
    s = bench["summary"]
    ok = [r for r in bench["requests"] if r["success"]]
    out.update({
        "goodput": s.get("request_goodput"),
        "throughput": s.get("request_throughput"),
        "completed": s.get("completed"),
        "failed": s.get("failed"),
        "duration_s": s.get("duration"),
        "p95_ttft_ms": percentile([r["ttft_s"] * 1000 for r in ok], 95),
        "p95_tpot_ms": percentile([r["tpot_s"] * 1000 for r in ok if r.get("tpot_s") is not None], 95),
        "p99_ttft_ms": s.get("p99_ttft_ms"),
        "load_average": load_average(run_dir),
    })
    return out


def cmd_knobs(args):
    runs = []
    for d in sorted((pathlib.Path(args.results) / "runs").iterdir()):
        run = load_json(d / "run.json", {})
        if run.get("kind") == "sweep":
            runs.append(run_summary(d))
    chosen = {}
    for r in runs:
        if r.get("goodput") is None:
            continue
        key = (r["goodput"], -(r["failed"] or 0), -(r["p99_ttft_ms"] or 0))
        best = chosen.get(r["config"])
        if best is None or key > best[0]:
            chosen[r["config"]] = (key, r)
    doc = {"how": "the sweep run with the highest goodput per configuration (ties: fewer failed, lower p99 TTFT), "
                  "all on the same trace",
           "trace": load_json(pathlib.Path(args.results) / "trace.meta.json"),
           "chosen": {c: {"max_num_seqs": r["max_num_seqs"], "target_tpot_ms": r["target_tpot_ms"],
                          "goodput": r["goodput"], "failed": r["failed"], "run": r["name"]}
                      for c, (_, r) in chosen.items()},
           "runs": runs}
    write_json(args.out, doc)
    for c, (_, r) in chosen.items():
        print(f"knobs: {c}: max_num_seqs {r['max_num_seqs']}, target_tpot_ms {r['target_tpot_ms']} "
              f"(goodput {r['goodput']:.3f} req/s, {r['failed']} failed)")


def cmd_get_knobs(args):
    doc = load_json(args.knobs, {}) if args.knobs else {}
    k = (doc or {}).get("chosen", {}).get(args.config)
    if k:
        print(k["max_num_seqs"], k["target_tpot_ms"])
    else:
        print(args.default_seqs, args.default_tpot)


# --- agreement -----------------------------------------------------------------

def cmd_agreement(args):
    run_dir = pathlib.Path(args.run)
    bench = load_json(run_dir / "bench.json")
    result = {"agree_tokens": args.agree_tokens}
    if bench is None:
        result["error"] = "no bench.json"
        write_json(run_dir / "agreement.json", result)
        return
    lines, missing = [], 0
    for r in bench["requests"]:
        if not r["success"]:
            continue
        p, o = r.get("prompt_token_ids"), r.get("output_token_ids")
        if not p or o is None:
            missing += 1
            continue
        lines.append({"prompt_ids": p, "output_ids": o})
    result["served"] = len(lines) + missing
    result["without_token_ids"] = missing
    req_path = run_dir / "agreement_requests.jsonl"
    with req_path.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    if not lines:
        result["error"] = ("no served request carried prompt_token_ids and output_token_ids "
                           "(the server ignores \"return_token_ids\")")
        write_json(run_dir / "agreement.json", result)
        print(f"agreement: {run_dir.name}: {result['error']}", file=sys.stderr)
        return
    cmd = [args.tidal, "agreement", "--model", args.model, "--requests", str(req_path),
           "--agree-tokens", str(args.agree_tokens)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.command:  # a replacement for `tidal agreement` (the same arguments follow it)
        cmd = args.command.split() + cmd[2:]
    result["command"] = " ".join(cmd)
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    result["seconds"] = round(time.time() - t0, 1)
    if p.returncode != 0:
        result["error"] = f"exit {p.returncode}: {p.stderr.strip()[-2000:]}"
    else:
        try:
            result["result"] = json.loads(p.stdout)
        except ValueError:
            result["error"] = "output is not JSON: " + p.stdout[-2000:]
    write_json(run_dir / "agreement.json", result)
    if "error" in result:
        print(f"agreement: {run_dir.name}: {result['error']}", file=sys.stderr)
    else:
        r = result["result"]
        print(f"agreement: {run_dir.name}: {r.get('agreed')}/{r.get('requests')} = {r.get('agreement')} "
              f"({result['seconds']} s)")


# --- report --------------------------------------------------------------------

def effective_ms(sw):
    """When a switch took effect: requested + prepare + wait for the step + pause."""
    secs = sum(float(sw.get(k) or 0) for k in ("prepare_seconds", "step_wait_seconds", "pause_seconds"))
    return sw["requested_at_ms"] + secs * 1000.0


def switches_of(run_dir):
    doc = load_json(run_dir / "switches.json", {}) or {}
    sws = doc.get("data", doc.get("switches", [])) if isinstance(doc, dict) else doc
    return [s for s in sws if isinstance(s, dict)]


def decisions_of(run_dir):
    doc = load_json(run_dir / "decisions.json", {}) or {}
    ds = doc.get("decisions", doc.get("data", [])) if isinstance(doc, dict) else doc
    return [d for d in ds if isinstance(d, dict)]


def config_label(cfg):
    if not cfg:
        return "?"
    label = cfg.get("variant", "?")
    layout = "".join(f"{k}{cfg[k]}" for k in ("tp", "pp", "dp") if cfg.get(k, 1) != 1)
    return label + (" " + layout if layout else "")


def timeline(run_dir, run, t0_ms, duration_s):
    """[(t_s, config dict)] of the configuration serving, from the switch log (else the polled config)."""
    done = sorted((s for s in switches_of(run_dir) if s.get("outcome") == "done"), key=effective_ms)
    points = []
    if done:
        points.append((0.0, done[0].get("from")))
        for s in done:
            points.append((max(0.0, (effective_ms(s) - t0_ms) / 1000.0), s.get("to")))
    polled = []
    tl = run_dir / "config_timeline.jsonl"
    if tl.exists():
        for line in tl.read_text().splitlines():
            try:
                e = json.loads(line)
                data = e["config"]["data"]
                polled.append(((e["t_ms"] - t0_ms) / 1000.0, data[0]["config"]))
            except (ValueError, KeyError, IndexError, TypeError):
                continue
    if not points and polled:
        before = [p for p in polled if p[0] <= 0]
        points.append((0.0, (before[-1] if before else polled[0])[1]))
        for t, c in polled:
            if t > 0 and c != points[-1][1]:
                points.append((t, c))
    if not points:
        points.append((0.0, {"variant": run.get("config"), "max_num_seqs": run.get("max_num_seqs"),
                             "target_tpot_ms": run.get("target_tpot_ms")}))
    # drop switches that took effect before the run (a static variant set through the admin API)
    last_before = [p for p in points if p[0] <= 0.0]
    points = [(0.0, last_before[-1][1] if last_before else points[0][1])] + [p for p in points if p[0] > 0.0]
    return points


def load_average(run_dir):
    """The 1/5/15-minute load averages before and after the run (loadavg.txt), or None."""
    try:
        text = (run_dir / "loadavg.txt").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, values = line.partition(":")
        try:
            out[key.strip()] = [float(v) for v in values.split()]
        except ValueError:
            continue
    return out or None


def summarize_run(run_dir, slo, args, cores=None):
    run = load_json(run_dir / "run.json", {})
    bench = load_json(run_dir / "bench.json")
    out = {"config": run.get("config"), "kind": run.get("kind")}
    load = load_average(run_dir)
    if load:
        out["load_average"] = load
        # The server's threads plus the client are ~THREADS+0.5 of load; more means other work shared the cores.
        if cores and max(v[0] for v in load.values() if v) > cores + 1:
            out["noisy"] = f"1-minute load average above {cores + 1} around the run: other processes shared the cores"
    for k in ("max_num_seqs", "target_tpot_ms", "how", "server_args"):
        if run.get(k) is not None:
            out[k] = run[k]
    if bench is None:
        out.update({"goodput": None, "agreement": None, "failed": None, "error": "tidal-bench wrote no JSON"})
        return out, None
    s = bench["summary"]
    ok = [r for r in bench["requests"] if r["success"]]
    out.update({
        "goodput": s.get("request_goodput"),
        "throughput": s.get("request_throughput"),
        "completed": s.get("completed"),
        "failed": s.get("failed"),
        "duration_s": s.get("duration"),
        "slo_met_requests": sum(1 for r in ok if meets(r, slo)),
        "p95_ttft_ms": percentile([r["ttft_s"] * 1000 for r in ok], 95),
        "p95_tpot_ms": percentile([r["tpot_s"] * 1000 for r in ok if r.get("tpot_s") is not None], 95),
        "mean_e2el_ms": s.get("mean_e2el_ms"),
        "output_tokens": s.get("total_output_tokens"),
    })
    if s.get("errors"):
        out["errors"] = s["errors"]
    # The served ids against the server's own usage counts (a check of the token-id plumbing).
    with_ids = [r for r in ok if r.get("output_token_ids") is not None and r.get("usage")]
    if with_ids:
        out["token_ids_count_mismatches"] = sum(
            1 for r in with_ids if len(r["output_token_ids"]) != r["usage"]["completion_tokens"] or
            len(r.get("prompt_token_ids") or []) != r["usage"]["prompt_tokens"])
    ag = load_json(run_dir / "agreement.json")
    if ag and "result" in ag:
        r = ag["result"]
        out["agreement"] = r.get("agreement")
        out["agreement_requests"] = r.get("requests")
        out["agreement_agreed"] = r.get("agreed")
        out["token_agreement"] = r.get("token_agreement")
        if r.get("agreed") is not None and r.get("requests"):
            out["agreement_lower_bound"] = clopper_pearson_lower(int(r["agreed"]), int(r["requests"]),
                                                                 slo["confidence"])
            out["meets_accuracy"] = out["agreement_lower_bound"] >= slo["accuracy"]
        if ag.get("without_token_ids"):
            out["agreement_without_token_ids"] = ag["without_token_ids"]
    else:
        out["agreement"] = None
        out["agreement_missing"] = (ag or {}).get("error", "not measured")
    t0_ms = bench["config"].get("start_unix_ms")
    if t0_ms is None:
        t0_ms = int(time.time() * 1000)
        out["note"] = "tidal-bench wrote no start_unix_ms: the configuration timeline is not placed"
    duration = s.get("duration") or 0
    tl = timeline(run_dir, run, t0_ms, duration)
    if run.get("kind") != "static":
        done = [sw for sw in switches_of(run_dir) if sw.get("outcome") == "done"
                and effective_ms(sw) >= t0_ms - 1000 * args.pre_run_switch_slack_s]
        out["switches"] = len(done)
        out["switch_outcomes"] = {}
        for sw in switches_of(run_dir):
            out["switch_outcomes"][sw.get("outcome", "?")] = out["switch_outcomes"].get(sw.get("outcome", "?"), 0) + 1
        ds = decisions_of(run_dir)
        out["decisions"] = len(ds)
        out["decisions_switching"] = sum(1 for d in ds if d.get("switch", d.get("change")))
        reasons = {}
        for d in ds:
            if d.get("reason"):
                reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
        if reasons:
            out["decision_reasons"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:20])
        time_in = {}
        bounds = [t for t, _ in tl] + [duration]
        for (t, c), t_next in zip(tl, bounds[1:]):
            label = config_label(c)
            time_in[label] = time_in.get(label, 0.0) + max(0.0, t_next - t)
        out["seconds_in_config"] = {k: round(v, 1) for k, v in time_in.items()}
        out["configs_over_time"] = [{"t_s": round(t, 2), "config": c} for t, c in tl]
    return out, {"bench": bench, "timeline": tl, "t0_ms": t0_ms, "run": run}


def meets(r, slo):
    if not r["success"]:
        return False
    if r["ttft_s"] * 1000 > slo["ttft_ms"]:
        return False
    tpot = r.get("tpot_s")
    return tpot is None or tpot * 1000 <= slo["tpot_ms"]


def targets(doc, slo):
    statics = {k: v for k, v in doc["static"].items() if v.get("goodput") is not None}
    adaptive = doc.get("adaptive") or {}
    out = {}
    if statics:
        best_any = max(statics, key=lambda k: statics[k]["goodput"])
        out["best_static"] = best_any
        out["best_static_goodput"] = statics[best_any]["goodput"]
        accurate = {k: v for k, v in statics.items() if v.get("meets_accuracy")}
        if accurate:
            best_acc = max(accurate, key=lambda k: accurate[k]["goodput"])
            out["best_static_meeting_accuracy"] = best_acc
            out["best_static_meeting_accuracy_goodput"] = accurate[best_acc]["goodput"]
        else:
            out["best_static_meeting_accuracy"] = None
            out["note"] = "no static configuration's agreement was measured to meet the accuracy objective"
    g = adaptive.get("goodput")
    if g is not None and statics:
        out["adaptive_vs_best_static"] = g / out["best_static_goodput"] if out["best_static_goodput"] else None
        out["goal_adaptive_ge_best_static"] = g >= out["best_static_goodput"]
        if out.get("best_static_meeting_accuracy"):
            base = out["best_static_meeting_accuracy_goodput"]
            out["adaptive_vs_best_accurate_static"] = g / base if base else None
            out["goal_2x_best_accurate_static"] = g >= 2 * base
        if adaptive.get("agreement") is not None:
            out["goal_agreement"] = adaptive["agreement"] >= slo["accuracy"]
        out["goal_no_failures"] = adaptive.get("failed") == 0
    return out


def plot(path_png, per_run, adaptive_names, slo, trace_meta, bin_s):
    if not shutil.which("gnuplot"):
        return "gnuplot is not installed (apt-get install gnuplot-nox)"
    t_end = max((d["bench"]["summary"].get("duration") or 0) for d in per_run.values()) or 1.0
    nbins = int(math.ceil(t_end / bin_s))
    blocks = []
    gp_plots = {"goodput": [], "ttft": [], "tpot": [], "config": []}

    def block(name, rows):
        blocks.append(f"${name} << EOD\n" + ("\n".join(rows) if rows else "0 NaN") + "\nEOD\n")

    # offered load per bin, from the trace (the first run's records' start times are the same trace)
    names = sorted(per_run)
    variants_seen = []
    for i, name in enumerate(names):
        d = per_run[name]
        recs = d["bench"]["requests"]
        good = [0] * nbins
        ttft = [[] for _ in range(nbins)]
        tpot = [[] for _ in range(nbins)]
        for r in recs:
            if not r["success"]:
                continue
            end = r["start_s"] + r["latency_s"]
            b = min(nbins - 1, int(end // bin_s))
            if meets(r, slo):
                good[b] += 1
            bs = min(nbins - 1, int(r["start_s"] // bin_s))
            ttft[bs].append(r["ttft_s"] * 1000)
            if r.get("tpot_s") is not None:
                tpot[bs].append(r["tpot_s"] * 1000)
        key = f"r{i}"
        block(key + "good", [f"{(b + 0.5) * bin_s:.1f} {good[b] / bin_s:.4f}" for b in range(nbins)])
        block(key + "lat", [f"{(b + 0.5) * bin_s:.1f} {percentile(ttft[b], 95) or 'NaN'} "
                            f"{percentile(tpot[b], 95) or 'NaN'}" for b in range(nbins)])
        adaptive = name in adaptive_names
        width = 3 if adaptive else 1
        title = name.replace("_", " ")
        gp_plots["goodput"].append(f"${key}good using 1:2 with steps lw {width} title '{title}'")
        gp_plots["ttft"].append(f"${key}lat using 1:2 with linespoints lw {width} pt 7 ps 0.4 title '{title}'")
        gp_plots["tpot"].append(f"${key}lat using 1:3 with linespoints lw {width} pt 7 ps 0.4 title '{title}'")
        if adaptive:
            for _, c in d["timeline"]:
                v = (c or {}).get("variant", "?")
                if v not in variants_seen:
                    variants_seen.append(v)
    arrivals = [0] * nbins
    first = per_run[names[0]]["bench"]["requests"]
    for r in first:
        arrivals[min(nbins - 1, int(r["start_s"] // bin_s))] += 1
    block("offered", [f"{(b + 0.5) * bin_s:.1f} {arrivals[b] / bin_s:.4f}" for b in range(nbins)])
    gp_plots["goodput"].insert(0, "$offered using 1:2 with steps lw 1 dt 2 lc rgb 'gray40' title 'offered (arrivals/s)'")

    order = [v for v in VARIANT_ORDER if v in variants_seen] + [v for v in variants_seen if v not in VARIANT_ORDER]
    ytics = ", ".join(f"'{v}' {i}" for i, v in enumerate(order))
    for name in adaptive_names:
        if name not in per_run:
            continue
        tl = per_run[name]["timeline"]
        rows = []
        for (t, c), nxt in zip(tl, [p[0] for p in tl[1:]] + [t_end]):
            v = order.index((c or {}).get("variant", "?")) if (c or {}).get("variant", "?") in order else 0
            seqs = (c or {}).get("max_num_seqs") or "NaN"
            rows.append(f"{t:.2f} {v} {seqs}")
            rows.append(f"{nxt:.2f} {v} {seqs}")
        key = "cfg" + name.replace("-", "_").replace("+", "_")
        block(key, rows)
        gp_plots["config"].append(f"${key} using 1:2 with lines lw 3 title '{name} variant'")
        gp_plots["config"].append(f"${key} using 1:3 axes x1y2 with lines lw 1 dt 3 title '{name} max_num_seqs'")

    phase_lines = ""
    for p in (trace_meta or {}).get("phases", [])[1:]:
        phase_lines += f"set arrow from {p['start_s']},graph 0 to {p['start_s']},graph 1 nohead dt 3 lc rgb 'gray60'\n"
    title = "tidal adaptive experiment"
    if trace_meta:
        title += " - phases " + ", ".join(f"{p['end_s'] - p['start_s']:g} s at {p['rate_rps']:g}/s"
                                          for p in trace_meta.get("phases", []))
    script = "".join(blocks)
    script += (f"set terminal pngcairo noenhanced size 1400,1300 font 'sans,10'\nset output '{path_png}'\n"
               f"set multiplot layout 4,1 title '{title}'\n"
               f"set grid\nset key outside right top\nset xrange [0:{t_end:.1f}]\nset lmargin 12\nset rmargin 34\n"
               + phase_lines)
    script += (f"set title 'goodput: requests finishing in each {bin_s:g} s that met TTFT <= {slo['ttft_ms']:g} ms "
               f"and TPOT <= {slo['tpot_ms']:g} ms'\nset ylabel 'requests/s'\nset yrange [0:*]\n"
               "plot " + ", ".join(gp_plots["goodput"]) + "\n")
    script += (f"set title 'TTFT p95 of the requests sent in each {bin_s:g} s (SLO {slo['ttft_ms']:g} ms)'\n"
               "set ylabel 'ms'\nset logscale y\nset yrange [*:*]\n"
               f"plot {slo['ttft_ms']} with lines dt 2 lc rgb 'red' title 'SLO', " + ", ".join(gp_plots["ttft"]) + "\n")
    script += (f"set title 'TPOT p95 of the requests sent in each {bin_s:g} s (SLO {slo['tpot_ms']:g} ms)'\n"
               f"plot {slo['tpot_ms']} with lines dt 2 lc rgb 'red' title 'SLO', " + ", ".join(gp_plots["tpot"]) + "\n")
    script += "unset logscale y\nset xlabel 's since the trace started'\n"
    if gp_plots["config"]:
        script += (f"set title 'active configuration of the adaptive server'\nset ylabel 'variant'\n"
                   f"set ytics ({ytics})\nset yrange [-0.5:{len(order) - 0.5}]\nset y2label 'max_num_seqs'\n"
                   "set y2tics\nset y2range [0:*]\nplot " + ", ".join(gp_plots["config"]) + "\n")
    else:
        script += ("set title 'active configuration: no adaptive run'\nunset ytics\nset yrange [0:1]\n"
                   "plot NaN notitle\n")
    script += "unset multiplot\n"
    script_path = pathlib.Path(path_png).with_suffix(".gnuplot")
    script_path.write_text(script)
    p = subprocess.run(["gnuplot", str(script_path)], capture_output=True, text=True)
    if p.returncode != 0:
        return f"gnuplot failed: {p.stderr.strip()[-1000:]}"
    return ""


def cmd_report(args):
    results = pathlib.Path(args.results)
    slo = {"ttft_ms": args.slo_ttft_ms, "tpot_ms": args.slo_tpot_ms, "accuracy": args.accuracy,
           "confidence": args.confidence, "agree_tokens": args.agree_tokens}
    trace_meta = load_json(results / "trace.meta.json")
    try:
        cores = int((load_json(results / "experiment.json", {}) or {}).get("cores") or os.cpu_count())
    except (TypeError, ValueError):
        cores = os.cpu_count()
    doc = {"static": {}, "adaptive": None, "switches": None}
    per_run = {}
    adaptive_names = []
    runs_dir = results / "runs"
    for d in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        run = load_json(d / "run.json", {})
        kind = run.get("kind")
        if kind not in ("static", "adaptive"):
            continue
        summary, data = summarize_run(d, slo, args, cores)
        if kind == "static":
            doc["static"][run["config"]] = summary
            if data:
                per_run[run["config"]] = data
        else:
            name = run.get("name", d.name)
            key = "adaptive" if name == "adaptive" else name
            doc[key] = summary
            if data:
                per_run[name] = data
                adaptive_names.append(name)
    if doc["adaptive"] is not None:
        doc["switches"] = doc["adaptive"].get("switches")
    doc["targets"] = targets(doc, slo)
    doc["slo"] = slo
    doc["trace"] = trace_meta
    doc["knobs"] = load_json(results / "knobs.json")
    doc["experiment"] = load_json(results / "experiment.json")
    out = pathlib.Path(args.out_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, doc)
    print(f"report: wrote {out}")
    print(f"{'configuration':<22} {'goodput':>8} {'thruput':>8} {'failed':>6} {'p95 TTFT':>9} {'p95 TPOT':>9} "
          f"{'agreement':>9} {'lower bd':>8}")
    rows = [(k, v) for k, v in doc["static"].items()] + [(k, doc[k]) for k in doc if k.startswith("adaptive") and doc[k]]
    for k, v in rows:
        def f(x, d=3):
            return "n/a" if x is None else f"{x:.{d}f}"
        print(f"{k:<22} {f(v.get('goodput')):>8} {f(v.get('throughput')):>8} {str(v.get('failed')):>6} "
              f"{f(v.get('p95_ttft_ms'), 0):>9} {f(v.get('p95_tpot_ms'), 1):>9} {f(v.get('agreement')):>9} "
              f"{f(v.get('agreement_lower_bound')):>8}")
    for k, v in rows:
        if v.get("noisy"):
            print(f"warning: {k}: {v['noisy']} ({v['load_average']})")
    print("targets: " + json.dumps(doc["targets"]))
    if per_run and args.out_png:
        why = plot(args.out_png, per_run, adaptive_names, slo, trace_meta, args.bin_s)
        print(f"report: plot skipped: {why}" if why else f"report: wrote {args.out_png}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("poll")
    p.add_argument("--url", required=True)
    p.add_argument("--admin-key", default=os.environ.get("TIDAL_ADMIN_KEY", ""))
    p.add_argument("--out", required=True)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--max-misses", type=int, default=5, help="stop after this many failed polls in a row")
    p = sub.add_parser("knobs")
    p.add_argument("--results", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("get-knobs")
    p.add_argument("--knobs")
    p.add_argument("--config", required=True)
    p.add_argument("--default-seqs", required=True)
    p.add_argument("--default-tpot", required=True)
    p = sub.add_parser("agreement")
    p.add_argument("--run", required=True)
    p.add_argument("--tidal", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--agree-tokens", type=float, default=0.9)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--command", help="run this instead of `TIDAL agreement` (testing)")
    p = sub.add_parser("report")
    p.add_argument("--results", required=True)
    p.add_argument("--out-json", required=True)
    p.add_argument("--out-png", default="")
    p.add_argument("--slo-ttft-ms", type=float, default=1000)
    p.add_argument("--slo-tpot-ms", type=float, default=50)
    p.add_argument("--accuracy", type=float, default=0.95)
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--agree-tokens", type=float, default=0.9)
    p.add_argument("--bin-s", type=float, default=10.0, help="width of the plot's time bins")
    p.add_argument("--pre-run-switch-slack-s", type=float, default=0.0,
                   help="count switches that took effect this long before the trace started")
    args = ap.parse_args()
    {"poll": cmd_poll, "knobs": cmd_knobs, "get-knobs": cmd_get_knobs, "agreement": cmd_agreement,
     "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Driver of bench/reconfig_soak.sh (see there for the command): against a
running `tidal serve --admin-key`, runs a baseline tidal-bench load, then the
same load again while it performs N live switches one after another, and
prints what the switches cost and what the requests in flight saw.

Python stdlib + requests. Writes into --results:
  baseline.json / baseline.txt   tidal-bench --json output and its report (no switches)
  soak.json / soak.txt           the same during the switches
  switch_replies.json            every PUT /admin/v1/config?wait=true: target, HTTP status, reply, wall seconds, 409 retries
  switches.json                  GET /admin/v1/switches at the end (the server's switch log, raw)
  config_end.json, metrics_end.txt   GET /admin/v1/config and /metrics at the end
  report.md                      the tables printed
Exit status: 0 when every request and every switch succeeded, 1 otherwise,
2 for bad arguments.
"""
import argparse
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import time

import requests

LAYOUT_RE = re.compile(r"(tp|pp|dp)(\d+)")


def parse_layout(name):
    """'tp1' -> (1,1,1), 'tp3' -> (3,1,1), 'pp2' -> (1,2,1), 'dp2' -> (1,1,2), 'tp3dp2' -> (3,1,2)."""
    parts = LAYOUT_RE.findall(name)
    if not parts or "".join(k + v for k, v in parts) != name:
        raise argparse.ArgumentTypeError(f"bad layout '{name}' (e.g. tp1, tp3, pp2, dp2, tp3dp2)")
    d = {"tp": 1, "pp": 1, "dp": 1}
    for k, v in parts:
        d[k] = int(v)
    return d


def percentile(values, p):
    """Linear interpolation between closest ranks (as tidal-bench's metrics.cpp)."""
    if not values:
        return float("nan")
    s = sorted(values)
    rank = p / 100.0 * (len(s) - 1)
    lo = int(math.floor(rank))
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (rank - lo)


def mean(values):
    return sum(values) / len(values) if values else float("nan")


def fmt(x, digits=1):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Soak:
    def __init__(self, a):
        self.a = a
        self.url = a.url.rstrip("/")
        self.out = pathlib.Path(a.results)
        self.admin = {"Authorization": f"Bearer {a.admin_key}"}
        self.problems = []  # lines for the verdict

    # ---- server ----------------------------------------------------------
    def server_alive(self):
        if not self.a.server_pid:
            return True
        try:
            os.kill(self.a.server_pid, 0)
            return True
        except OSError:
            return False

    def server_log_tail(self, n=40):
        if not self.a.server_log or not os.path.exists(self.a.server_log):
            return ""
        lines = pathlib.Path(self.a.server_log).read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def metrics(self):
        r = requests.get(self.url + "/metrics", timeout=10)
        r.raise_for_status()
        out = {}
        for line in r.text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out, r.text

    # ---- load ------------------------------------------------------------
    def bench_cmd(self, num_prompts, json_path, seed):
        a = self.a
        return [a.bench, "--base-url", self.url, "--model", a.model_name, "--endpoint", "completions",
                "--dataset", "random", "--random-input-len", str(a.input_len), "--random-output-len",
                str(a.output_len), "--random-vocab-size", str(a.vocab_size), "--num-prompts", str(num_prompts),
                "--max-concurrency", str(a.concurrency), "--request-rate", "inf", "--ignore-eos",
                "--seed", str(seed), "--timeout", str(a.request_timeout), "--ready-check-timeout", "60",
                "--disable-progress", "--json", str(json_path)]

    def start_bench(self, tag, num_prompts, seed):
        cmd = self.bench_cmd(num_prompts, self.out / f"{tag}.json", seed)
        (self.out / f"{tag}.cmd").write_text(" ".join(cmd) + "\n")
        stdout = open(self.out / f"{tag}.txt", "w")
        t_launch = time.time()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, text=True)
        return proc, stdout, t_launch

    def finish_bench(self, tag, proc, stdout, timeout):
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            stdout.close()
            self.problems.append(f"{tag}: tidal-bench did not finish within {timeout:.0f} s (killed); "
                                 f"server log tail:\n{self.server_log_tail()}")
            return None, None
        t_exit = time.time()
        stdout.close()
        path = self.out / f"{tag}.json"
        if rc != 0 or not path.exists():
            text = (self.out / f"{tag}.txt").read_text(errors="replace")
            self.problems.append(f"{tag}: tidal-bench exited with {rc}:\n{text[-3000:]}\n"
                                 f"server log tail:\n{self.server_log_tail()}")
            return None, None
        doc = json.loads(path.read_text())
        return doc, t_exit

    def check_requests(self, tag, doc):
        """Failed requests (tidal-bench's count and each record), and streams
        that did not produce exactly max_tokens (--ignore-eos)."""
        s = doc["summary"]
        reqs = doc["requests"]
        failed = [r for r in reqs if not r["success"]]
        if s["failed"] or failed:
            errs = {}
            for r in failed:
                errs[r["error"]] = errs.get(r["error"], 0) + 1
            self.problems.append(f"{tag}: {s['failed']} failed requests; errors: {json.dumps(errs)}")
        short = [r for r in reqs if r["success"] and r["output_tokens"] != r["expected_output_len"]]
        if short:
            ex = short[0]
            self.problems.append(
                f"{tag}: {len(short)} successful requests returned a different number of tokens than asked "
                f"(--ignore-eos); e.g. request {ex['index']}: {ex['output_tokens']} of {ex['expected_output_len']}, "
                f"finish_reason {ex['finish_reason']}")

    # ---- switches --------------------------------------------------------
    def targets(self):
        """Fixed cycle: kind i%3 = variant, layout, variant+layout; the
        variant and the layout each advance one step in their own list when
        they change."""
        vi, li = -1, 0  # start: whatever the server serves; the first target is variants[0], layouts[0]
        out = []
        for i in range(self.a.switches):
            kind = ("variant", "layout", "variant+layout")[i % 3]
            if i == 0:
                vi, li = 0, 0
            else:
                if "variant" in kind:
                    vi = (vi + 1) % len(self.a.variants)
                if "layout" in kind:
                    li = (li + 1) % len(self.a.layouts)
            body = {"model": self.a.model_name, "variant": self.a.variants[vi], **parse_layout(self.a.layouts[li])}
            out.append((kind, self.a.layouts[li], body))
        return out

    def put_switch(self, body):
        """PUT ?wait=true, retrying on 409. Returns (status, reply json or text, wall s, retries)."""
        retries = 0
        t = time.monotonic()
        while True:
            r = requests.put(self.url + "/admin/v1/config?wait=true", json=body, headers=self.admin,
                             timeout=self.a.switch_timeout)
            if r.status_code != 409:
                break
            retries += 1
            if time.monotonic() - t > self.a.switch_timeout:
                break
            time.sleep(0.2)
        try:
            reply = r.json()
        except ValueError:
            reply = r.text
        return r.status_code, reply, time.monotonic() - t, retries

    # ---- the run ---------------------------------------------------------
    def run(self):
        a = self.a
        self.out.mkdir(parents=True, exist_ok=True)
        start_cfg = requests.get(self.url + "/admin/v1/config", headers=self.admin, timeout=10).json()
        (self.out / "config_start.json").write_text(json.dumps(start_cfg, indent=1))
        c0 = start_cfg["data"][0]["config"]
        start_desc = f"{c0['variant']} tp{c0['tp']} pp{c0['pp']} dp{c0['dp']}"

        # 1. baseline: same load, no switches, the configuration the server started with.
        log(f"baseline: {a.baseline_prompts} requests ({a.input_len} in / {a.output_len} out tokens, "
            f"concurrency {a.concurrency}) on {start_desc}")
        proc, fh, _ = self.start_bench("baseline", a.baseline_prompts, a.seed)
        base, _ = self.finish_bench("baseline", proc, fh, a.bench_timeout)
        if base is None:
            return self.verdict(None, None, [], [], start_desc)
        self.check_requests("baseline", base)
        bs = base["summary"]
        log(f"baseline: {bs['completed']} done, {bs['failed']} failed in {bs['duration']:.1f} s "
            f"({bs['request_throughput']:.2f} req/s)")

        # 2. soak: enough requests to outlast the switches (estimated from the baseline's rate).
        targets = self.targets()
        if a.soak_prompts > 0:
            n_soak = a.soak_prompts
        else:
            est_s = a.switches * (a.est_switch_s + a.switch_gap_s) + 10
            n_soak = math.ceil(bs["request_throughput"] * est_s * 1.3) + a.concurrency
            n_soak = max(4 * a.concurrency, min(n_soak, a.max_soak_prompts))
        log(f"soak: {n_soak} requests, {a.switches} switches over variants {','.join(a.variants)} "
            f"x layouts {','.join(a.layouts)}")
        proc, fh, t_launch = self.start_bench("soak", n_soak, a.seed + 1)
        # Start switching once requests are running.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            m, _ = self.metrics()
            if m.get("tidal:num_requests_running", 0) >= min(a.concurrency, 2):
                break
            time.sleep(0.1)

        replies = []
        after_load = 0
        aborted = None
        for i, (kind, layout_name, body) in enumerate(targets):
            if proc.poll() is not None:
                after_load += 1
            try:
                status, reply, wall, retries = self.put_switch(body)
            except requests.RequestException as e:
                aborted = (f"switch {i + 1}/{len(targets)} to {body}: {type(e).__name__}: {e}; server "
                           f"{'alive' if self.server_alive() else 'DEAD'}; server log tail:\n{self.server_log_tail()}")
                break
            rec = {"n": i + 1, "expected_kind": kind, "layout": layout_name, "body": body, "status": status,
                   "reply": reply, "wall_seconds": wall, "retries_409": retries, "t_reply": time.time(),
                   "bench_running": proc.poll() is None}
            replies.append(rec)
            ok = status == 200 and isinstance(reply, dict) and reply.get("outcome") == "done"
            short = (f"{reply.get('kind')} {reply.get('outcome')} prep {reply.get('prepare_seconds', 0):.2f}s "
                     f"pause {1e3 * reply.get('pause_seconds', 0):.1f}ms moved {reply.get('requests_moved')} "
                     f"recompute {reply.get('tokens_recomputed')}" if isinstance(reply, dict) and status == 200
                     else f"HTTP {status}: {json.dumps(reply)[:300]}")
            if not ok or i < 3 or (i + 1) % 10 == 0:
                log(f"switch {i + 1}/{len(targets)} -> {body['variant']} {layout_name}: {short} "
                    f"(wall {wall:.2f}s{', 409 x' + str(retries) if retries else ''})")
            if not self.server_alive():
                aborted = f"server died after switch {i + 1}; server log tail:\n{self.server_log_tail()}"
                break
            time.sleep(a.switch_gap_s)
        (self.out / "switch_replies.json").write_text(json.dumps(replies, indent=1))
        if aborted:
            self.problems.append("switching aborted: " + aborted)
        if after_load:
            self.problems.append(f"note: the load ended before the last {after_load} switches "
                                 f"(raise --soak-prompts or --est-switch-s)")
        log(f"switches sent: {len(replies)}; waiting for the soak load to finish")
        soak, t_exit = self.finish_bench("soak", proc, fh, a.bench_timeout)

        switches = []
        try:
            sw = requests.get(self.url + "/admin/v1/switches", headers=self.admin, timeout=10)
            (self.out / "switches.json").write_text(json.dumps(sw.json(), indent=1))
            switches = sw.json()["data"]
            (self.out / "config_end.json").write_text(
                json.dumps(requests.get(self.url + "/admin/v1/config", headers=self.admin, timeout=10).json(),
                           indent=1))
            (self.out / "metrics_end.txt").write_text(self.metrics()[1])
        except (requests.RequestException, ValueError) as e:
            self.problems.append(f"could not read the switch log / config / metrics at the end: {e}; "
                                 f"server log tail:\n{self.server_log_tail()}")
        if soak is not None:
            self.check_requests("soak", soak)
            soak["_t0"] = t_exit - soak["summary"]["duration"]  # approx. wall time of the soak run's start
        return self.verdict(base, soak, replies, switches, start_desc)

    # ---- report ----------------------------------------------------------
    def inflight_split(self, soak, switches):
        """Requests of the soak run whose lifetime spans a swap (approximate:
        the run's start is taken as its exit time minus its duration; a swap
        happens at requested_at + prepare_seconds), and the inter-token gaps
        that contain one."""
        swaps = sorted(s["requested_at_ms"] / 1000.0 + s["prepare_seconds"]
                       for s in switches if s["outcome"] == "done")
        t0 = soak["_t0"]
        span, rest, gaps_span, gaps_rest = [], [], [], []
        for r in soak["requests"]:
            if not r["success"]:
                continue
            b = t0 + r["start_s"]
            e = b + r["latency_s"]
            (span if any(b <= w <= e for w in swaps) else rest).append(r)
            t = b + r["ttft_s"]
            for g in r["itl_s"]:
                (gaps_span if any(t <= w <= t + g for w in swaps) else gaps_rest).append(g)
                t += g
        return span, rest, gaps_span, gaps_rest

    @staticmethod
    def req_stats(reqs, gaps=None):
        tpot = [r["tpot_s"] for r in reqs if r["tpot_s"] is not None and r["output_tokens"] > 1]
        itl = gaps if gaps is not None else [g for r in reqs for g in r["itl_s"]]
        e2e = [r["latency_s"] for r in reqs]
        ttft = [r["ttft_s"] for r in reqs]
        ms = lambda v, p: percentile(v, p) * 1000 if v else float("nan")
        return {"n": len(reqs), "ttft": (ms(ttft, 50), ms(ttft, 99)), "tpot": (ms(tpot, 50), ms(tpot, 99)),
                "itl": (ms(itl, 50), ms(itl, 99)), "e2el": (ms(e2e, 50), ms(e2e, 99)),
                "itl_max": max(itl) * 1000 if itl else float("nan")}

    @staticmethod
    def summary_stats(s):
        return {"n": s["completed"], "ttft": (s["median_ttft_ms"], s["p99_ttft_ms"]),
                "tpot": (s["median_tpot_ms"], s["p99_tpot_ms"]), "itl": (s["median_itl_ms"], s["p99_itl_ms"]),
                "e2el": (s["median_e2el_ms"], s["p99_e2el_ms"])}

    def verdict(self, base, soak, replies, switches, start_desc):
        a = self.a
        lines = []
        p = lines.append
        p(f"## Live reconfiguration soak: {a.model_name}, {a.switches} switches requested")
        p("")
        p(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; machine: {os.cpu_count()} cores, "
          f"load average now {open('/proc/loadavg').read().split()[:3]}")
        p(f"- server: {a.server_desc}")
        p(f"- load: tidal-bench random {a.input_len} in / {a.output_len} out tokens (--ignore-eos), "
          f"concurrency {a.concurrency}; baseline on the start configuration ({start_desc}), no switches")
        p(f"- cycle: kinds variant, layout, variant+layout in turn; variants {', '.join(a.variants)}; "
          f"layouts {', '.join(a.layouts)}; {a.switch_gap_s} s between switches")
        p("")

        # Switches: the server's log, restricted to this run's (origin operator, ids of our replies).
        ids = {r["reply"]["id"] for r in replies if isinstance(r["reply"], dict) and "id" in r["reply"]}
        recs = [s for s in switches if s["id"] in ids] or \
               [r["reply"] for r in replies if isinstance(r["reply"], dict) and "outcome" in r["reply"]]
        rejected = [r for r in replies if r["status"] != 200]
        failed = [s for s in recs if s["outcome"] == "failed"]
        unchanged = [s for s in recs if s["outcome"] == "unchanged"]
        kind_mismatch = [r for r in replies if r["status"] == 200 and isinstance(r["reply"], dict)
                         and r["reply"].get("kind") != r["expected_kind"]]
        retries = sum(r["retries_409"] for r in replies)
        p(f"### Switches: {len(replies)} sent, {sum(1 for s in recs if s['outcome'] == 'done')} done, "
          f"{len(failed)} failed, {len(unchanged)} unchanged, {len(rejected)} rejected (non-200), "
          f"{retries} 409 retries, {sum(1 for r in replies if r['bench_running'])} while the load ran")
        p("")
        p("| kind | count | failed | prepare p50 (s) | prepare p99 (s) | pause p50 (ms) | pause p99 (ms) "
          "| pause max (ms) | requests moved mean | tokens recomputed mean | wall p50 (s) |")
        p("|---|---|---|---|---|---|---|---|---|---|---|")
        wall_by_id = {r["reply"]["id"]: r["wall_seconds"] for r in replies
                      if isinstance(r["reply"], dict) and "id" in r["reply"]}
        kinds = ["variant", "layout", "variant+layout"]
        kinds += sorted({s["kind"] for s in recs} - set(kinds))
        for kind in kinds + ["all"]:
            ks = [s for s in recs if kind == "all" or s["kind"] == kind]
            done = [s for s in ks if s["outcome"] == "done"]
            if not ks:
                continue
            prep = [s["prepare_seconds"] for s in done]
            pause = [s["pause_seconds"] * 1000 for s in done]
            p(f"| {kind} | {len(ks)} | {sum(1 for s in ks if s['outcome'] == 'failed')} "
              f"| {fmt(percentile(prep, 50), 2)} | {fmt(percentile(prep, 99), 2)} "
              f"| {fmt(percentile(pause, 50), 2)} | {fmt(percentile(pause, 99), 2)} "
              f"| {fmt(max(pause) if pause else None, 2)} "
              f"| {fmt(mean([s['requests_moved'] for s in done]), 2)} "
              f"| {fmt(mean([s['tokens_recomputed'] for s in done]), 0)} "
              f"| {fmt(percentile([wall_by_id[s['id']] for s in ks if s['id'] in wall_by_id], 50), 2)} |")
        p("")
        for s in failed:
            p(f"- FAILED switch {s['id']} ({s['kind']}) {json.dumps(s['from'])} -> {json.dumps(s['to'])}: {s['error']}")
            self.problems.append(f"switch {s['id']} failed: {s['error']}")
        for r in rejected:
            p(f"- REJECTED switch {r['n']} {json.dumps(r['body'])}: HTTP {r['status']}: {json.dumps(r['reply'])[:500]}")
            self.problems.append(f"switch {r['n']} rejected with HTTP {r['status']}")
        for r in kind_mismatch:
            p(f"- switch {r['n']}: expected kind {r['expected_kind']}, the server says {r['reply'].get('kind')}")
        if failed or rejected or kind_mismatch:
            p("")

        # Latency: baseline vs soak.
        if base is not None and soak is not None:
            b = self.summary_stats(base["summary"])
            s_all = self.summary_stats(soak["summary"])
            cols = [("baseline (no switches)", b), ("soak, all requests", s_all)]
            if recs:
                span, rest, gaps_span, gaps_rest = self.inflight_split(soak, recs)
                cols.append(("soak, in flight across a swap", self.req_stats(span)))
                cols.append(("soak, not across a swap", self.req_stats(rest, gaps_rest)))
            bsum, ssum = base["summary"], soak["summary"]
            p(f"### Latency (ms): baseline {bsum['completed']} ok / {bsum['failed']} failed requests in "
              f"{bsum['duration']:.0f} s; soak {ssum['completed']} ok / {ssum['failed']} failed in "
              f"{ssum['duration']:.0f} s")
            p("")
            p("| metric | " + " | ".join(f"{name} (n={c['n']})" for name, c in cols) + " |")
            p("|---|" + "---|" * len(cols))
            for key, label in (("tpot", "TPOT"), ("itl", "ITL"), ("e2el", "E2E latency"), ("ttft", "TTFT")):
                for i, q in ((0, "p50"), (1, "p99")):
                    p(f"| {label} {q} | " + " | ".join(fmt(c[key][i]) for _, c in cols) + " |")
            p(f"| output tok/s | {fmt(bsum['output_throughput'])} | {fmt(ssum['output_throughput'])} |"
              + " |" * (len(cols) - 2))
            if recs:
                p("")
                p(f"Inter-token gaps that contain a swap: n={len(gaps_span)}, "
                  f"p50 {fmt(percentile(gaps_span, 50) * 1000 if gaps_span else None)} ms, "
                  f"p99 {fmt(percentile(gaps_span, 99) * 1000 if gaps_span else None)} ms, "
                  f"max {fmt(max(gaps_span) * 1000 if gaps_span else None)} ms; all other gaps: "
                  f"p50 {fmt(percentile(gaps_rest, 50) * 1000 if gaps_rest else None)} ms, "
                  f"p99 {fmt(percentile(gaps_rest, 99) * 1000 if gaps_rest else None)} ms.")
                p("")
                p("The baseline ran on the start configuration only; the soak mixes every configuration of "
                  "the cycle (f32 and dp/tp/pp layouts run slower on 2 cores), so baseline vs soak differences "
                  "include the configurations' own speed. The in-flight vs not-across-a-swap columns compare "
                  "requests of the same run; \"across a swap\" uses the run's start estimated from its exit "
                  "time (tens of ms).")
        p("")
        p(f"results: {self.out}")

        text = "\n".join(lines)
        print()
        print(text)
        failed_requests = sum(d["summary"]["failed"] for d in (base, soak) if d is not None)
        print()
        print(f"failed requests (tidal-bench): {failed_requests}")
        errors = [x for x in self.problems if not x.startswith("note:")]
        if self.problems:
            print("problems:")
            for x in self.problems:
                print("  - " + x.replace("\n", "\n    "))
        (self.out / "report.md").write_text(text + "\n\nproblems:\n" + "\n".join(self.problems) + "\n")
        ok = not errors and base is not None and soak is not None
        print("VERDICT: " + ("PASS" if ok else "FAIL"))
        return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="server, e.g. http://127.0.0.1:PORT")
    ap.add_argument("--admin-key", required=True)
    ap.add_argument("--model-name", default="smollm2")
    ap.add_argument("--bench", default="build/bin/tidal-bench")
    ap.add_argument("--results", required=True)
    ap.add_argument("--server-pid", type=int, default=0, help="to notice the server dying")
    ap.add_argument("--server-log", default="", help="its stderr, for excerpts")
    ap.add_argument("--server-desc", default="")
    ap.add_argument("--switches", type=int, default=100)
    ap.add_argument("--variants", default="f32,int8-g32,w4a16-g32")
    ap.add_argument("--layouts", default="tp1,tp3,pp2,dp2")
    ap.add_argument("--switch-gap-s", type=float, default=0.5, help="pause between switches")
    ap.add_argument("--switch-timeout", type=float, default=300, help="seconds one PUT ?wait=true may take")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--vocab-size", type=int, default=49152, help="SmolLM2's")
    ap.add_argument("--baseline-prompts", type=int, default=32)
    ap.add_argument("--soak-prompts", type=int, default=0, help="0: estimated to outlast the switches")
    ap.add_argument("--est-switch-s", type=float, default=2.5, help="seconds one switch is expected to take (for the estimate)")
    ap.add_argument("--max-soak-prompts", type=int, default=1500)
    ap.add_argument("--request-timeout", type=int, default=120, help="tidal-bench --timeout")
    ap.add_argument("--bench-timeout", type=float, default=900, help="seconds one tidal-bench run may take in all")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.switches < 1:
        ap.error("--switches must be at least 1")
    a.variants = [v for v in a.variants.split(",") if v]
    a.layouts = [x for x in a.layouts.split(",") if x]
    try:
        for x in a.layouts:
            parse_layout(x)
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    if len(a.variants) < 2 or len(a.layouts) < 2:
        ap.error("need at least two variants and two layouts to cycle")
    return Soak(a).run()


if __name__ == "__main__":
    sys.exit(main())

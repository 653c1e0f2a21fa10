#!/usr/bin/env python3
"""Driver of bench/reconfig_soak.sh (see there for the command): against a
running `tidal serve --admin-key`, runs a baseline tidal-bench load, then the
same load again while it performs N live switches one after another, and
prints what the switches cost and what the requests in flight saw.

The soak load is a sequence of tidal-bench rounds (--round-prompts requests
each, the same shape as the baseline) started back to back for as long as
switches are being made, so it lasts as long as the switching whatever the
switches do to throughput; the round in progress when the last switch is
done finishes, and no more start.

Python stdlib + requests. Writes into --results:
  baseline.json / .txt / .cmd      tidal-bench --json output, its report, its command (no switches)
  soak-NN.json / .txt / .cmd       the same for each round of the soak load
  switch_replies.json              every PUT /admin/v1/config?wait=true: target, HTTP status, reply,
                                   wall seconds, 409 retries, whether the load was running
  switches.json                    GET /admin/v1/switches at the end (the server's switch log, raw)
  config_start.json, config_end.json, metrics_end.txt   GET /admin/v1/config and /metrics
  runs.jsonl                       each tidal-bench run's exit code and exit wall time (its start = exit - duration)
  report.md                        the tables printed
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
import threading
import time

import requests

LAYOUT_RE = re.compile(r"(tp|pp|dp)(\d+)")
EPS = 0.1  # s: slack when placing client-side times against a swap


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


def token_times(r, t0):
    """Wall-clock times of a request's output tokens (first, then after each inter-token gap)."""
    t = t0 + r["start_s"] + r["ttft_s"]
    out = [t]
    for g in r["itl_s"]:
        t += g
        out.append(t)
    return out


def latency_stats(reqs):
    """p50/p99 (ms) of TTFT, TPOT, ITL and E2E over successful requests, the
    way tidal-bench summarizes (TPOT of requests with more than one token,
    ITL over every gap of every request)."""
    reqs = [r for r in reqs if r["success"]]
    ms = lambda v, p: percentile(v, p) * 1000 if v else float("nan")
    tpot = [r["tpot_s"] for r in reqs if r["tpot_s"] is not None and r["output_tokens"] > 1]
    itl = [g for r in reqs for g in r["itl_s"]]
    e2e = [r["latency_s"] for r in reqs]
    ttft = [r["ttft_s"] for r in reqs]
    return {"n": len(reqs), "ttft": (ms(ttft, 50), ms(ttft, 99)), "tpot": (ms(tpot, 50), ms(tpot, 99)),
            "itl": (ms(itl, 50), ms(itl, 99)), "e2el": (ms(e2e, 50), ms(e2e, 99))}


class BenchRun:
    """One tidal-bench process; its exit time is noted by a watcher thread so
    its requests can be placed on the wall clock (start = exit - duration)."""

    def __init__(self, soak, tag, num_prompts, seed, ready_check):
        a = soak.a
        self.soak, self.tag = soak, tag
        self.json_path = soak.out / f"{tag}.json"
        cmd = [a.bench, "--base-url", soak.url, "--model", a.model_name, "--endpoint", "completions",
               "--dataset", "random", "--random-input-len", str(a.input_len), "--random-output-len",
               str(a.output_len), "--random-vocab-size", str(a.vocab_size), "--num-prompts", str(num_prompts),
               "--max-concurrency", str(a.concurrency), "--request-rate", "inf", "--ignore-eos",
               "--seed", str(seed), "--timeout", str(a.request_timeout),
               "--ready-check-timeout", "60" if ready_check else "0", "--disable-progress",
               "--json", str(self.json_path)]
        (soak.out / f"{tag}.cmd").write_text(" ".join(cmd) + "\n")
        self.stdout = open(soak.out / f"{tag}.txt", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.stdout, stderr=subprocess.STDOUT, text=True)
        self.t_exit = None
        self.exited = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        self.proc.wait()
        self.t_exit = time.time()
        self.exited.set()

    def running(self):
        return not self.exited.is_set()

    def finish(self, timeout):
        """Waits; returns its JSON document (with '_t0', the wall time of its
        start) or None, noting the problem."""
        soak = self.soak
        if not self.exited.wait(timeout):
            self.proc.kill()
            self.exited.wait()
            self.stdout.close()
            soak.problem(f"{self.tag}: tidal-bench did not finish within {timeout:.0f} s (killed); "
                         f"server log tail:\n{soak.server_log_tail()}")
            return None
        self.stdout.close()
        rc = self.proc.returncode
        with open(soak.out / "runs.jsonl", "a") as f:
            f.write(json.dumps({"tag": self.tag, "rc": rc, "t_exit": self.t_exit}) + "\n")
        if rc != 0 or not self.json_path.exists():
            text = (soak.out / f"{self.tag}.txt").read_text(errors="replace")
            soak.problem(f"{self.tag}: tidal-bench exited with {rc}:\n{text[-3000:]}\n"
                         f"server log tail:\n{soak.server_log_tail()}")
            return None
        doc = json.loads(self.json_path.read_text())
        doc["_t0"] = self.t_exit - doc["summary"]["duration"]
        doc["_tag"] = self.tag
        soak.check_requests(self.tag, doc)
        return doc


class Soak:
    def __init__(self, a):
        self.a = a
        self.url = a.url.rstrip("/")
        self.out = pathlib.Path(a.results)
        self.admin = {"Authorization": f"Bearer {a.admin_key}"}
        self.problems = []  # lines for the verdict; "note: ..." ones do not fail it
        self.lock = threading.Lock()

    def problem(self, text):
        with self.lock:
            self.problems.append(text)

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
        out = {}  # 'name{labels}': value, and 'name': the sum over its label sets
        for line in r.text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
                name = key.split("{", 1)[0]
                if name != key and "le=" not in key:
                    out[name] = out.get(name, 0.0) + float(value)
        return out, r.text

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
            self.problem(f"{tag}: {s['failed']} failed requests; errors: {json.dumps(errs)}; server log tail:\n"
                         f"{self.server_log_tail(15)}")
        short = [r for r in reqs if r["success"] and r["output_tokens"] != r["expected_output_len"]]
        if short:
            ex = short[0]
            self.problem(f"{tag}: {len(short)} successful requests returned a different number of tokens than "
                         f"asked (--ignore-eos); e.g. request {ex['index']}: {ex['output_tokens']} of "
                         f"{ex['expected_output_len']}, finish_reason {ex['finish_reason']}")

    # ---- switches --------------------------------------------------------
    def targets(self):
        """Fixed cycle: kind i%3 = variant, layout, variant+layout; the
        variant and the layout each advance one step in their own list when
        they change. The first target is (variants[0], layouts[0]), a
        variant switch from the server's start (base tp1)."""
        vi = li = 0
        out = []
        for i in range(self.a.switches):
            kind = ("variant", "layout", "variant+layout")[i % 3]
            if i > 0:
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
            if r.status_code != 409 or time.monotonic() - t > self.a.switch_timeout:
                break
            retries += 1
            time.sleep(0.2)
        try:
            reply = r.json()
        except ValueError:
            reply = r.text
        return r.status_code, reply, time.monotonic() - t, retries

    # ---- the soak load ---------------------------------------------------
    def load_loop(self, stop, rounds, current):
        """Rounds of tidal-bench back to back until `stop` is set."""
        k = 0
        while not stop.is_set():
            k += 1
            run = BenchRun(self, f"soak-{k:02d}", self.a.round_prompts, self.a.seed + k, ready_check=False)
            current[0] = run
            doc = run.finish(self.a.bench_timeout)
            if doc is None:
                rounds.append(None)
                stop.set()
                return
            rounds.append(doc)
            s = doc["summary"]
            log(f"load round {k}: {s['completed']} done, {s['failed']} failed in {s['duration']:.1f} s")
            if s["failed"] and self.a.stop_on_failure:
                stop.set()
        current[0] = None

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
        base = BenchRun(self, "baseline", a.baseline_prompts, a.seed, ready_check=True).finish(a.bench_timeout)
        if base is None:
            return self.verdict(None, [], [], [], start_desc, None)
        bs = base["summary"]
        log(f"baseline: {bs['completed']} done, {bs['failed']} failed in {bs['duration']:.1f} s "
            f"({bs['request_throughput']:.2f} req/s, {bs['output_throughput']:.1f} output tok/s)")

        # 2. soak: rounds of the same load while switching.
        targets = self.targets()
        log(f"soak: {a.switches} switches over variants {','.join(a.variants)} x layouts {','.join(a.layouts)}, "
            f"{a.switch_gap_s} s apart, under rounds of {a.round_prompts} requests")
        stop = threading.Event()
        rounds, current = [], [None]
        loader = threading.Thread(target=self.load_loop, args=(stop, rounds, current), daemon=True)
        loader.start()
        deadline = time.monotonic() + 90  # start switching once requests are running
        while time.monotonic() < deadline and not stop.is_set():
            m, _ = self.metrics()
            if m.get("tidal:num_requests_running", 0) >= min(a.concurrency, 2):
                break
            time.sleep(0.1)

        replies = []
        aborted = None
        t_first = time.time()
        for i, (kind, layout_name, body) in enumerate(targets):
            if stop.is_set():
                aborted = "the load stopped (see above)"
                break
            try:
                status, reply, wall, retries = self.put_switch(body)
            except requests.RequestException as e:
                aborted = (f"switch {i + 1}/{len(targets)} to {body}: {type(e).__name__}: {e}; server "
                           f"{'alive' if self.server_alive() else 'DEAD'}; server log tail:\n{self.server_log_tail()}")
                break
            run = current[0]
            rec = {"n": i + 1, "expected_kind": kind, "layout": layout_name, "body": body, "status": status,
                   "reply": reply, "wall_seconds": wall, "retries_409": retries, "t_reply": time.time(),
                   "load_running": run is not None and run.running()}
            replies.append(rec)
            ok = status == 200 and isinstance(reply, dict) and reply.get("outcome") == "done"
            short = (f"{reply.get('kind')} {reply.get('outcome')} prep {reply.get('prepare_seconds', 0):.2f}s "
                     f"pause {1e3 * reply.get('pause_seconds', 0):.2f}ms moved {reply.get('requests_moved')} "
                     f"recompute {reply.get('tokens_recomputed')}"
                     + (f" error: {reply.get('error')}" if reply.get("error") else "")
                     if isinstance(reply, dict) and status == 200 else f"HTTP {status}: {json.dumps(reply)[:300]}")
            if not ok or i < 3 or (i + 1) % 10 == 0:
                log(f"switch {i + 1}/{len(targets)} -> {body['variant']} {layout_name}: {short} "
                    f"(wall {wall:.2f}s{', 409 x' + str(retries) if retries else ''})")
            if not self.server_alive():
                aborted = f"server died after switch {i + 1}; server log tail:\n{self.server_log_tail()}"
                break
            if i + 1 < len(targets):
                time.sleep(a.switch_gap_s)
        t_last = time.time()
        stop.set()
        (self.out / "switch_replies.json").write_text(json.dumps(replies, indent=1))
        if aborted:
            self.problem("switching aborted: " + aborted)
        log(f"switches sent: {len(replies)} in {t_last - t_first:.0f} s; waiting for the load round in progress")
        loader.join(a.bench_timeout + 30)
        if loader.is_alive():
            self.problem("the soak load did not finish")

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
            self.problem(f"could not read the switch log / config / metrics at the end: {e}; "
                         f"server log tail:\n{self.server_log_tail()}")
        return self.verdict(base, rounds, replies, switches, start_desc, (t_first, t_last))

    # ---- report ----------------------------------------------------------
    def verdict(self, base, rounds, replies, switches, start_desc, window):
        a = self.a
        lines = []
        p = lines.append
        p(f"## Live reconfiguration soak: {a.model_name}, {a.switches} switches")
        p("")
        p(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; machine: {os.cpu_count()} cores, "
          f"load average at the end {' '.join(open('/proc/loadavg').read().split()[:3])}")
        p(f"- server: {a.server_desc}")
        p(f"- load: tidal-bench random dataset, {a.input_len} prompt / {a.output_len} output tokens (--ignore-eos), "
          f"max concurrency {a.concurrency}; baseline {a.baseline_prompts} requests on the start configuration "
          f"({start_desc}) without switches; soak: rounds of {a.round_prompts} requests back to back while switching")
        p(f"- cycle: kinds variant, layout, variant+layout in turn; variants {', '.join(a.variants)}; "
          f"layouts {', '.join(a.layouts)}; PUT ?wait=true one after another, {a.switch_gap_s} s apart")
        p("")

        # Switches: this run's records from the server's log (else the replies).
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
          f"{retries} retries after 409, {sum(1 for r in replies if r['load_running'])} with the load running"
          + (f", in {window[1] - window[0]:.0f} s" if window else ""))
        mpath = self.out / "metrics_end.txt"
        if mpath.exists():
            counts = dict(re.findall(r'^tidal:reconfigurations_total\{[^}]*outcome="(\w+)"[^}]*\} (\S+)$',
                                     mpath.read_text(), re.M))
            p(f"(server's /metrics at the end: tidal:reconfigurations_total "
              f"{', '.join(f'{k} {float(v):.0f}' for k, v in counts.items())})")
        p("")
        p("| kind | count | failed | prepare p50 (s) | prepare p99 (s) | step wait p50 (ms) | step wait p99 (ms) "
          "| pause p50 (ms) | pause p99 (ms) | pause max (ms) | requests moved mean | tokens recomputed mean "
          "| PUT wall p50 (s) |")
        p("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
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
            wait = [s.get("step_wait_seconds", 0) * 1000 for s in done]
            p(f"| {kind} | {len(ks)} | {sum(1 for s in ks if s['outcome'] == 'failed')} "
              f"| {fmt(percentile(prep, 50), 2)} | {fmt(percentile(prep, 99), 2)} "
              f"| {fmt(percentile(wait, 50), 1)} | {fmt(percentile(wait, 99), 1)} "
              f"| {fmt(percentile(pause, 50), 3)} | {fmt(percentile(pause, 99), 3)} "
              f"| {fmt(max(pause) if pause else None, 3)} "
              f"| {fmt(mean([s['requests_moved'] for s in done]), 2)} "
              f"| {fmt(mean([s['tokens_recomputed'] for s in done]), 0)} "
              f"| {fmt(percentile([wall_by_id[s['id']] for s in ks if s['id'] in wall_by_id], 50), 2)} |")
        p("")
        for s in failed:
            p(f"- FAILED switch {s['id']} ({s['kind']}) {json.dumps(s['from'])} -> {json.dumps(s['to'])}: {s['error']}")
            self.problem(f"switch {s['id']} failed: {s['error']}")
        for r in rejected:
            p(f"- REJECTED switch {r['n']} {json.dumps(r['body'])}: HTTP {r['status']}: {json.dumps(r['reply'])[:500]}")
            self.problem(f"switch {r['n']} rejected with HTTP {r['status']}")
        for r in kind_mismatch:
            p(f"- switch {r['n']}: expected kind {r['expected_kind']}, the server says {r['reply'].get('kind')}")
        if failed or rejected or kind_mismatch:
            p("")

        # Latency: baseline vs soak (all rounds), and the soak's requests in flight across a swap.
        soak_reqs = []  # (record, t0 of its round)
        for doc in rounds:
            if doc is not None:
                soak_reqs += [(r, doc["_t0"]) for r in doc["requests"]]
        if base is not None and soak_reqs:
            # A swap happens between the end of preparing and the PUT's reply
            # (the old configuration is freed in between); EPS covers the
            # client seeing a token a little after the server made it.
            reply_at = {r["reply"]["id"]: r["t_reply"] for r in replies
                        if isinstance(r["reply"], dict) and "id" in r["reply"]}
            swaps = []
            for s in recs:
                if s["outcome"] == "done":
                    begin = s["requested_at_ms"] / 1000.0 + s["prepare_seconds"]
                    swaps.append((begin - EPS, max(reply_at.get(s["id"], begin), begin) + EPS))
            span, rest, gaps_span, gaps_rest = [], [], [], []
            for r, t0 in soak_reqs:
                if not r["success"]:
                    continue
                b = t0 + r["start_s"]
                (span if any(b <= w1 and w0 <= b + r["latency_s"] for w0, w1 in swaps) else rest).append(r)
                times = token_times(r, t0)
                for x, y in zip(times, times[1:]):
                    (gaps_span if any(x <= w1 and w0 <= y for w0, w1 in swaps) else gaps_rest).append(y - x)
            bsum = base["summary"]
            all_soak = [r for r, _ in soak_reqs]
            cols = [("baseline, no switches", latency_stats(base["requests"])),
                    ("soak, all requests", latency_stats(all_soak)),
                    ("soak, in flight across a swap", latency_stats(span)),
                    ("soak, not across a swap", latency_stats(rest))]
            n_failed = sum(1 for r in all_soak if not r["success"])
            dur = sum(d["summary"]["duration"] for d in rounds if d is not None)
            p(f"### Latency (ms): baseline {bsum['completed']} ok / {bsum['failed']} failed requests in "
              f"{bsum['duration']:.0f} s; soak {len(all_soak) - n_failed} ok / {n_failed} failed in "
              f"{sum(1 for d in rounds if d is not None)} rounds, {dur:.0f} s")
            p("")
            p("| metric | " + " | ".join(f"{name} (n={c['n']})" for name, c in cols) + " |")
            p("|---|" + "---|" * len(cols))
            for key, label in (("tpot", "TPOT"), ("itl", "ITL"), ("e2el", "E2E latency"), ("ttft", "TTFT")):
                for i, q in ((0, "p50"), (1, "p99")):
                    p(f"| {label} {q} | " + " | ".join(fmt(c[key][i]) for _, c in cols) + " |")
            if window:
                toks = sum(1 for r, t0 in soak_reqs if r["success"]
                           for t in token_times(r, t0) if window[0] <= t <= window[1])
                p(f"| output tok/s | {fmt(bsum['output_throughput'])} | "
                  f"{fmt(toks / max(window[1] - window[0], 1e-9))} (while switching) | | |")
            p("")
            p(f"Inter-token gaps that contain a swap: n={len(gaps_span)}, "
              f"p50 {fmt(percentile(gaps_span, 50) * 1000 if gaps_span else None)} ms, "
              f"p99 {fmt(percentile(gaps_span, 99) * 1000 if gaps_span else None)} ms, "
              f"max {fmt(max(gaps_span) * 1000 if gaps_span else None)} ms; all other soak gaps: "
              f"p50 {fmt(percentile(gaps_rest, 50) * 1000 if gaps_rest else None)} ms, "
              f"p99 {fmt(percentile(gaps_rest, 99) * 1000 if gaps_rest else None)} ms.")
            p("")
            p(f"(tidal-bench's own baseline summary: TPOT p50/p99 {fmt(bsum['median_tpot_ms'])}/"
              f"{fmt(bsum['p99_tpot_ms'])}, ITL {fmt(bsum['median_itl_ms'])}/{fmt(bsum['p99_itl_ms'])}, "
              f"E2E {fmt(bsum['median_e2el_ms'])}/{fmt(bsum['p99_e2el_ms'])} ms; the table recomputes every column "
              f"the same way from the per-request records, the soak's over all its rounds.)")
            p("")
            p("Notes: the baseline runs on the start configuration only, while the soak mixes every configuration "
              "of the cycle (f32 and tp/pp/dp layouts are slower on 2 cores) and prepares the next configuration "
              "in the background on the same cores, so baseline vs soak includes both. \"In flight across a swap\": "
              "requests whose lifetime overlaps a swap (from requested_at + prepare_seconds of a done switch to its "
              "PUT reply, +-0.1 s), placed on the wall clock from each round's exit time minus its duration. The switch record's "
              "pause is the hand-over only; the moved requests' recompute of prompt + generated tokens shows up "
              "in the inter-token gaps that contain a swap.")
        p("")
        p(f"results: {self.out}")

        text = "\n".join(lines)
        print()
        print(text)
        failed_requests = sum(d["summary"]["failed"] for d in [base, *rounds] if d is not None)
        print()
        print(f"failed requests (tidal-bench, baseline + soak): {failed_requests}")
        errors = [x for x in self.problems if not x.startswith("note:")]
        if self.problems:
            print("problems:")
            for x in self.problems:
                print("  - " + x.replace("\n", "\n    "))
        (self.out / "report.md").write_text(text + "\n\nfailed requests: " + str(failed_requests) +
                                            "\nproblems:\n" + "\n".join(self.problems) + "\n")
        ok = not errors and base is not None and bool(rounds) and None not in rounds and failed_requests == 0
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
    ap.add_argument("--switch-gap-s", type=float, default=2.0,
                    help="pause between one switch's reply and the next PUT (lets the moved requests recompute and decode)")
    ap.add_argument("--switch-timeout", type=float, default=300, help="seconds one PUT ?wait=true may take")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--vocab-size", type=int, default=49152, help="SmolLM2's")
    ap.add_argument("--baseline-prompts", type=int, default=48)
    ap.add_argument("--round-prompts", type=int, default=32, help="requests per tidal-bench round of the soak load")
    ap.add_argument("--request-timeout", type=int, default=120, help="tidal-bench --timeout")
    ap.add_argument("--bench-timeout", type=float, default=600, help="seconds one tidal-bench run may take in all")
    ap.add_argument("--stop-on-failure", action="store_true", help="stop at the first round with a failed request")
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

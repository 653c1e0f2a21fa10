#!/usr/bin/env python3
"""A phased arrival trace for `tidal-bench --trace-replay --dataset jsonl`.

Arrivals are a Poisson process whose rate is constant within each phase:
`--phases 60:0.2,60:3,60:0.2,60:3` is 60 s at 0.2 requests/s, 60 s at 3,
and so on. Within a phase the gaps are exponential with that phase's rate,
starting at the phase's start; an arrival drawn past the phase's end is
dropped and the next phase starts afresh at its boundary (exact for a
piecewise-constant rate, the process being memoryless).

Prompts come from a prompts JSONL (tools/extract_writingbench.py's output:
{"prompt", "index", "lang", "prompt_tokens", ...}), filtered by --lang and
--max-prompt-tokens, and are drawn without replacement in a seeded random
order; when the trace needs more requests than there are prompts, a new
seeded order starts (so a prompt repeats only after every other one has
been used, which keeps the prefix cache from turning repeats into free
prefills).

Output lengths: WritingBench has no reference answer length (inspect-evals
asks for up to 16000 tokens), so every request asks for a fixed
--max-output-tokens; the model may stop earlier at its end-of-turn token.
With --max-model-len, prompts whose prompt_tokens plus that cap exceed the
context are skipped.

Each trace line: {"prompt": text, "output_tokens": cap, "timestamp": s,
"prompt_len": chat-formatted prompt tokens (when the prompts file has
them), "phase": k, "source_index": WritingBench index}; tidal-bench reads
prompt, output_tokens, prompt_len and timestamp and ignores the rest. A
sibling `<out minus .jsonl>.meta.json` records the phases (start, end, rate,
arrivals), the seed, the filters, the prompts file's provenance file and
the command.

  python3 tools/make_phase_trace.py --prompts bench/data/writingbench.jsonl --out /tmp/trace.jsonl \\
      --phases 60:0.2,60:3,60:0.2,60:3 --seed 1 --max-output-tokens 128 --lang en --max-prompt-tokens 512

Python stdlib only.
"""
import argparse
import json
import pathlib
import random
import shlex
import sys


def parse_phases(text):
    phases = []
    for item in text.split(","):
        dur, sep, rate = item.strip().partition(":")
        try:
            dur_s, rps = float(dur), float(rate)
        except ValueError:
            dur_s = rps = -1.0
        if not sep or not dur_s > 0 or not rps >= 0:
            raise argparse.ArgumentTypeError(f"bad phase '{item}': expected SECONDS:REQUESTS_PER_SECOND, "
                                             "seconds > 0 and rate >= 0")
        phases.append((dur_s, rps))
    if not phases:
        raise argparse.ArgumentTypeError("no phases")
    return phases


def sibling(path, suffix):
    p = pathlib.Path(path)
    stem = p.name[:-len(".jsonl")] if p.name.endswith(".jsonl") else p.name
    return p.with_name(stem + suffix)


def arrivals(phases, rng):
    """(time, phase index) of every arrival of the piecewise-constant-rate Poisson process."""
    out = []
    start = 0.0
    for k, (dur, rate) in enumerate(phases):
        end = start + dur
        t = start
        while rate > 0:
            t += rng.expovariate(rate)
            if t >= end:
                break
            out.append((t, k))
        start = end
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", default="bench/data/writingbench.jsonl", help="prompts JSONL (default: %(default)s)")
    ap.add_argument("--out", required=True, help="trace JSONL to write")
    ap.add_argument("--phases", type=parse_phases, default=parse_phases("60:0.2,60:3,60:0.2,60:3"),
                    help="SECONDS:RPS,... (default: 60:0.2,60:3,60:0.2,60:3)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the arrivals and the prompt order")
    ap.add_argument("--max-output-tokens", type=int, default=128, help="max_tokens of every request")
    ap.add_argument("--lang", default="en", help="keep prompts of this language ('all': every one)")
    ap.add_argument("--max-prompt-tokens", type=int, default=0,
                    help="keep prompts of at most this many chat-formatted tokens (needs prompt_tokens; 0: any)")
    ap.add_argument("--min-prompt-tokens", type=int, default=0, help="keep prompts of at least this many tokens")
    ap.add_argument("--max-model-len", type=int, default=0,
                    help="skip prompts whose prompt_tokens + --max-output-tokens exceed this context (0: no check)")
    ap.add_argument("--min-swing", type=float, default=10.0,
                    help="refuse phases whose highest rate is less than this many times the lowest nonzero one")
    args = ap.parse_args()
    if args.max_output_tokens < 1:
        ap.error("--max-output-tokens must be >= 1")

    rates = [r for _, r in args.phases if r > 0]
    if not rates:
        ap.error("every phase has rate 0")
    swing = max(rates) / min(rates)
    if swing < args.min_swing:
        ap.error(f"the rate swings {swing:.2f}x, under --min-swing {args.min_swing:g}x")

    prompts = []
    with open(args.prompts, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            p = json.loads(line)
            if not isinstance(p.get("prompt"), str):
                sys.exit(f"make_phase_trace: {args.prompts}:{n}: no \"prompt\" text")
            prompts.append(p)
    needs_tokens = args.max_prompt_tokens > 0 or args.min_prompt_tokens > 0 or args.max_model_len > 0
    if needs_tokens and any("prompt_tokens" not in p for p in prompts):
        sys.exit("make_phase_trace: token filters need prompt_tokens on every prompt "
                 "(extract with tools/extract_writingbench.py --count-tokens yes)")
    counts = {"in_file": len(prompts)}
    keep = [p for p in prompts if args.lang == "all" or p.get("lang") == args.lang]
    counts["dropped_lang"] = len(prompts) - len(keep)
    before = len(keep)
    if args.max_prompt_tokens > 0:
        keep = [p for p in keep if p["prompt_tokens"] <= args.max_prompt_tokens]
    if args.min_prompt_tokens > 0:
        keep = [p for p in keep if p["prompt_tokens"] >= args.min_prompt_tokens]
    counts["dropped_prompt_tokens"] = before - len(keep)
    before = len(keep)
    if args.max_model_len > 0:
        keep = [p for p in keep if p["prompt_tokens"] + args.max_output_tokens <= args.max_model_len]
    counts["dropped_context"] = before - len(keep)
    counts["eligible"] = len(keep)
    if not keep:
        sys.exit(f"make_phase_trace: no prompt of {args.prompts} passes the filters ({counts})")

    rng = random.Random(args.seed)
    times = arrivals(args.phases, rng)
    if not times:
        sys.exit("make_phase_trace: the phases produced no arrival")
    order_rng = random.Random(args.seed * 1_000_003 + 7)  # independent of how many arrivals were drawn
    order = []
    passes = 0
    lines = []
    for t, k in times:
        if not order:
            order = list(range(len(keep)))
            order_rng.shuffle(order)
            passes += 1
        p = keep[order.pop()]
        line = {"prompt": p["prompt"], "output_tokens": args.max_output_tokens, "timestamp": round(t, 6)}
        if "prompt_tokens" in p:
            line["prompt_len"] = p["prompt_tokens"]
        line["phase"] = k
        if "index" in p:
            line["source_index"] = p["index"]
        lines.append(line)

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")

    phases = []
    start = 0.0
    for k, (dur, rate) in enumerate(args.phases):
        n = sum(1 for _, pk in times if pk == k)
        prompt_tokens = [line.get("prompt_len", 0) for line in lines if line["phase"] == k]
        phases.append({"phase": k, "start_s": start, "end_s": start + dur, "rate_rps": rate, "arrivals": n,
                       "observed_rps": n / dur,
                       "mean_prompt_tokens": sum(prompt_tokens) / n if n and needs_tokens else None})
        start += dur
    prov = sibling(args.prompts, ".provenance.json")
    meta = {
        "trace": str(out),
        "requests": len(lines),
        "duration_s": start,
        "seed": args.seed,
        "phases": phases,
        "swing": swing,
        "max_output_tokens": args.max_output_tokens,
        "output_tokens_rule": "fixed cap: WritingBench has no reference answer length",
        "prompts": args.prompts,
        "prompts_provenance": str(prov) if prov.exists() else None,
        "filters": {"lang": args.lang, "max_prompt_tokens": args.max_prompt_tokens,
                    "min_prompt_tokens": args.min_prompt_tokens, "max_model_len": args.max_model_len},
        "counts": counts,
        "prompt_passes": passes,
        "command": " ".join(shlex.quote(a) for a in ["python3", "tools/make_phase_trace.py", *sys.argv[1:]]),
    }
    sibling(out, ".meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"make_phase_trace: {len(lines)} requests over {start:g} s from {len(keep)} prompts "
          f"({passes} pass(es)); phases: " +
          ", ".join(f"{p['arrivals']} @ {p['rate_rps']:g}/s" for p in phases), file=sys.stderr)


if __name__ == "__main__":
    main()

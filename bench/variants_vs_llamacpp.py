#!/usr/bin/env python3
"""Decode speed of tidal's weight variants next to llama.cpp, on SmolLM2-135M.

Run (never part of `make test`; it takes a few minutes):

    /tmp/llamacpp/venv/bin/python bench/variants_vs_llamacpp.py --threads 2

It needs the llama-cpp-python binding (import llama_cpp) and a built tidal
(build/bin/tidal, or --tidal). Steps:

1. `tidal quantize --to f16` writes an F16 GGUF of the model (default: the
   repository's Q4_1 SmolLM2, so F16 here is the Q4_1 weights dequantized).
2. Checks that llama.cpp loads that file and, fed the same prompt ids,
   generates the same greedy tokens as tidal does from it (exit 1 if not).
3. llama_cpp.llama_model_quantize makes Q8_0, Q4_0 and Q4_1 GGUFs from the
   F16 one (llama.cpp's own recipes: Q4_0 and Q4_1 keep the tied
   embedding/output at a higher-precision type, as llama.cpp always does).
4. Decode tok/s at batch 1: greedy, a 16-token prompt, 128 generated tokens,
   best of 3, with --threads threads. llama.cpp: the prompt is evaluated
   first and only the decode loop (llama_decode of one token plus argmax
   over the logits) is timed. tidal: `tidal bench-offline` with
   --prompt-len 16 --gen-len 128, whose decode figure also excludes the
   prompt; variants through --variant when bench-offline has it, otherwise
   through variant files written by `tidal quantize`.
5. Prints a table and the ratios tidal int8 / llama.cpp Q8_0, tidal
   int8-g32 / llama.cpp Q8_0 (the same grouping of scales), tidal
   w8a16-g32 / llama.cpp Q8_0, tidal int4-g128 / llama.cpp Q4_0, tidal
   w4a16-g32 / llama.cpp Q4_1 (both a scale and an offset per 32 weights)
   and tidal int8 / tidal f32.

Timings on a shared machine are noisy; compare runs from one invocation.
"""

import argparse
import ctypes
import json
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
CHECK_PROMPT = "The capital of France is"
PROMPT_TOKENS = 16
GEN_TOKENS = 128
REPEATS = 3
TIDAL_VARIANTS = ["f32", "f16", "int8", "int8-g32", "int4-g128", "w8a16-g32", "w4a16-g32"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tidal", default=os.path.join(REPO, "build/bin/tidal"))
    p.add_argument("--model", default=os.path.join(REPO, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--workdir", default="/tmp/tidal_variants_vs_llamacpp")
    return p.parse_args()


def run(cmd):
    """Runs a command; returns stdout, exits with its stderr on failure."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def tidal_quantize(args, variant):
    out = os.path.join(args.workdir, f"smollm2-{variant}.gguf")
    if not os.path.exists(out):
        print(run([args.tidal, "quantize", "--model", args.model, "--to", variant, "--out", out]).strip())
    return out


def llama_quantize(llama_cpp, src, ftype, name, threads):
    out = src.replace("-f16.gguf", f"-{name}.gguf")
    if not os.path.exists(out):
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.nthread = threads
        if llama_cpp.llama_model_quantize(src.encode(), out.encode(), ctypes.byref(params)) != 0:
            sys.exit(f"llama_model_quantize to {name} failed")
    return out


def load_llama(llama_cpp, path, threads):
    return llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=512,
                           n_batch=PROMPT_TOKENS, verbose=False)


def llama_greedy(llama_cpp, llm, prompt_ids, n):
    """Greedy continuation of prompt_ids; returns (tokens, decode seconds)."""
    import numpy as np
    n_vocab = llm.n_vocab()

    def argmax_last():
        # Llama.eval keeps no logits unless logits_all; read the last row from the context.
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
        return int(np.argmax(logits))

    llm.reset()
    llm.eval(prompt_ids)
    tokens = []
    start = time.perf_counter()
    for _ in range(n):
        tokens.append(argmax_last())
        llm.eval([tokens[-1]])
    return tokens, time.perf_counter() - start


def llama_decode_tok_s(llama_cpp, path, prompt_ids, threads):
    llm = load_llama(llama_cpp, path, threads)
    best = 0.0
    for _ in range(REPEATS):
        _, seconds = llama_greedy(llama_cpp, llm, prompt_ids, GEN_TOKENS)
        best = max(best, GEN_TOKENS / seconds)
    llm.close()
    return best


def tidal_generate_ids(args, model, prompt, n):
    out = run([args.tidal, "generate", "--model", model, "--prompt", prompt, "--max-tokens", str(n),
               "--temperature", "0", "--ignore-eos", "--json", "--threads", str(args.threads)])
    j = json.loads(out.splitlines()[0])
    return j["prompt_ids"], j["token_ids"]


def bench_offline_has_variant(args):
    return "--variant" in run([args.tidal, "bench-offline", "--help"])


# A result row of bench-offline: batch, prefill tok/s, % GEMM, decode tok/s, ...
# bench-offline's table: batch, prefill tok/s, GFLOP/s, % sgemm, % peak, decode tok/s, ...
ROW = re.compile(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)\s")


def tidal_decode_tok_s(args, model, variant=None):
    cmd = [args.tidal, "bench-offline", "--model", model, "--threads", str(args.threads), "--batches",
           *["1"] * REPEATS, "--prompt-len", str(PROMPT_TOKENS), "--gen-len", str(GEN_TOKENS)]
    if variant:
        cmd += ["--variant", variant]
    rates = [float(m.group(6)) for m in map(ROW.match, run(cmd).splitlines()) if m and m.group(1) == "1"]
    if not rates:
        sys.exit("no batch-1 row in the output of: " + " ".join(cmd))
    return max(rates)


def mib(path):
    return os.path.getsize(path) / (1 << 20)


def main():
    args = parse_args()
    try:
        import llama_cpp
    except ImportError:
        sys.exit("needs the llama-cpp-python binding: run with /tmp/llamacpp/venv/bin/python")
    if not os.access(args.tidal, os.X_OK):
        sys.exit(f"{args.tidal} not found: build tidal first (or pass --tidal)")
    os.makedirs(args.workdir, exist_ok=True)

    f16 = tidal_quantize(args, "f16")

    # 2. llama.cpp reads tidal's F16 file the way tidal does.
    prompt_ids, tidal_ids = tidal_generate_ids(args, f16, CHECK_PROMPT, 16)
    llm = load_llama(llama_cpp, f16, args.threads)
    llama_prompt = llm.tokenize(CHECK_PROMPT.encode(), add_bos=False, special=False)
    llama_ids, _ = llama_greedy(llama_cpp, llm, prompt_ids, 16)
    llm.close()
    print(f"\ncheck on {os.path.basename(f16)}, prompt {CHECK_PROMPT!r} {prompt_ids}:")
    print(f"  tokenization  tidal == llama.cpp: {llama_prompt == prompt_ids}")
    print(f"  tidal     greedy: {tidal_ids}")
    print(f"  llama.cpp greedy: {llama_ids}")
    if llama_ids != tidal_ids:
        sys.exit("llama.cpp and tidal disagree on the tidal-written F16 file")
    print("  identical greedy tokens\n")

    q8 = llama_quantize(llama_cpp, f16, llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q8_0", args.threads)
    q4 = llama_quantize(llama_cpp, f16, llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, "q4_0", args.threads)
    q4_1 = llama_quantize(llama_cpp, f16, llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1, "q4_1", args.threads)

    # A fixed 16-token prompt, tokenized by tidal.
    bench_prompt, _ = tidal_generate_ids(args, f16, PROMPT, 1)
    bench_prompt = bench_prompt[:PROMPT_TOKENS]
    assert len(bench_prompt) == PROMPT_TOKENS, "the benchmark prompt is shorter than 16 tokens"

    rows = []  # (engine, weights, file MiB or None, tok/s)
    for name, path in [("F16", f16), ("Q8_0", q8), ("Q4_0", q4), ("Q4_1", q4_1)]:
        rate = llama_decode_tok_s(llama_cpp, path, bench_prompt, args.threads)
        rows.append(("llama.cpp", name, mib(path), rate))
        print(f"llama.cpp {name}: {rate:.1f} tok/s", flush=True)
    native = bench_offline_has_variant(args)
    for variant in TIDAL_VARIANTS:
        if native:
            rate, size = tidal_decode_tok_s(args, args.model, variant), None
        else:
            path = tidal_quantize(args, variant)
            rate, size = tidal_decode_tok_s(args, path), mib(path)
        rows.append(("tidal", variant, size, rate))
        print(f"tidal {variant}: {rate:.1f} tok/s", flush=True)
    rows.append(("tidal", "q4_1 (original)", mib(args.model), tidal_decode_tok_s(args, args.model)))

    how = "bench-offline --variant" if native else "bench-offline on tidal-quantize files"
    print(f"\nSmolLM2-135M decode at batch 1, {args.threads} threads, {PROMPT_TOKENS}-token prompt, "
          f"{GEN_TOKENS} generated, best of {REPEATS} (tidal: {how})")
    # Spinning thread pools collapse when the cores are oversubscribed, so
    # say how busy the machine was: figures above ~cores are not comparable.
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'engine':<10} {'weights':<16} {'file MiB':>9} {'tok/s':>8}")
    for engine, name, size, rate in rows:
        print(f"{engine:<10} {name:<16} {'' if size is None else f'{size:.1f}':>9} {rate:>8.1f}")
    rate = {(e, n): r for e, n, _, r in rows}
    print()
    for label, a, b in [("tidal int8 / llama.cpp Q8_0", ("tidal", "int8"), ("llama.cpp", "Q8_0")),
                        ("tidal int8-g32 / llama.cpp Q8_0", ("tidal", "int8-g32"), ("llama.cpp", "Q8_0")),
                        ("tidal w8a16-g32 / llama.cpp Q8_0", ("tidal", "w8a16-g32"), ("llama.cpp", "Q8_0")),
                        ("tidal int4-g128 / llama.cpp Q4_0", ("tidal", "int4-g128"), ("llama.cpp", "Q4_0")),
                        ("tidal w4a16-g32 / llama.cpp Q4_1", ("tidal", "w4a16-g32"), ("llama.cpp", "Q4_1")),
                        ("tidal int8 / tidal f32", ("tidal", "int8"), ("tidal", "f32"))]:
        print(f"{label:<34} {rate[a] / rate[b]:.2f}x")


if __name__ == "__main__":
    main()

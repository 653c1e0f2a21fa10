#!/usr/bin/env python3
"""Top-1 agreement and mean KL of llama.cpp's own quantized files against
its F16 file, on the same text and positions `tidal eval` scores: the
yardstick for tidal's variant accuracy (docs/VARIANTS.md). Never part of
`make test`. Run after bench/variants_vs_llamacpp.py made the files:

    /tmp/llamacpp/venv/bin/python bench/llamacpp_agreement.py \
        [--dir /tmp/tidal_variants_vs_llamacpp] [--text tests/data/eval/chat.txt] [--threads 2]

Windows: non-overlapping 512 tokens; SmolLM2 adds no BOS, so each window's
first token only conditions the rest (as `tidal eval` does).
"""
import argparse
import os

import numpy as np
from llama_cpp import Llama

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def window_logprobs(path, windows, threads):
    llm = Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=threads, logits_all=True, verbose=False)
    out = []
    for w in windows:
        llm.reset()
        llm.eval(w)
        logits = np.array(llm.scores[: len(w)], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        out.append(logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", default="/tmp/tidal_variants_vs_llamacpp")
    p.add_argument("--text", default=os.path.join(REPO, "tests/data/eval/chat.txt"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    base = os.path.join(args.dir, "smollm2-f16.gguf")
    tok = Llama(model_path=base, n_ctx=512, vocab_only=True, verbose=False)
    ids = tok.tokenize(open(args.text, encoding="utf-8").read().encode(), add_bos=False, special=True)
    windows = [ids[i:i + 512] for i in range(0, len(ids), 512) if len(ids[i:i + 512]) > 1]
    ref = window_logprobs(base, windows, args.threads)
    print(f"text {os.path.basename(args.text)}: {len(ids)} tokens, {len(windows)} windows, base F16")
    for name in ("q8_0", "q4_0"):
        got = window_logprobs(os.path.join(args.dir, f"smollm2-{name}.gguf"), windows, args.threads)
        agree = n = 0
        kl = 0.0
        for w, r, g in zip(windows, ref, got):
            # Position j predicts token j+1; the last position predicts nothing in the window.
            r, g = r[:-1], g[:-1]
            agree += int((r.argmax(axis=1) == g.argmax(axis=1)).sum())
            kl += float((np.exp(r) * (r - g)).sum())
            n += len(r)
        print(f"llama.cpp {name.upper()} vs F16: top-1 agreement {agree / n:.4f}, mean KL {kl / n:.4g} over {n} positions")


if __name__ == "__main__":
    main()

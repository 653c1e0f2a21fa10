#!/usr/bin/env bash
# The table of docs/VARIANTS.md, from one command (never part of `make test`;
# ~23 minutes on 2 cores):
#
#   bench/variants_table.sh [BUILD=build] [THREADS=2]
#
# For each model and variant: bytes of weights in memory, perplexity on a
# held-out text, top-1 agreement and mean KL(base || variant) against the
# f32 base over the same positions (`tidal eval`), and prefill tok/s and
# decode tok/s at batch 1 and 32 (`tidal bench-offline --variant`, 128-token
# prompts, 64 generated tokens, best of 2 runs). Prints a markdown table; raw outputs go to
# bench/out/variants-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
THREADS=${THREADS:-2}
TIDAL="$BUILD/bin/tidal"
OUT=${OUT:-bench/out/variants-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

SMOL=models/SmolLM2-135M-Instruct.Q4_1.gguf
STORIES=tests/data/stories260K/stories260K.bin
VARIANTS="f32 f16 bf16 int8 int8-rot int8-g32 int8-g32-rot int4-g32 int4-g64 int4-g128 w8a16-g32 w4a16-g32 w4a16-g128"

row() {  # model-name model-path text variant
  local name=$1 model=$2 text=$3 variant=$4 tag="$1-$4-$(basename "$3" .txt)"
  "$TIDAL" eval --model "$model" --variant "$variant" --text "$text" --threads "$THREADS" --json \
    >"$OUT/$tag.eval.json"
  "$TIDAL" bench-offline --model "$model" --variant "$variant" --threads "$THREADS" --batches 1 32 \
    --prompt-len 128 --gen-len 64 --kv-cache-mb 512 --repeats 2 >"$OUT/$tag.bench.txt" 2>&1
  python3 - "$name" "$text" "$variant" "$OUT/$tag.eval.json" "$OUT/$tag.bench.txt" <<'PY'
import json, sys
name, text, variant, eval_path, bench_path = sys.argv[1:]
e = json.load(open(eval_path))
rows = {}
for line in open(bench_path):
    f = line.split()
    if len(f) >= 8 and f[0].isdigit():  # batch, prefill tok/s, GFLOP/s, % sgemm, % peak, decode tok/s, ...
        rows[int(f[0])] = (float(f[1]), float(f[5]))
print(f"| {name} | {variant} | {e['bytes'] / 2**20:.1f} | {text.split('/')[-1]} | {e['perplexity']:.3f} "
      f"| {e['top1_agreement']:.4f} | {e['mean_kl']:.3g} | {rows[1][1]:.1f} | {rows[32][1]:.1f} | {rows[1][0]:.0f} |")
PY
}

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, threads $THREADS"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| model | variant | MiB | text | perplexity | top-1 vs f32 | KL vs f32 | decode b1 tok/s | decode b32 tok/s | prefill tok/s |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for v in $VARIANTS; do row SmolLM2-135M "$SMOL" tests/data/eval/chat.txt "$v"; done
for v in $VARIANTS; do row stories260K "$STORIES" tests/data/eval/tinystories_heldout.txt "$v"; done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw outputs: $OUT"

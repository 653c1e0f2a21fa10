#!/usr/bin/env bash
# tidal vs llama.cpp on the same GGUF, same thread count, same tidal-bench
# workloads: for each concurrency, the random dataset with a fixed input and
# output length, then the ratios. The two servers run one after the other,
# never together, so neither steals the other's cores.
#
# Needs: a built tidal and tidal-bench ($BUILD/bin), and llama-cpp-python's
# server (pip install 'llama-cpp-python[server]') importable by $LLAMA_PYTHON.
# Not part of `make test`. Documented in docs/PERFORMANCE.md.
#
#   bench/compare.sh                      # defaults below
#   CONCURRENCIES="1 8" NUM_PROMPTS_PER_CONC=4 bench/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-$(nproc)}
CONCURRENCIES=${CONCURRENCIES:-"1 8 32"}
INPUT_LEN=${INPUT_LEN:-256}
OUTPUT_LEN=${OUTPUT_LEN:-128}
VOCAB=${VOCAB:-49152}                        # SmolLM2's vocabulary
NUM_PROMPTS_PER_CONC=${NUM_PROMPTS_PER_CONC:-4}  # requests per run = this x concurrency (at least MIN_PROMPTS)
MIN_PROMPTS=${MIN_PROMPTS:-8}
SEED=${SEED:-0}
LLAMA_PYTHON=${LLAMA_PYTHON:-python3}
# llama.cpp's context must hold the largest request; tidal sizes its own.
LLAMA_CTX=${LLAMA_CTX:-2048}
TIDAL_PORT=${TIDAL_PORT:-18081}
LLAMA_PORT=${LLAMA_PORT:-18082}
OUT=${OUT:-bench/out/compare-$(date -u +%Y%m%dT%H%M%SZ)}
NAME=smollm2

BENCH_BIN="$BUILD/bin/tidal-bench"
TIDAL_BIN="$BUILD/bin/tidal"
for f in "$BENCH_BIN" "$TIDAL_BIN" "$MODEL"; do
  [ -e "$f" ] || { echo "compare.sh: missing $f" >&2; exit 2; }
done
"$LLAMA_PYTHON" -c "import llama_cpp.server" 2>/dev/null ||
  { echo "compare.sh: $LLAMA_PYTHON cannot import llama_cpp.server (pip install 'llama-cpp-python[server]')" >&2; exit 2; }
mkdir -p "$OUT"

server_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
trap stop_server EXIT

# llama-cpp-python has no ignore_eos; banning the end-of-text tokens
# (<|endoftext|> 0, <|im_end|> 2 in SmolLM2) makes it generate max_tokens too.
# Every run's token counts are checked below, so a miss would show.
llama_extra='{"logit_bias": {"0": -100, "2": -100}}'

# run_engine NAME URL [extra tidal-bench args...]
run_engine() {
  local engine=$1 url=$2
  shift 2
  for c in $CONCURRENCIES; do
    local n=$((c * NUM_PROMPTS_PER_CONC))
    [ "$n" -ge "$MIN_PROMPTS" ] || n=$MIN_PROMPTS
    echo "== $engine, concurrency $c, $n requests"
    "$BENCH_BIN" --base-url "$url" --model "$NAME" --endpoint completions --dataset random \
      --random-input-len "$INPUT_LEN" --random-output-len "$OUTPUT_LEN" --random-vocab-size "$VOCAB" \
      --num-prompts "$n" --request-rate inf --max-concurrency "$c" --ignore-eos --seed "$SEED" \
      --num-warmups 1 --ready-check-timeout 300 --disable-progress \
      --json "$OUT/$engine-c$c.json" "$@" | tee "$OUT/$engine-c$c.txt"
  done
}

echo "tidal: $TIDAL_BIN serve, $THREADS threads"
"$TIDAL_BIN" serve --model "$MODEL" --threads "$THREADS" --host 127.0.0.1 --port "$TIDAL_PORT" \
  --served-model-name "$NAME" >"$OUT/tidal-serve.log" 2>&1 &
server_pid=$!
run_engine tidal "http://127.0.0.1:$TIDAL_PORT"
stop_server

echo "llama.cpp: llama-cpp-python server, $THREADS threads"
"$LLAMA_PYTHON" -m llama_cpp.server --model "$MODEL" --model_alias "$NAME" --host 127.0.0.1 --port "$LLAMA_PORT" \
  --n_threads "$THREADS" --n_threads_batch "$THREADS" --n_ctx "$LLAMA_CTX" >"$OUT/llama-serve.log" 2>&1 &
server_pid=$!
run_engine llama "http://127.0.0.1:$LLAMA_PORT" --extra-body "$llama_extra"
stop_server

python3 - "$OUT" "$CONCURRENCIES" "$OUTPUT_LEN" <<'EOF' | tee "$OUT/ratios.md"
import json, sys
out, concs, output_len = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
def load(engine, c):
    s = json.load(open(f"{out}/{engine}-c{c}.json"))
    reqs = s["requests"]
    short = sum(1 for r in reqs if r["success"] and r["output_tokens"] != output_len)
    return s["summary"], short
print("| concurrency | engine | output tok/s | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | TPOT p99 ms | failed |")
print("|---|---|---|---|---|---|---|---|")
ratios = []
for c in concs:
    (t, t_short), (l, l_short) = load("tidal", c), load("llama", c)
    for name, s, short in (("tidal", t, t_short), ("llama.cpp", l, l_short)):
        note = f" ({short} short)" if short else ""
        print(f"| {c} | {name} | {s['output_throughput']:.1f} | {s['median_ttft_ms']:.1f} | {s['p99_ttft_ms']:.1f} "
              f"| {s['median_tpot_ms']:.2f} | {s['p99_tpot_ms']:.2f} | {s['failed']}{note} |")
    ratios.append((c, t["output_throughput"] / l["output_throughput"],
                   l["median_ttft_ms"] / t["median_ttft_ms"], l["p99_ttft_ms"] / t["p99_ttft_ms"],
                   l["median_tpot_ms"] / t["median_tpot_ms"], l["p99_tpot_ms"] / t["p99_tpot_ms"]))
print()
print("Ratios, tidal relative to llama.cpp (> 1 means tidal is better: more throughput, lower latency):")
print()
print("| concurrency | output tok/s | TTFT p50 | TTFT p99 | TPOT p50 | TPOT p99 |")
print("|---|---|---|---|---|---|")
for c, *r in ratios:
    print(f"| {c} | " + " | ".join(f"{x:.2f}x" for x in r) + " |")
EOF
echo "results in $OUT"

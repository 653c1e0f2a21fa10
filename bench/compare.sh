#!/usr/bin/env bash
# tidal vs llama.cpp on the same GGUF with the same thread count, measured by
# the same tidal-bench workload: the random dataset (fixed input and output
# length) at each concurrency, then the ratios.
#
# Both engines get exactly the same prompts: they are made once as text
# through tidal's tokenizer (vLLM's random-dataset method) and frozen in a
# jsonl file; the two engines tokenize them identically since they read the
# same GGUF vocabulary. Only one server runs at a time, so neither steals the
# other's cores, and the engines alternate at each concurrency so that a
# change in the machine's background load hits both alike.
#
# Needs: $BUILD/bin/tidal and tidal-bench, and llama-cpp-python's server
# (pip install 'llama-cpp-python[server]') importable by $LLAMA_PYTHON.
# Not part of `make test`. Documented in docs/PERFORMANCE.md.
#
#   bench/compare.sh
#   CONCURRENCIES="1 8" NUM_PROMPTS_PER_CONC=2 LLAMA_PYTHON=/path/venv/bin/python bench/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-$(nproc)}
CONCURRENCIES=${CONCURRENCIES:-"1 8 32"}
INPUT_LEN=${INPUT_LEN:-256}
OUTPUT_LEN=${OUTPUT_LEN:-128}
VOCAB=${VOCAB:-49152}                            # SmolLM2's vocabulary
NUM_PROMPTS_PER_CONC=${NUM_PROMPTS_PER_CONC:-2}  # requests per run: this x concurrency, at least MIN_PROMPTS
MIN_PROMPTS=${MIN_PROMPTS:-8}
SEED=${SEED:-0}
LLAMA_PYTHON=${LLAMA_PYTHON:-python3}
TIDAL_ARGS=${TIDAL_ARGS:-}                       # extra `tidal serve` flags, e.g. "--target-tpot-ms 18"
LLAMA_CTX=${LLAMA_CTX:-2048}                     # llama.cpp's context must hold one request; tidal sizes its own
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
command -v curl >/dev/null || { echo "compare.sh: needs curl" >&2; exit 2; }
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

# start_server ENGINE: starts it in the background and waits until it answers.
# llama-cpp-python's server runs one request at a time; by default a new
# request cuts off the one streaming, so it is told to queue them instead.
start_server() {
  local port
  if [ "$1" = tidal ]; then
    port=$TIDAL_PORT
    "$TIDAL_BIN" serve --model "$MODEL" --threads "$THREADS" --host 127.0.0.1 --port "$port" \
      --served-model-name "$NAME" $TIDAL_ARGS >>"$OUT/tidal-serve.log" 2>&1 &
  else
    port=$LLAMA_PORT
    "$LLAMA_PYTHON" -m llama_cpp.server --model "$MODEL" --model_alias "$NAME" --host 127.0.0.1 --port "$port" \
      --n_threads "$THREADS" --n_threads_batch "$THREADS" --n_ctx "$LLAMA_CTX" \
      --interrupt_requests False >>"$OUT/llama-serve.log" 2>&1 &
  fi
  server_pid=$!
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || { echo "compare.sh: $1 server exited; see $OUT/$1-serve.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "compare.sh: $1 server did not come up" >&2
  exit 1
}

# Both engines generate exactly max_tokens: tidal via ignore_eos;
# llama-cpp-python has no ignore_eos, so its end-of-text tokens
# (<|endoftext|> 0, <|im_end|> 2 in SmolLM2) are banned. Its default
# repeat_penalty of 1.1 is turned off to match tidal's (and vLLM's) 1.0.
# llama-cpp-python sends no usage; its streams end with finish_reason
# "length", which tidal-bench counts as max_tokens (re-tokenizing the text is
# its fallback). The table notes requests whose count is not OUTPUT_LEN.
llama_extra='{"logit_bias": {"0": -100, "2": -100}, "repeat_penalty": 1.0}'

max_n=$MIN_PROMPTS
for c in $CONCURRENCIES; do
  n=$((c * NUM_PROMPTS_PER_CONC))
  [ "$n" -le "$max_n" ] || max_n=$n
done

echo "== prompts: $max_n x $INPUT_LEN tokens, via tidal's tokenizer"
start_server tidal
"$BENCH_BIN" --base-url "http://127.0.0.1:$TIDAL_PORT" --model "$NAME" --dataset random --prompt-format text \
  --random-input-len "$INPUT_LEN" --random-output-len "$OUTPUT_LEN" --random-vocab-size "$VOCAB" \
  --num-prompts "$max_n" --seed "$SEED" --save-dataset "$OUT/prompts.jsonl"
stop_server

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; threads $THREADS"
  echo "model: $MODEL"
  echo "llama-cpp-python: $("$LLAMA_PYTHON" -c 'import llama_cpp; print(llama_cpp.__version__)')"
} >"$OUT/environment.txt"

for c in $CONCURRENCIES; do
  n=$((c * NUM_PROMPTS_PER_CONC))
  [ "$n" -ge "$MIN_PROMPTS" ] || n=$MIN_PROMPTS
  for engine in tidal llama; do
    echo "== $engine, concurrency $c, $n requests (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "$engine c$c start load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/environment.txt"
    start_server "$engine"
    if [ "$engine" = llama ]; then
      port=$LLAMA_PORT extra=$llama_extra tokenize=/extras/tokenize
    else
      port=$TIDAL_PORT extra='{}' tokenize=/tokenize
    fi
    "$BENCH_BIN" --base-url "http://127.0.0.1:$port" --model "$NAME" --endpoint completions --tokenize-path "$tokenize" \
      --dataset jsonl --dataset-path "$OUT/prompts.jsonl" --num-prompts "$n" \
      --request-rate inf --max-concurrency "$c" --ignore-eos --extra-body "$extra" --seed "$SEED" \
      --disable-progress --json "$OUT/$engine-c$c.json" | tee "$OUT/$engine-c$c.txt"
    echo "$engine c$c end load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/environment.txt"
    stop_server
  done
done

python3 - "$OUT" "$CONCURRENCIES" "$OUTPUT_LEN" <<'EOF' | tee "$OUT/ratios.md"
import json, sys
out, concs, output_len = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
def load(engine, c):
    d = json.load(open(f"{out}/{engine}-c{c}.json"))
    short = sum(1 for r in d["requests"] if r["success"] and r["output_tokens"] != output_len)
    return d["summary"], short
print("| concurrency | engine | requests | output tok/s | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | TPOT p99 ms | failed |")
print("|---|---|---|---|---|---|---|---|---|")
ratios = []
for c in concs:
    (t, t_short), (l, l_short) = load("tidal", c), load("llama", c)
    for name, s, short in (("tidal", t, t_short), ("llama.cpp", l, l_short)):
        note = f" ({short} counted != {output_len} tokens)" if short else ""
        print(f"| {c} | {name} | {s['completed']} | {s['output_throughput']:.1f} | {s['median_ttft_ms']:.0f} "
              f"| {s['p99_ttft_ms']:.0f} | {s['median_tpot_ms']:.1f} | {s['p99_tpot_ms']:.1f} | {s['failed']}{note} |")
    ratios.append((c, t["output_throughput"] / l["output_throughput"],
                   l["median_ttft_ms"] / t["median_ttft_ms"], l["p99_ttft_ms"] / t["p99_ttft_ms"],
                   l["median_tpot_ms"] / t["median_tpot_ms"], l["p99_tpot_ms"] / t["p99_tpot_ms"]))
print()
print("tidal relative to llama.cpp; above 1 means tidal is better (throughput: tidal / llama.cpp;")
print("latencies: llama.cpp / tidal):")
print()
print("| concurrency | output tok/s | TTFT p50 | TTFT p99 | TPOT p50 | TPOT p99 |")
print("|---|---|---|---|---|---|")
for c, *r in ratios:
    print(f"| {c} | " + " | ".join(f"{x:.2f}x" for x in r) + " |")
EOF
echo "results in $OUT"

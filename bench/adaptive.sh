#!/usr/bin/env bash
# The workload-aware reconfiguration experiment (issue 19; never part of
# `make test`):
#
#   bench/adaptive.sh                 # the experiment (~1 hour on 2 cores)
#   QUICK=1 bench/adaptive.sh         # smoke run: 20 s phases, base and one variant
#   SWEEP=1 bench/adaptive.sh         # first find each static configuration's best knobs
#
# SmolLM2-135M serves real writing requests (WritingBench's queries from
# the PyPI package inspect-evals, tools/extract_writingbench.py, with
# provenance) in an arrival trace whose rate swings >= 10x in four phases,
# low/high/low/high (tools/make_phase_trace.py: seeded Poisson arrivals,
# English prompts of at most MAX_PROMPT_TOKENS chat tokens, every request
# asking for MAX_OUTPUT_TOKENS, greedy). The same trace is replayed
# (tidal-bench --trace-replay, same seed) against
#   (a) every static configuration of CONFIGS: `tidal serve --variant V`
#       at the --max-num-seqs / --target-tpot-ms that serve V best on this
#       trace (from the sweep's knobs file, else the built-in ones below);
#   (b) the adaptive server: `--reconfig on` with the SLOs below, started
#       at the base's best knobs;
#   (c) with ROUTER_ARGS set, the adaptive server again with those extra
#       flags (the router, once it exists);
# every request asking for "return_token_ids" so that tidal-bench records
# the served prompt and output ids. Each run's switch log
# (/admin/v1/switches), decisions (/admin/v1/decisions) and configuration
# polled every second are kept. After the runs, `tidal agreement`
# teacher-forces the base on every served prompt+output and counts the
# requests whose served tokens are the base's top-1 at >= AGREE_TOKENS of
# their positions (valid because every request is greedy). Then
# bench/adaptive_report.py writes OUT_JSON
#   {"static": {config: {"goodput": req/s, "agreement": x, "failed": n, ...}},
#    "adaptive": {...}, "switches": n, "targets": {...}, "trace": ..., ...}
# and OUT_PNG: goodput, TTFT/TPOT p95 and the adaptive server's active
# configuration over time.
#
# Goodput is tidal-bench's: requests that meet TTFT <= SLO_TTFT_MS and
# TPOT <= SLO_TPOT_MS each, per second of the run (trace + drain). A
# configuration meets the accuracy objective when the one-sided
# Clopper-Pearson lower bound (CONFIDENCE) of its agreement is >= ACCURACY.
#
# Static configurations before `tidal serve --variant` exists: the base is
# started and switched to V through the admin API before the trace starts
# (run.json says "how": "admin"); the adaptive run is skipped while
# `tidal serve` has no --reconfig, and agreement is null while `tidal
# agreement` does not exist or the server sends no token ids.
#
# Rates (default PHASES): on this 2-core machine the base at its best knobs
# keeps TPOT p95 under 50 ms only to about 0.4 requests/s of these prompts
# (mean ~240 prompt tokens, 128 output), and saturates near 1 request/s
# with no latency bound; the fastest variant (int8) saturates near 2.6/s.
# The high phase, 1.2/s, is above what the base can carry at any knobs;
# the low phase, 0.1/s, is 12x lower, where every configuration meets the
# latency objectives. See docs/RECONFIGURATION.md for the measurements.
#
# Environment: MODEL (models/SmolLM2-135M-Instruct.Q4_1.gguf), THREADS (2),
# BUILD (build), SEED (1), QUICK (0), SWEEP (0), PHASES (60:0.1,60:1.2,
# 60:0.1,60:1.2; QUICK: 20 s each), MAX_OUTPUT_TOKENS (128),
# MAX_PROMPT_TOKENS (512), CONFIGS (base w4a16-g32 int8-g32 int8-rot int8;
# QUICK: base int8), CANDIDATES (w4a16-g32,int8-g32,int8-rot,int8),
# SLO_TTFT_MS (1000), SLO_TPOT_MS (50), ACCURACY (0.95), CONFIDENCE (0.95),
# AGREE_TOKENS (0.9), SHADOW_FRACTION (0.05), SHADOW_BUDGET (0.05),
# KV_CACHE_MB (tidal's default), SWEEP_SEQS (4 8 16 64), SWEEP_TPOT (0 30 45),
# KNOBS (bench/out/adaptive_knobs.json: written by SWEEP=1, read by every
# run), STATIC (1), ADAPTIVE (1), ADAPTIVE_ARGS (more flags for the adaptive
# server, e.g. --reconfig-dwell 10), LEARN (150: requests a learning server
# shadow-scores first, below; 0: none), STATE_DB (the adaptive server's
# --state-db; default the learned one, or with LEARN=0 a fresh file),
# ROUTER_ARGS (unset), AGREEMENT (1), AGREEMENT_CMD (a stand-in for `tidal
# agreement`, given the same flags),
# PROMPTS (bench/data/writingbench.jsonl), RESULTS (raw outputs; default
# bench/out/adaptive-<time>), OUT_JSON / OUT_PNG (bench/out/adaptive.json /
# .png; QUICK: adaptive-quick.*).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac

QUICK=${QUICK:-0}
SWEEP=${SWEEP:-0}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-2}
BUILD=${BUILD:-build}
SEED=${SEED:-1}
MAX_OUTPUT_TOKENS=${MAX_OUTPUT_TOKENS:-128}
MAX_PROMPT_TOKENS=${MAX_PROMPT_TOKENS:-512}
SLO_TTFT_MS=${SLO_TTFT_MS:-1000}
SLO_TPOT_MS=${SLO_TPOT_MS:-50}
ACCURACY=${ACCURACY:-0.95}
CONFIDENCE=${CONFIDENCE:-0.95}
AGREE_TOKENS=${AGREE_TOKENS:-0.9}
SHADOW_FRACTION=${SHADOW_FRACTION:-0.05}
SHADOW_BUDGET=${SHADOW_BUDGET:-0.05}
CANDIDATES=${CANDIDATES:-w4a16-g32,int8-g32,int8-rot,int8}
KV_CACHE_MB=${KV_CACHE_MB:-}
SWEEP_SEQS=${SWEEP_SEQS:-4 8 16 64}
SWEEP_TPOT=${SWEEP_TPOT:-0 30 45}
KNOBS=${KNOBS:-bench/out/adaptive_knobs.json}
STATIC=${STATIC:-1}
ADAPTIVE=${ADAPTIVE:-1}
ROUTER_ARGS=${ROUTER_ARGS:-}
AGREEMENT=${AGREEMENT:-1}
PROMPTS=${PROMPTS:-bench/data/writingbench.jsonl}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if [ "$QUICK" = 1 ]; then
  PHASES=${PHASES:-20:0.1,20:1.2,20:0.1,20:1.2}
  CONFIGS=${CONFIGS:-base int8}
  RESULTS=${RESULTS:-bench/out/adaptive-quick-$STAMP}
  OUT_JSON=${OUT_JSON:-bench/out/adaptive-quick.json}
  OUT_PNG=${OUT_PNG:-bench/out/adaptive-quick.png}
else
  PHASES=${PHASES:-60:0.1,60:1.2,60:0.1,60:1.2}
  CONFIGS=${CONFIGS:-base w4a16-g32 int8-g32 int8-rot int8}
  RESULTS=${RESULTS:-bench/out/adaptive-$STAMP}
  OUT_JSON=${OUT_JSON:-bench/out/adaptive.json}
  OUT_PNG=${OUT_PNG:-bench/out/adaptive.png}
fi
# Best knobs per configuration ("max_num_seqs target_tpot_ms"; 0 = no TPOT
# target) when KNOBS has none: found with SWEEP=1 on the default trace
# (docs/RECONFIGURATION.md).
default_knobs() {
  case "$1" in
    base) echo "16 45" ;;
    w4a16-g32) echo "64 0" ;;
    int8-g32) echo "16 0" ;;
    int8-rot) echo "64 45" ;;
    int8) echo "8 0" ;;
    *) echo "16 45" ;;
  esac
}

TIDAL="$BUILD/bin/tidal"
BENCH="$BUILD/bin/tidal-bench"
REPORT=bench/adaptive_report.py
NAME=smollm2
[ "$MODEL" != models/SmolLM2-135M-Instruct.Q4_1.gguf ] || tools/setup_model.sh
for bin in "$TIDAL" "$BENCH"; do
  [ -x "$bin" ] || { echo "adaptive: $bin is not built (make build BUILD=$BUILD)" >&2; exit 2; }
done
mkdir -p "$RESULTS/runs" "$(dirname "$OUT_JSON")"
echo "adaptive: results in $RESULTS"

SERVE_HELP=$("$TIDAL" serve --help 2>&1 || true)
has_serve_flag() { grep -Eq -- "^ *(-[a-z], *)?$1 [A-Z]" <<<"$SERVE_HELP"; }
HAS_VARIANT=0; has_serve_flag --variant && HAS_VARIANT=1
HAS_RECONFIG=0; has_serve_flag --reconfig && HAS_RECONFIG=1
HAS_AGREEMENT=0; "$TIDAL" agreement --help >/dev/null 2>&1 && HAS_AGREEMENT=1
AGREEMENT_THREADS=0
[ "$HAS_AGREEMENT" = 1 ] && "$TIDAL" agreement --help 2>&1 | grep -q -- '--threads' && AGREEMENT_THREADS=$THREADS
echo "adaptive: tidal serve --variant: $HAS_VARIANT, --reconfig: $HAS_RECONFIG; tidal agreement: $HAS_AGREEMENT"

# --- prompts and trace --------------------------------------------------------
if [ ! -s "$PROMPTS" ]; then
  python3 tools/extract_writingbench.py --out "$PROMPTS" --tidal "$TIDAL" --model "$MODEL" --count-tokens yes \
    --reserve-output-tokens "$MAX_OUTPUT_TOKENS"
fi
TRACE="$RESULTS/trace.jsonl"
python3 tools/make_phase_trace.py --prompts "$PROMPTS" --out "$TRACE" --phases "$PHASES" --seed "$SEED" \
  --max-output-tokens "$MAX_OUTPUT_TOKENS" --lang en --max-prompt-tokens "$MAX_PROMPT_TOKENS"
NREQ=$(wc -l <"$TRACE")

KEY="adaptive-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
SERVER_PID=
POLL_PID=
URL=

stop_server() {
  if [ -n "$POLL_PID" ]; then kill "$POLL_PID" 2>/dev/null || true; wait "$POLL_PID" 2>/dev/null || true; POLL_PID=; fi
  [ -n "$SERVER_PID" ] || return 0
  local pid=$SERVER_PID
  SERVER_PID=
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "adaptive: tidal serve (pid $pid) did not exit within 30 s of SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
trap 'stop_server' EXIT
trap 'exit 130' INT TERM

# start_server RUN_DIR ARGS...: starts tidal serve, sets SERVER_PID and URL
start_server() {
  local dir=$1; shift
  local args=(serve --model "$MODEL" --host 127.0.0.1 --port 0 --threads "$THREADS" --served-model-name "$NAME"
              --admin-key "$KEY")
  [ -z "$KV_CACHE_MB" ] || args+=(--kv-cache-mb "$KV_CACHE_MB")
  args+=("$@")
  echo "adaptive: $TIDAL ${args[*]/$KEY/KEY}" | tee "$dir/server.cmd"
  "$TIDAL" "${args[@]}" >"$dir/server.stdout" 2>"$dir/server.log" &
  SERVER_PID=$!
  URL=
  for _ in $(seq 1200); do
    URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$dir/server.stdout" "$dir/server.log" 2>/dev/null | head -n1 | sed 's/^[^:]*://' || true)
    [ -n "$URL" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$URL" ]; then
    echo "adaptive: tidal serve did not start:" >&2
    cat "$dir/server.stdout" "$dir/server.log" >&2
    return 1
  fi
  for _ in $(seq 600); do curl -sf -o /dev/null "$URL/health" && break; sleep 0.1; done
  python3 "$REPORT" poll --url "$URL" --admin-key "$KEY" --out "$dir/config_timeline.jsonl" &
  POLL_PID=$!
}

admin_get() {  # admin_get PATH OUT: the reply, or {"error": ...} when the route does not exist
  curl -s -H "Authorization: Bearer $KEY" "$URL$1" -o "$2" || echo '{"error": "request failed"}' >"$2"
}

run_bench() {  # run_bench RUN_DIR
  local dir=$1
  local cmd=("$BENCH" --base-url "$URL" --model "$NAME" --endpoint chat --dataset jsonl --dataset-path "$TRACE"
             --num-prompts "$NREQ" --trace-replay --seed "$SEED" --goodput "ttft:$SLO_TTFT_MS" "tpot:$SLO_TPOT_MS"
             --extra-body '{"return_token_ids":true,"temperature":0}' --json "$dir/bench.json"
             --disable-progress --ready-check-timeout 120 --timeout 600)
  echo "${cmd[*]}" >"$dir/bench.cmd"
  echo "adaptive: $(date -u +%H:%M:%S) replaying $NREQ requests ($PHASES) against $(basename "$dir")"
  local rc=0
  echo "before: $(cut -d' ' -f1-3 /proc/loadavg)" >"$dir/loadavg.txt"
  "${cmd[@]}" >"$dir/bench.txt" 2>&1 || rc=$?
  echo "after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$dir/loadavg.txt"
  grep -E 'Successful|Failed|goodput|P99 TTFT|P99 TPOT' "$dir/bench.txt" | sed 's/^/    /' || true
  [ "$rc" = 0 ] || { echo "adaptive: tidal-bench exited $rc:" >&2; tail -n 5 "$dir/bench.txt" >&2; }
  admin_get /admin/v1/switches "$dir/switches.json"
  admin_get /admin/v1/decisions "$dir/decisions.json"
  admin_get /admin/v1/config "$dir/config_end.json"
  curl -s "$URL/metrics" -o "$dir/metrics_end.txt" || true
}

write_run_json() {  # write_run_json DIR NAME KIND CONFIG SEQS TPOT HOW
  python3 - "$@" <<'EOF'
import json, sys, pathlib
d, name, kind, config, seqs, tpot, how = sys.argv[1:8]
cmd = pathlib.Path(d, "server.cmd").read_text().strip() if pathlib.Path(d, "server.cmd").exists() else None
pathlib.Path(d, "run.json").write_text(json.dumps({
    "name": name, "kind": kind, "config": config,
    "max_num_seqs": int(seqs) if seqs else None, "target_tpot_ms": float(tpot) if tpot else None,
    "how": how, "server_cmd": cmd}, indent=1) + "\n")
EOF
}

# static_run NAME KIND CONFIG SEQS TPOT
static_run() {
  local name=$1 kind=$2 config=$3 seqs=$4 tpot=$5
  local dir="$RESULTS/runs/$name"
  mkdir -p "$dir"
  local extra=(--max-num-seqs "$seqs" --target-tpot-ms "$tpot") how=flag
  if [ "$config" != base ]; then
    if [ "$HAS_VARIANT" = 1 ]; then extra+=(--variant "$config"); else how="admin"; fi
  fi
  start_server "$dir" "${extra[@]}" || { stop_server; return 1; }
  if [ "$how" = admin ]; then
    TIDAL_ADMIN_KEY=$KEY "$TIDAL" admin --url "$URL" set "model=$NAME" "variant=$config" | tee "$dir/admin_set.txt"
  fi
  write_run_json "$dir" "$name" "$kind" "$config" "$seqs" "$tpot" "$how"
  run_bench "$dir"
  stop_server
}

python3 - "$RESULTS/experiment.json" <<EOF
import json, subprocess, sys, time
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return None
json.dump({"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "commit": sh("git rev-parse HEAD"), "dirty": bool(sh("git status --porcelain")),
           "machine": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-"), "cores": sh("nproc"),
           "load_average_before": sh("cut -d' ' -f1-3 /proc/loadavg"),
           "model": "$MODEL", "threads": $THREADS, "seed": $SEED, "phases": "$PHASES", "quick": $QUICK,
           "configs": "$CONFIGS".split(), "candidates": "$CANDIDATES", "max_output_tokens": $MAX_OUTPUT_TOKENS,
           "max_prompt_tokens": $MAX_PROMPT_TOKENS, "requests": $NREQ,
           "tidal_serve_has_variant": bool($HAS_VARIANT), "tidal_serve_has_reconfig": bool($HAS_RECONFIG),
           "tidal_agreement_exists": bool($HAS_AGREEMENT), "knobs_file": "$KNOBS"},
          open(sys.argv[1], "w"), indent=1)
EOF

# --- (0) sweep of each static configuration's knobs ----------------------------
if [ "$SWEEP" = 1 ]; then
  for config in $CONFIGS; do
    for seqs in $SWEEP_SEQS; do
      for tpot in $SWEEP_TPOT; do
        static_run "sweep-$config-s$seqs-t$tpot" sweep "$config" "$seqs" "$tpot"
      done
    done
  done
  python3 "$REPORT" knobs --results "$RESULTS" --out "$RESULTS/knobs.json"
  cp "$RESULTS/knobs.json" "$KNOBS"
  echo "adaptive: knobs written to $KNOBS"
elif [ -s "$KNOBS" ]; then
  cp "$KNOBS" "$RESULTS/knobs.json"
fi
knobs_of() {
  local d
  d=$(default_knobs "$1")
  python3 "$REPORT" get-knobs --knobs "$RESULTS/knobs.json" --config "$1" --default-seqs "${d% *}" \
    --default-tpot "${d#* }"
}

# --- (a) static configurations -------------------------------------------------
if [ "$STATIC" = 1 ]; then
  for config in $CONFIGS; do
    read -r seqs tpot <<<"$(knobs_of "$config")"
    static_run "static-$config" static "$config" "$seqs" "$tpot"
  done
fi

# --- (b, c) the adaptive server ------------------------------------------------
adaptive_run() {  # adaptive_run NAME EXTRA_FLAGS...
  local name=$1; shift
  local dir="$RESULTS/runs/$name"
  mkdir -p "$dir"
  read -r seqs tpot <<<"$(knobs_of base)"
  start_server "$dir" --max-num-seqs "$seqs" --target-tpot-ms "$tpot" --reconfig on \
    --slo "ttft_p95_ms=$SLO_TTFT_MS,tpot_p95_ms=$SLO_TPOT_MS,accuracy=$ACCURACY,confidence=$CONFIDENCE" \
    --reconfig-candidates "$CANDIDATES" --shadow-fraction "$SHADOW_FRACTION" --shadow-budget "$SHADOW_BUDGET" \
    --state-db "${STATE_DB:-$dir/state.db}" "${ADAPTIVE_EXTRA[@]}" "$@" || { stop_server; return 1; }
  write_run_json "$dir" "$name" adaptive base "$seqs" "$tpot" flag
  run_bench "$dir"
  stop_server
}
# What the adaptive server knows when the trace starts: with LEARN=N (and no
# STATE_DB given), a learning server first serves N requests drawn with
# another seed from the same prompt set (prompts up to 1024 tokens, so that
# each is served once: every scored request is a separate trial), in
# `--reconfig advise` mode with
# every request shadow-scored and no budget, into a state database that
# the adaptive run then starts from (a restarted server starts from what
# it learned). At 0.95 a variant that always agrees needs 114 scored
# requests before the sequential test accepts it, which at the default 5%
# budget would take longer than the whole trace.
learn_state() {  # learn_state DB
  local db=$1 dir="$RESULTS/runs/learn"
  mkdir -p "$dir"
  local trace="$dir/learn.jsonl"
  python3 tools/make_phase_trace.py --prompts "$PROMPTS" --out "$trace" --phases "3600:1" --min-swing 1 --seed "$((SEED + 1000))" \
    --max-output-tokens "$MAX_OUTPUT_TOKENS" --lang en --max-prompt-tokens 1024
  start_server "$dir" --reconfig advise \
    --slo "ttft_p95_ms=$SLO_TTFT_MS,tpot_p95_ms=$SLO_TPOT_MS,accuracy=$ACCURACY,confidence=$CONFIDENCE" \
    --reconfig-candidates "$CANDIDATES" --shadow-fraction 1 --shadow-budget 1 --state-db "$db" || { stop_server; return 1; }
  echo "adaptive: $(date -u +%H:%M:%S) learning from $LEARN requests into $db"
  "$BENCH" --base-url "$URL" --model "$NAME" --endpoint chat --dataset jsonl --dataset-path "$trace" \
    --num-prompts "$LEARN" --request-rate inf --max-concurrency 2 --seed "$SEED" \
    --extra-body '{"temperature":0}' --json "$dir/bench.json" --disable-progress --timeout 600 >"$dir/bench.txt" 2>&1
  # Until every sampled request has been scored.
  for _ in $(seq 3600); do
    admin_get /admin/v1/reconfig "$dir/reconfig.json"
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["data"][0]["shadow"]; sys.exit(0 if s["pending"] == 0 and s["scored"] + s["dropped"] >= int(sys.argv[2]) else 1)' \
      "$dir/reconfig.json" "$LEARN" && break
    sleep 1
  done
  stop_server
}
LEARN=${LEARN:-150}
if [ "$ADAPTIVE" = 1 ] && [ "$HAS_RECONFIG" = 1 ] && [ -z "${STATE_DB:-}" ] && [ "$LEARN" -gt 0 ]; then
  STATE_DB="$RESULTS/learned-state.db"
  learn_state "$STATE_DB"
fi
ADAPTIVE_EXTRA=()
[ -z "${ADAPTIVE_ARGS:-}" ] || read -r -a ADAPTIVE_EXTRA <<<"$ADAPTIVE_ARGS"
if [ "$ADAPTIVE" = 1 ]; then
  if [ "$HAS_RECONFIG" = 1 ]; then
    adaptive_run adaptive
    if [ -n "$ROUTER_ARGS" ]; then
      read -r -a router <<<"$ROUTER_ARGS"
      adaptive_run adaptive-router "${router[@]}"
    fi
  else
    echo "adaptive: $TIDAL serve has no --reconfig yet: the adaptive run is skipped" >&2
  fi
fi

# --- agreement of every served output with the base ------------------------------
if [ "$AGREEMENT" = 1 ]; then
  for dir in "$RESULTS"/runs/static-* "$RESULTS"/runs/adaptive*; do
    [ -f "$dir/bench.json" ] || continue
    if [ "$HAS_AGREEMENT" = 1 ] || [ -n "${AGREEMENT_CMD:-}" ]; then
      python3 "$REPORT" agreement --run "$dir" --tidal "$TIDAL" --model "$MODEL" --agree-tokens "$AGREE_TOKENS" \
        --threads "$AGREEMENT_THREADS" ${AGREEMENT_CMD:+--command "$AGREEMENT_CMD"} || true
    else
      echo '{"error": "tidal agreement does not exist in this build"}' >"$dir/agreement.json"
    fi
  done
fi

python3 "$REPORT" report --results "$RESULTS" --out-json "$OUT_JSON" --out-png "$OUT_PNG" \
  --slo-ttft-ms "$SLO_TTFT_MS" --slo-tpot-ms "$SLO_TPOT_MS" --accuracy "$ACCURACY" --confidence "$CONFIDENCE" \
  --agree-tokens "$AGREE_TOKENS"
cp "$OUT_JSON" "$RESULTS/" 2>/dev/null || true
[ ! -f "$OUT_PNG" ] || cp "$OUT_PNG" "$RESULTS/"
echo "adaptive: done; raw outputs in $RESULTS"

#!/usr/bin/env bash
# Soak test of live reconfiguration (never part of `make test`; ~8-10 minutes
# for 100 switches on 2 cores):
#
#   bench/reconfig_soak.sh [--switches N] [--results DIR] [reconfig_soak.py options...]
#
# Starts `tidal serve` on SmolLM2-135M with an admin key (loopback, --port 0,
# --threads 2), runs a baseline tidal-bench load (random prompts, 128 in /
# 64 out tokens, max concurrency 8, 48 requests, no switches), then the same
# load again -- tidal-bench rounds of 32 requests back to back, for as long
# as the switching lasts -- while it performs N switches
# (PUT /admin/v1/config?wait=true, one after another, 2 s apart, retried on
# 409), cycling the kinds variant, layout, variant+layout over the variants
# f32, int8-g32, w4a16-g32 and the layouts tp1, tp3, pp2, dp2.
# (SmolLM2 has 3 KV heads, so tp2 is refused with 400 invalid_config; tp3 is
# its tensor-parallel layout.) Prints per kind of switch: count, prepare time
# p50/p99, pause p50/p99, requests moved and tokens recomputed; and the
# baseline's vs the soak's TPOT/ITL/E2E/TTFT p50/p99, with the soak's
# requests in flight across a swap on their own. Exits non-zero when a
# request fails, a switch fails or is rejected, or the server crashes,
# hangs or does not exit cleanly on SIGTERM.
#
# Raw outputs (bench JSON, switch records, server log, report.md) go to
# --results, default /tmp/reconfig_soak-<time>.
#
# Environment: SWITCHES (100), RESULTS, BUILD (build), THREADS (2),
# KV_CACHE_MB (256: a smaller pool keeps each switch's KV allocation short),
# MODEL (models/SmolLM2-135M-Instruct.Q4_1.gguf). Everything else (load shape,
# cycle, gaps, timeouts) is an option of bench/reconfig_soak.py:
# `python3 bench/reconfig_soak.py --help`.
set -euo pipefail
cd "$(dirname "$0")/.."

SWITCHES=${SWITCHES:-100}
RESULTS=${RESULTS:-/tmp/reconfig_soak-$(date -u +%Y%m%dT%H%M%SZ)}
BUILD=${BUILD:-build}
THREADS=${THREADS:-2}
KV_CACHE_MB=${KV_CACHE_MB:-256}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --switches) SWITCHES=$2; shift 2 ;;
    --switches=*) SWITCHES=${1#*=}; shift ;;
    --results) RESULTS=$2; shift 2 ;;
    --results=*) RESULTS=${1#*=}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done

TIDAL="$BUILD/bin/tidal"
BENCH="$BUILD/bin/tidal-bench"
[ "$MODEL" != models/SmolLM2-135M-Instruct.Q4_1.gguf ] || tools/setup_model.sh
if [ ! -x "$TIDAL" ] || [ ! -x "$BENCH" ]; then
  make build BUILD="$BUILD"
fi
mkdir -p "$RESULTS"
echo "results: $RESULTS"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

KEY="soak-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
SERVER_LOG="$RESULTS/server.log"
SERVER_OUT="$RESULTS/server.stdout"
SERVER_PID=
SERVER_RC=
SERVER_ARGS=(serve --model "$MODEL" --host 127.0.0.1 --port 0 --threads "$THREADS" --kv-cache-mb "$KV_CACHE_MB"
             --served-model-name smollm2 --admin-key "$KEY")

stop_server() {  # SIGTERM, then wait up to 60 s; sets SERVER_RC
  [ -n "$SERVER_PID" ] || return 0
  local pid=$SERVER_PID
  SERVER_PID=
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "soak: tidal serve did not exit within 60 s of SIGTERM; killing it. Server log tail:" >&2
      tail -n 30 "$SERVER_LOG" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  else
    echo "soak: tidal serve was no longer running. Server log tail:" >&2
    tail -n 30 "$SERVER_LOG" >&2
  fi
  SERVER_RC=0
  wait "$pid" || SERVER_RC=$?
}
trap 'stop_server' EXIT
trap 'exit 130' INT TERM

echo "server: $TIDAL ${SERVER_ARGS[*]/$KEY/KEY}"
"$TIDAL" "${SERVER_ARGS[@]}" >"$SERVER_OUT" 2>"$SERVER_LOG" &
SERVER_PID=$!
URL=
for _ in $(seq 1200); do  # 120 s
  URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$SERVER_OUT" 2>/dev/null | head -n1 || true)
  [ -n "$URL" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$URL" ]; then
  echo "soak: tidal serve did not start; its output:" >&2
  cat "$SERVER_OUT" "$SERVER_LOG" >&2
  exit 1
fi
for _ in $(seq 600); do
  curl -sf -o /dev/null "$URL/health" && break
  sleep 0.1
done
echo "server: $URL (pid $SERVER_PID)"

rc=0
python3 bench/reconfig_soak.py --url "$URL" --admin-key "$KEY" --model-name smollm2 --bench "$BENCH" \
  --results "$RESULTS" --switches "$SWITCHES" --server-pid "$SERVER_PID" --server-log "$SERVER_LOG" \
  --server-desc "serving $MODEL with --threads $THREADS --kv-cache-mb $KV_CACHE_MB (starts as base tp1)" \
  "${EXTRA[@]}" || rc=$?

stop_server
echo "tidal serve exited with $SERVER_RC after SIGTERM"
if [ "$SERVER_RC" != 0 ]; then
  echo "soak: FAIL: unclean server exit; server log tail:" >&2
  tail -n 30 "$SERVER_LOG" >&2
  rc=1
fi
if grep -nEi 'fatal|abort|assert|error|terminate' "$SERVER_LOG" >"$RESULTS/server_log_errors.txt"; then
  echo "soak: the server log has lines that look like errors ($RESULTS/server_log_errors.txt):"
  head -n 20 "$RESULTS/server_log_errors.txt"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "results: $RESULTS"
exit $rc

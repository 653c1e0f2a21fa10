"""tidal-bench against the real `tidal serve` (stories260K, the session's
`server` fixture from conftest.py): a few seconds of load on each endpoint,
every request succeeds, and the client's numbers agree with the server's
usage fields and with each other."""
import json
import os
import pathlib
import statistics
import subprocess

import pytest

from conftest import STORIES, TIDAL

BENCH = os.environ.get("TIDAL_BENCH_BIN", str(pathlib.Path(TIDAL).parent / "tidal-bench"))
VOCAB = 512  # tok512.model
INPUT_LEN, OUTPUT_LEN = 32, 16


@pytest.fixture(scope="module", autouse=True)
def bench_binary():
    if not os.access(BENCH, os.X_OK):
        pytest.fail(f"{BENCH} not built (cmake --build <build> --target tidal-bench)")


def run_bench(server, tmp_path, *args):
    out = tmp_path / "bench.json"
    cmd = [BENCH, "--base-url", server.url, "--model", STORIES, "--json", str(out), "--disable-progress",
           "--ready-check-timeout", "30", "--timeout", "60", "--seed", "1", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, f"{cmd}\n{p.stdout}\n{p.stderr}"
    return json.loads(out.read_text()), p.stdout


def check_consistent(doc, num_prompts):
    summary, requests = doc["summary"], doc["requests"]
    assert summary["completed"] == num_prompts, summary["errors"]
    assert summary["failed"] == 0
    assert len(requests) == num_prompts
    for r in requests:
        assert r["success"], r["error"]
        usage = r["usage"]
        assert usage is not None, "the server reported no usage"
        # Token counts are the server's own; with ignore_eos it generated exactly max_tokens.
        assert r["output_tokens"] == usage["completion_tokens"] == r["expected_output_len"] == OUTPUT_LEN
        assert r["output_tokens_source"] == "usage"
        assert r["input_tokens"] == usage["prompt_tokens"]
        # One chunk per token at most (text held back mid-character comes later).
        assert 1 <= r["content_chunks"] <= usage["completion_tokens"]
        assert len(r["itl_s"]) == r["content_chunks"] - 1
        assert 0 < r["ttft_s"] <= r["latency_s"]
        assert r["latency_s"] == pytest.approx(r["ttft_s"] + sum(r["itl_s"]), abs=1e-6)
        assert r["tpot_s"] == pytest.approx((r["latency_s"] - r["ttft_s"]) / (r["output_tokens"] - 1))
        assert r["generated_text"]
    # The summary is the per-request records, aggregated.
    assert summary["total_output_tokens"] == sum(r["output_tokens"] for r in requests)
    assert summary["total_input_tokens"] == sum(r["input_tokens"] for r in requests)
    duration = summary["duration"]
    assert duration >= max(r["start_s"] + r["latency_s"] for r in requests)
    assert summary["output_throughput"] == pytest.approx(summary["total_output_tokens"] / duration)
    assert summary["request_throughput"] == pytest.approx(num_prompts / duration)
    ttft_ms = [r["ttft_s"] * 1000 for r in requests]
    assert summary["mean_ttft_ms"] == pytest.approx(statistics.mean(ttft_ms))
    assert summary["median_ttft_ms"] == pytest.approx(statistics.median(ttft_ms))
    tpot_ms = [r["tpot_s"] * 1000 for r in requests]
    assert summary["mean_tpot_ms"] == pytest.approx(statistics.mean(tpot_ms))
    itl_ms = [g * 1000 for r in requests for g in r["itl_s"]]
    assert summary["mean_itl_ms"] == pytest.approx(statistics.mean(itl_ms))
    assert summary["mean_e2el_ms"] == pytest.approx(statistics.mean(r["latency_s"] * 1000 for r in requests))
    assert summary["p99_ttft_ms"] >= summary["median_ttft_ms"]


def test_random_completions_poisson(server, tmp_path):
    n = 24
    doc, stdout = run_bench(server, tmp_path, "--endpoint", "completions", "--dataset", "random",
                            "--random-input-len", str(INPUT_LEN), "--random-output-len", str(OUTPUT_LEN),
                            "--random-vocab-size", str(VOCAB), "--num-prompts", str(n), "--request-rate", "20",
                            "--max-concurrency", "8", "--ignore-eos", "--goodput", "e2el:600000")
    check_consistent(doc, n)
    for r in doc["requests"]:
        assert r["prompt_len"] == INPUT_LEN
        assert r["usage"]["prompt_tokens"] == INPUT_LEN  # token-id prompts get no BOS
    # A generous SLO: every request is good.
    assert doc["summary"]["request_goodput"] == pytest.approx(doc["summary"]["request_throughput"])
    assert "Serving Benchmark Result" in stdout
    assert f"Successful requests:                     {n}" in stdout


def test_random_chat_all_at_once(server, tmp_path):
    n = 12
    doc, _ = run_bench(server, tmp_path, "--endpoint", "chat", "--dataset", "random",
                       "--random-input-len", str(INPUT_LEN), "--random-output-len", str(OUTPUT_LEN),
                       "--random-vocab-size", str(VOCAB), "--num-prompts", str(n), "--request-rate", "inf",
                       "--ignore-eos")
    check_consistent(doc, n)


def test_jsonl_trace_replay(server, tmp_path):
    n = 6
    lines = [json.dumps({"prompt": f"Once upon a time there was a cat number {i}", "output_tokens": OUTPUT_LEN,
                         "timestamp": 100 + 0.1 * i}) for i in range(n)]
    data = tmp_path / "trace.jsonl"
    data.write_text("\n".join(lines) + "\n")
    doc, stdout = run_bench(server, tmp_path, "--dataset", "jsonl", "--dataset-path", str(data),
                            "--num-prompts", str(n), "--trace-replay", "--ignore-eos")
    check_consistent(doc, n)
    starts = [r["start_s"] for r in doc["requests"]]
    assert starts == sorted(starts)
    assert "trace replay" in stdout

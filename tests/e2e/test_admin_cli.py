"""`tidal admin` against a real `tidal serve --admin-key`: the readable output
of status, set and switches, --json, and the exit codes (0 done, 1 a switch
failed, 2 the request was refused or never arrived)."""
import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import STORIES, STORIES_ARGS, TIDAL, start_server

KEY = "sk-tidal-admin-cli"


@pytest.fixture(scope="module")
def server():
    s = start_server(STORIES_ARGS, "--admin-key", KEY)
    yield s
    assert s.stop() == 0


def admin(url, *args, key=KEY):
    """Runs `tidal admin`, the key from TIDAL_ADMIN_KEY as an operator's shell would have it."""
    env = {k: v for k, v in os.environ.items() if k != "TIDAL_ADMIN_KEY"}
    if key is not None:
        env["TIDAL_ADMIN_KEY"] = key
    return subprocess.run([TIDAL, "admin", "--url", url, *args], capture_output=True, text=True, timeout=30, env=env)


def ok(result):
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def config(server):
    r = server.get("/admin/v1/config", headers={"Authorization": f"Bearer {KEY}"})
    r.raise_for_status()
    return r.json()["data"][0]["config"]


def test_status(server):
    lines = ok(admin(server.url, "status")).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{STORIES}: serving base tp1 pp1 dp1; max_num_seqs 128, max_num_batched_tokens ")
    assert "target_tpot_ms off; storage f32, " in lines[0] and lines[0].endswith("last switch none")
    # The URL the OpenAI clients use names the same server.
    assert ok(admin(server.base_url, "status")).splitlines() == lines
    # The key as a flag, and the options after the action.
    flags = subprocess.run([TIDAL, "admin", "status", "--url", server.url, "--admin-key", KEY],
                           capture_output=True, text=True, timeout=30)
    assert ok(flags).splitlines() == lines


def test_set_variant_and_layout(server):
    line = ok(admin(server.url, "set", f"model={STORIES}", "variant=int8"))
    assert re.fullmatch(rf"switch \d+ of {STORIES}: done \(variant\) base tp1 pp1 dp1 -> int8 tp1 pp1 dp1: "
                        r"prepared \d+\.\d{3} s, paused \d+\.\d ms, \d+ requests moved, \d+ tokens recomputed\n", line)
    assert config(server)["variant"] == "int8"
    assert ok(admin(server.url, "status")).startswith(f"{STORIES}: serving int8 tp1 pp1 dp1;")

    assert ": done (variant) int8 tp1 pp1 dp1 -> base tp1 pp1 dp1: " in ok(
        admin(server.url, "set", f"model={STORIES}", "variant=base"))
    line = ok(admin(server.url, "set", f"model={STORIES}", "tp=2", "max_num_seqs=32"))
    assert ": done (layout+knobs) base tp1 pp1 dp1 max_num_seqs 128 -> base tp2 pp1 dp1 max_num_seqs 32: " in line
    assert config(server)["tp"] == 2 and config(server)["max_num_seqs"] == 32
    assert ": unchanged, already base tp2 pp1 dp1" in ok(admin(server.url, "set", f"model={STORIES}", "tp=2"))

    out = ok(admin(server.url, "set", f"model={STORIES}", "tp=1", "max_num_seqs=128", "--no-wait"))
    assert re.fullmatch(rf"switch \d+ of {STORIES}: accepted\n", out)
    deadline = time.monotonic() + 10
    while config(server)["tp"] != 1:  # done in the background
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_switches_table(server):
    ok(admin(server.url, "set", f"model={STORIES}", "target_tpot_ms=50"))
    lines = ok(admin(server.url, "switches")).splitlines()
    assert lines[0].split() == ["id", "model", "origin", "kind", "from", "->", "to", "outcome", "prepare", "s",
                                "pause", "ms", "moved", "recomputed"]
    last = lines[-1].split()
    assert last[1:4] == [STORIES, "operator", "knobs"] and "done" in last
    assert " ".join(last).count("target_tpot_ms") == 2 and "target_tpot_ms off -> " in lines[-1]
    records = json.loads(ok(admin(server.url, "--json", "switches")))["data"]
    assert len(records) == len(lines) - 1 and [r["id"] for r in records] == sorted(r["id"] for r in records)
    assert records[-1]["to"]["target_tpot_ms"] == 50


def test_json_is_the_servers_answer(server):
    status = json.loads(ok(admin(server.url, "--json", "status")))
    assert status["object"] == "list" and status["data"][0]["model"] == STORIES
    assert status["data"][0]["config"] == config(server)
    record = json.loads(ok(admin(server.url, "--json", "set", f"model={STORIES}", "max_num_batched_tokens=1024")))
    assert record["outcome"] == "done" and record["kind"] == "knobs" and record["model"] == STORIES


def test_refusals_exit_2(server):
    r = admin(server.url, "status", key="wrong-key")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "tidal: error: Incorrect admin key. Pass it as 'Authorization: Bearer <admin key>'. (HTTP 401)\n"
    r = admin(server.url, "set", "model=nope", "tp=1")
    assert r.returncode == 2 and r.stderr == "tidal: error: The model `nope` does not exist. (HTTP 404)\n"
    r = admin(server.url, "set", f"model={STORIES}", "tp=3")
    assert r.returncode == 2 and "must divide" in r.stderr and r.stderr.endswith("(HTTP 400)\n")


@pytest.mark.parametrize("pairs,message", [
    (["model=stories", "batch=4"], "set: unknown key 'batch' (known: model, variant, tp, "),
    (["model=stories", "tp=two"], "set: tp must be an integer (got 'two')"),
    (["model=stories", "target_tpot_ms=5x"], "set: target_tpot_ms must be a number (got '5x')"),
    (["tp=2"], "set: model=NAME is required"),
    (["model=stories", "tp"], "set: expected key=value, got 'tp'"),
])
def test_bad_set_arguments_exit_2(server, pairs, message):
    r = admin(server.url, "set", *pairs)
    assert r.returncode == 2 and r.stderr.startswith("tidal: error: " + message) and r.stderr.count("\n") == 1


def test_no_server_exits_2():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = admin(f"http://127.0.0.1:{port}", "status")
    assert r.returncode == 2
    assert r.stderr == f"tidal: error: cannot talk to tidal serve at http://127.0.0.1:{port}: Connection refused\n"


def test_failed_switch_exits_1():
    # A memory limit that the base configuration just fits: a derived variant's weights do not.
    s = start_server(STORIES_ARGS, "--admin-key", KEY, "--kv-cache-mb", "4", "--memory-limit-mb", "4")
    try:
        r = admin(s.url, "set", f"model={STORIES}", "variant=int8")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert re.fullmatch(rf"switch \d+ of {STORIES}: failed \(variant\) base tp1 pp1 dp1 -> int8 tp1 pp1 dp1: "
                            r"the new configuration needs .* over --memory-limit-mb 4\n", r.stdout)
        assert ok(admin(s.url, "status")).startswith(f"{STORIES}: serving base tp1 pp1 dp1;")
    finally:
        assert s.stop() == 0

"""Live reconfiguration through the admin API: under 32 concurrent streaming
requests (greedy and seeded, mixed lengths, n=2, logprobs) the server
switches layout, knobs and variant again and again; every stream ends 200
with [DONE], no token is lost or repeated, layout-only switches leave
greedy and seeded output exactly as without them, and no KV block leaks.
Also: the admin API's authentication, validation and metrics."""
import concurrent.futures
import http.client
import itertools
import json
import os
import shutil
import threading
import time
import urllib.parse

import pytest
import requests

from conftest import STORIES, STORIES_ARGS, sse_payloads, start_server

KEY = "admin-secret"
ADMIN = {"Authorization": f"Bearer {KEY}"}
CLIENTS = 32
PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben", "One day", "There was a big", "Tom had a red",
           "The sun was", "A cat"]
# Bit-exact with one device: pipeline and data parallelism, and the knobs.
LAYOUTS = [{"pp": 2}, {"pp": 1, "dp": 2}, {"dp": 1, "max_num_seqs": 5}, {"max_num_seqs": 64, "pp": 2, "dp": 2},
           {"pp": 1, "dp": 1, "max_num_batched_tokens": 64}, {"max_num_batched_tokens": 2048}]
VARIANTS = [{"variant": "int8"}, {"variant": "f16", "tp": 2}, {"variant": "w4a16-g32", "tp": 1, "pp": 2},
            {"variant": "base", "pp": 1, "dp": 2, "max_num_seqs": 16}, {"variant": "int8-g32", "dp": 1},
            {"variant": "base", "max_num_seqs": 64}]


# OpenMPI in a container: as root, more ranks than cores, no cross-process memory attach.
MPIRUN = ["mpirun", "-np", "2", "--oversubscribe", "--allow-run-as-root"]
# Over two processes: pipeline and data parallelism and one rank serving
# alone (the other idle) are bit-exact with one device.
MPI_LAYOUTS = [{"pp": 1}, {"pp": 2, "dp": 2}, {"pp": 2, "dp": 1}, {"pp": 1, "dp": 2}, {"dp": 1, "pp": 2}]
MPI_TP_LAYOUTS = [{"tp": 2, "pp": 1}, {"tp": 1, "pp": 2}, {"tp": 2, "pp": 1, "dp": 2, "variant": "int8"},
                  {"tp": 1, "dp": 1, "variant": "base"}]


@pytest.fixture(scope="module")
def admin_server():
    s = start_server(STORIES_ARGS, "--admin-key", KEY)
    yield s
    assert s.stop() == 0, s.log()


def request_body(i):
    body = {"model": STORIES, "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": 60 + (i * 37) % 200,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    if i % 2:
        body.update(temperature=0.8, top_p=0.9, seed=1000 + i)
    else:
        body["temperature"] = 0
    if i % 5 == 1:
        body["n"] = 2
    if i % 3 != 2:
        body["logprobs"] = 0 if i % 3 == 0 else 2
    return body


def stream(url, body):
    """One streaming completion: per choice its text, logprob tokens and
    finish reason, plus usage, HTTP status and whether [DONE] arrived."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    out = {"status": r.status, "choices": {}, "usage": None, "done": False}
    if r.status != 200:
        out["error"] = r.read().decode()
        conn.close()
        return out
    for payload in sse_payloads(r):
        assert not out["done"], "data after [DONE]"
        if payload == "[DONE]":
            out["done"] = True
            continue
        chunk = json.loads(payload)
        if chunk.get("usage") and not chunk["choices"]:
            out["usage"] = chunk["usage"]
        for c in chunk["choices"]:
            ch = out["choices"].setdefault(c["index"], {"text": "", "tokens": [], "offsets": [], "finish": None})
            assert ch["finish"] is None, "a choice went on after its finish_reason"
            ch["text"] += c["text"]
            if c.get("logprobs"):
                ch["tokens"] += c["logprobs"]["tokens"]
                ch["offsets"] += c["logprobs"]["text_offset"]
            ch["finish"] = c["finish_reason"]
    conn.close()
    return out


def run_clients(url, bodies):
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda b: stream(url, b), bodies))


def check_complete(result, body):
    assert result["status"] == 200, result.get("error")
    assert result["done"], "no [DONE]"
    n = body.get("n", 1)
    assert sorted(result["choices"]) == list(range(n))
    assert result["usage"]["completion_tokens"] == n * body["max_tokens"]
    for ch in result["choices"].values():
        assert ch["finish"] == "length"
        if "logprobs" in body:
            # One logprob entry per generated token, none twice: the streamed
            # tokens are exactly the ones usage counts, and text offsets run on.
            assert len(ch["tokens"]) == body["max_tokens"]
            assert ch["offsets"] == sorted(ch["offsets"])


def put(server, path, **kw):
    kw.setdefault("timeout", 60)
    return requests.put(server.url + path, **kw)


def switch(server, change, wait=True):
    r = server.session.put(server.url + "/admin/v1/config" + ("?wait=true" if wait else ""),
                           json={"model": STORIES, **change}, headers=ADMIN, timeout=60)
    return r


def keep_switching(server, changes, stop, log):
    """Switches through `changes` (cycling) until `stop` is set; logs each record."""
    for change in itertools.cycle(changes):
        if stop.is_set():
            return
        r = switch(server, change)
        assert r.status_code == 200, r.text
        record = r.json()
        assert record["outcome"] == "done", record
        log.append(record)


def switched_run(server, bodies, changes, min_switches):
    """Runs the bodies as concurrent streams (again while fewer than
    `min_switches` switches happened during them); returns the results of
    every wave and the switch records."""
    server.session = requests.Session()
    log, results = [], []
    stop = threading.Event()
    switcher = threading.Thread(target=keep_switching, args=(server, changes, stop, log))
    switcher.start()
    try:
        while len(log) < min_switches:
            results.append(run_clients(server.url, bodies))
    finally:
        stop.set()
        switcher.join()
    return results, log


def blocks_in_use(server):
    m = server.wait_idle()
    return m["tidal:kv_cache_used_blocks"]


def test_layout_switches_under_load_keep_outputs_exact(admin_server):
    bodies = [request_body(i) for i in range(CLIENTS)]
    reference = run_clients(admin_server.url, bodies)
    for res, body in zip(reference, bodies):
        check_complete(res, body)
    waves, log = switched_run(admin_server, bodies, LAYOUTS, min_switches=12)
    assert sum(r["requests_moved"] for r in log) > 0, "no switch happened while requests ran"
    for wave in waves:
        for res, ref, body in zip(wave, reference, bodies):
            check_complete(res, body)
            for i, ch in res["choices"].items():
                assert ch["text"] == ref["choices"][i]["text"], body
                assert ch["tokens"] == ref["choices"][i]["tokens"], body
    assert blocks_in_use(admin_server) == 0


def test_variant_layout_and_knob_switches_under_load_lose_nothing(admin_server):
    bodies = [request_body(i) for i in range(CLIENTS)]
    before = admin_server.metrics()
    waves, log = switched_run(admin_server, bodies, VARIANTS + LAYOUTS[:2], min_switches=30)
    assert len(log) >= 30
    assert {r["kind"] for r in log} >= {"variant", "variant+layout"}
    assert sum(r["requests_moved"] for r in log) > 0
    for wave in waves:
        for res, body in zip(wave, bodies):
            check_complete(res, body)
    assert blocks_in_use(admin_server) == 0
    after = admin_server.metrics()
    # Counters never go back across switches.
    for name in ("tidal:prefix_cache_queries_total", "tidal:num_preemptions_total", "tidal:generation_tokens_total",
                 "tidal:prompt_tokens_total"):
        assert after[name] >= before[name], name
    done = f'tidal:reconfigurations_total{{model_name="{STORIES}",outcome="done"}}'
    assert after[done] >= before[done] + len(log)
    assert after[f'tidal:reconfiguration_pause_seconds_count{{model_name="{STORIES}"}}'] >= len(log)
    status = admin_server.get("/admin/v1/config", headers=ADMIN).json()["data"][0]
    c = status["config"]
    info = (f'tidal:config_info{{model_name="{STORIES}",variant="{c["variant"]}",tp="{c["tp"]}",pp="{c["pp"]}",'
            f'dp="{c["dp"]}"}}')
    assert after[info] == 1
    switches = admin_server.get("/admin/v1/switches", headers=ADMIN).json()["data"]
    assert {r["id"] for r in log} <= {r["id"] for r in switches}


def test_admin_api_needs_its_own_key():
    s = start_server(STORIES_ARGS, "--admin-key", KEY, "--api-key", "inference-key")
    try:
        assert s.get("/admin/v1/config").status_code == 401
        assert s.get("/admin/v1/config", headers={"Authorization": "Bearer inference-key"}).status_code == 401
        wrong = s.get("/admin/v1/config", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_admin_key"
        assert s.get("/admin/v1/config", headers=ADMIN).status_code == 200
        # And the admin key grants no inference.
        assert s.get("/v1/models", headers=ADMIN).status_code == 401
    finally:
        assert s.stop() == 0


def test_admin_api_is_disabled_without_a_key(server):
    r = server.get("/admin/v1/config")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "admin_disabled"
    assert put(server, "/admin/v1/config", json={"model": STORIES, "tp": 2}).status_code == 403


BAD_BODIES = [
    ("{not json", 400), ("[1, 2]", 400), ('{"tp": 2}', 400), ('{"model": 3}', 400),
    ('{"model": "stories", "tp": "2"}', 400), ('{"model": "stories", "tp": 2.5}', 400),
    ('{"model": "stories", "tp": 0}', 400), ('{"model": "stories", "tp": 3}', 400),
    ('{"model": "stories", "pp": 99}', 400), ('{"model": "stories", "variant": "int3"}', 400),
    ('{"model": "stories", "variant": 8}', 400), ('{"model": "stories", "max_num_seqs": -1}', 400),
    ('{"model": "stories", "target_tpot_ms": "fast"}', 400), ('{"model": "stories", "target_tpot_ms": -5}', 400),
    ('{"model": "stories", "colour": "blue"}', 400), ('{"model": "nope", "tp": 1}', 404),
]


@pytest.mark.parametrize("body,status", BAD_BODIES)
def test_bad_admin_input_is_refused_and_changes_nothing(admin_server, body, status):
    before = admin_server.get("/admin/v1/config", headers=ADMIN).json()["data"][0]["config"]
    count = len(admin_server.get("/admin/v1/switches", headers=ADMIN).json()["data"])
    r = put(admin_server, "/admin/v1/config?wait=true", data=body,
                         headers={**ADMIN, "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"]
    assert admin_server.get("/admin/v1/config", headers=ADMIN).json()["data"][0]["config"] == before
    assert len(admin_server.get("/admin/v1/switches", headers=ADMIN).json()["data"]) == count


def test_wrong_methods_and_paths(admin_server):
    assert admin_server.post("/admin/v1/config", json={}, headers=ADMIN).status_code == 405
    assert put(admin_server, "/admin/v1/switches", json={}, headers=ADMIN).status_code == 405
    assert admin_server.get("/admin/v1/nothing", headers=ADMIN).status_code == 404
    assert put(admin_server, "/admin/v1/config?wait=maybe", json={"model": STORIES}, headers=ADMIN).status_code == 400


def test_switch_without_wait_is_accepted_then_visible_and_a_second_conflicts(admin_server):
    admin_server.session = requests.Session()
    # One device: a rotated variant cannot be split by every layout (its FFN Hadamard blocks).
    r = switch(admin_server, {"variant": "int8-rot", "tp": 1, "pp": 1, "dp": 1}, wait=False)
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    # A second switch while the first prepares is a 409 (or, if the first
    # already finished, it simply goes through).
    second = switch(admin_server, {"variant": "base"}, wait=True)
    assert second.status_code in (200, 409), second.text
    if second.status_code == 409:
        assert second.json()["error"]["code"] == "switch_in_progress"
    deadline = time.monotonic() + 60
    while True:
        records = {x["id"]: x for x in admin_server.get("/admin/v1/switches", headers=ADMIN).json()["data"]}
        if records[sid]["outcome"] != "pending":
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert records[sid]["outcome"] == "done", records[sid]
    assert records[sid]["origin"] == "operator"
    assert switch(admin_server, {"variant": "base"}).json()["outcome"] in ("done", "unchanged")


@pytest.fixture(scope="module")
def mpi_server():
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun is not installed")
    os.environ["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none"
    s = start_server(STORIES_ARGS, "--admin-key", KEY, "--comm", "mpi", "--pp", "2", "--threads", "1",
                     launcher=MPIRUN)
    yield s
    # mpirun itself exits 1 after forwarding a SIGTERM, however cleanly the
    # ranks end; what matters is that no rank failed or aborted the job.
    code = s.stop()
    assert code in (0, 1)
    if code:
        # tidal's own lines only: OpenMPI's libevent may warn about a
        # descriptor while mpirun tears down.
        log = s.log()
        ours = [line for line in log.splitlines() if line.startswith("tidal:")]
        for sign in ("failed", "lost a peer", "exited", "aborting"):
            assert not any(sign in line for line in ours), log
        assert "MPI_Abort" not in log, log


def test_mpi_layout_switches_under_load_keep_outputs_exact(mpi_server):
    bodies = [request_body(i) for i in range(CLIENTS)]
    reference = run_clients(mpi_server.url, bodies)
    waves, log = switched_run(mpi_server, bodies, MPI_LAYOUTS, min_switches=10)
    assert sum(r["requests_moved"] for r in log) > 0
    for wave in waves:
        for res, ref, body in zip(wave, reference, bodies):
            check_complete(res, body)
            for i, ch in res["choices"].items():
                assert ch["text"] == ref["choices"][i]["text"], body
    assert blocks_in_use(mpi_server) == 0


def test_mpi_tensor_parallel_and_variant_switches_lose_nothing(mpi_server):
    bodies = [request_body(i) for i in range(CLIENTS)]
    waves, log = switched_run(mpi_server, bodies, MPI_TP_LAYOUTS, min_switches=8)
    assert {r["to"]["tp"] for r in log} == {1, 2}
    for wave in waves:
        for res, body in zip(wave, bodies):
            check_complete(res, body)
    assert blocks_in_use(mpi_server) == 0
    # The world has two processes: three ranks per replica cannot exist.
    r = switch(mpi_server, {"tp": 1, "pp": 3})
    assert r.status_code == 400 and "MPI world" in r.json()["error"]["message"]

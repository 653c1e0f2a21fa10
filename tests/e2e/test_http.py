"""Raw HTTP behaviour: connection handling, SSE framing, /metrics,
/tokenize, disconnects, the waiting-queue limit and graceful shutdown."""
import concurrent.futures
import http.client
import json
import signal
import socket
import threading
import urllib.parse

import openai
import pytest
import requests

from conftest import STORIES, STORIES_ARGS, sse_payloads, start_server

ABORTED = f'tidal:request_success_total{{model_name="{STORIES}",finished_reason="abort"}}'


def host_port(server):
    u = urllib.parse.urlparse(server.url)
    return u.hostname, u.port


def open_stream(server, body, path="/v1/completions"):
    conn = http.client.HTTPConnection(*host_port(server), timeout=60)
    conn.request("POST", path, body=json.dumps(dict(body, stream=True)),
                 headers={"Content-Type": "application/json", **server.auth_headers()})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "text/event-stream"
    return conn, resp


def hang_up(conn):
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()


def read_until(sock, marker, count=1):
    data = b""
    while data.count(marker) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_keep_alive_reuses_connection(server):
    conn = http.client.HTTPConnection(*host_port(server), timeout=60)
    conn.request("GET", "/health")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b""
    sock = conn.sock
    conn.request("POST", "/v1/completions", body=json.dumps({"prompt": "Once", "max_tokens": 3}))
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["usage"]["completion_tokens"] == 3
    conn.request("POST", "/v1/completions", body=json.dumps({"prompt": "Once", "max_tokens": 3, "stream": True}))
    r = conn.getresponse()
    assert list(sse_payloads(r))[-1] == "[DONE]"
    conn.request("GET", "/v1/models")
    assert conn.getresponse().status == 200
    assert conn.sock is sock  # one connection throughout
    conn.close()


def test_pipelined_requests(server):
    with socket.create_connection(host_port(server), timeout=30) as s:
        body = json.dumps({"prompt": "Once", "max_tokens": 2}).encode()
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\n{\"prompt\": \"Once\"}"
                  b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() +
                  b"\r\nConnection: close\r\n\r\n" + body)
        data = read_until(s, b"HTTP/1.1 200", 3)
        while chunk := s.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert b'"tokens":[' in data and b'"completion_tokens":2' in data


def test_expect_100_continue(server):
    body = json.dumps({"prompt": "Once", "max_tokens": 2}).encode()
    with socket.create_connection(host_port(server), timeout=30) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " +
                  str(len(body)).encode() + b"\r\n\r\n")
        assert read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        assert read_until(s, b"}}").startswith(b"HTTP/1.1 200 OK")


def test_http10_stream_ends_with_connection(server):
    body = json.dumps({"prompt": "Once", "max_tokens": 4, "stream": True}).encode()
    with socket.create_connection(host_port(server), timeout=30) as s:
        s.sendall(b"POST /v1/completions HTTP/1.0\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, events = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert events.endswith(b"data: [DONE]\n\n")


def test_head_request(server):
    r = requests.head(server.url + "/health", timeout=60)
    assert r.status_code == 405 and r.headers["Allow"] == "GET"


def test_tokenize_detokenize(server):
    r = server.post("/tokenize", json={"prompt": "Once upon a time", "return_token_strs": True}).json()
    assert r["count"] == len(r["tokens"]) == len(r["token_strs"]) and r["max_model_len"] == 512
    assert r["tokens"][0] == 1  # BOS
    no_bos = server.post("/tokenize", json={"prompt": "Once upon a time", "add_special_tokens": False}).json()
    assert no_bos["tokens"] == r["tokens"][1:]
    assert server.post("/detokenize", json={"tokens": r["tokens"]}).json() == {"prompt": "Once upon a time"}
    chat = server.post("/tokenize", json={"messages": [{"role": "user", "content": "hi"}]}).json()
    assert chat["count"] > 2


def test_metrics_exposition(server):
    requests.post(server.url + "/v1/completions", json={"prompt": "Once", "max_tokens": 5}, timeout=60)
    text = server.get("/metrics").text
    for name, kind in [("tidal:num_requests_running", "gauge"), ("tidal:num_requests_waiting", "gauge"),
                       ("tidal:kv_cache_usage_perc", "gauge"), ("tidal:kv_cache_used_blocks", "gauge"),
                       ("tidal:kv_cache_total_blocks", "gauge"), ("tidal:prefix_cache_queries_total", "counter"),
                       ("tidal:prefix_cache_hits_total", "counter"), ("tidal:prompt_tokens_total", "counter"),
                       ("tidal:generation_tokens_total", "counter"), ("tidal:num_preemptions_total", "counter"),
                       ("tidal:time_to_first_token_seconds", "histogram"),
                       ("tidal:inter_token_latency_seconds", "histogram"),
                       ("tidal:e2e_request_latency_seconds", "histogram"),
                       ("tidal:request_queue_time_seconds", "histogram")]:
        assert f"# TYPE {name} {kind}\n" in text, name
    m = server.metrics()
    assert m["tidal:kv_cache_total_blocks"] > 0
    assert m["tidal:prompt_tokens_total"] > 0 and m["tidal:generation_tokens_total"] >= 5
    assert m["tidal:prefix_cache_hits_total"] <= m["tidal:prefix_cache_queries_total"]
    for hist in ("time_to_first_token_seconds", "e2e_request_latency_seconds", "request_queue_time_seconds"):
        buckets = [(line.split('le="')[1].split('"')[0], float(line.rsplit(" ", 1)[1]))
                   for line in text.splitlines() if line.startswith(f"tidal:{hist}_bucket")]
        counts = [c for _, c in buckets]
        assert counts == sorted(counts) and buckets[-1][0] == "+Inf"
        assert counts[-1] == m[f"tidal:{hist}_count"] > 0


def test_disconnect_aborts_and_frees_blocks(server):
    aborted = server.metrics()[ABORTED]
    # 4 x 500 tokens keep the engine busy far longer than the hang-up takes to notice.
    conn, resp = open_stream(server, {"prompt": "Once", "max_tokens": 500, "n": 4, "ignore_eos": True})
    assert json.loads(next(sse_payloads(resp)))["choices"][0]["finish_reason"] is None
    hang_up(conn)
    m = server.wait_idle()
    assert m[ABORTED] == aborted + 1
    assert m["tidal:kv_cache_used_blocks"] == 0 and m["tidal:kv_cache_usage_perc"] == 0


def test_disconnect_of_non_streaming_request(server):
    aborted = server.metrics()[ABORTED]
    s = socket.create_connection(host_port(server), timeout=30)
    body = json.dumps({"prompt": "Once", "max_tokens": 500, "n": 4, "ignore_eos": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() +
              b"\r\n\r\n" + body)
    # Wait until the engine has it, then go away.
    for _ in range(2000):
        if server.metrics()["tidal:num_requests_running"] > 0:
            break
    s.close()
    m = server.wait_idle()
    assert m[ABORTED] == aborted + 1 and m["tidal:kv_cache_used_blocks"] == 0


def test_queue_full_gives_429():
    # One request runs, one may wait; of eight sent together (each far longer
    # than sending them takes) the rest find the queue full.
    s = start_server(STORIES_ARGS, "--max-waiting", "1", "--max-num-seqs", "1")
    try:
        client = openai.OpenAI(base_url=s.base_url, api_key="x", max_retries=0)
        client.models.list()  # connect before the race
        start = threading.Barrier(8)

        def one(i):
            start.wait(timeout=60)
            if i % 2:
                try:
                    r = client.completions.create(model=STORIES, prompt="Once", max_tokens=400,
                                                  extra_body={"ignore_eos": True})
                    return r.usage.completion_tokens
                except openai.RateLimitError as e:
                    assert e.status_code == 429 and e.code == "rate_limit_exceeded"
                    return 429
            r = requests.post(s.url + "/v1/chat/completions", timeout=120, json={
                "messages": [{"role": "user", "content": "x"}], "max_tokens": 400, "ignore_eos": True})
            if r.status_code == 429:
                assert r.headers["Retry-After"] == "1" and r.json()["error"]["code"] == "rate_limit_exceeded"
                return 429
            assert r.status_code == 200, r.text
            return r.json()["usage"]["completion_tokens"]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(one, range(8)))
        assert set(outcomes) <= {400, 429} and outcomes.count(429) >= 1 and outcomes.count(400) >= 1, outcomes
        # Room again.
        assert client.completions.create(model=STORIES, prompt="Once", max_tokens=3).usage.completion_tokens == 3
        assert s.wait_idle()["tidal:kv_cache_used_blocks"] == 0
    finally:
        assert s.stop() == 0


def test_sigterm_lets_in_flight_requests_finish():
    s = start_server(STORIES_ARGS, "--shutdown-grace", "60")
    conn, resp = open_stream(s, {"prompt": "Once", "max_tokens": 300, "ignore_eos": True,
                                 "stream_options": {"include_usage": True}})
    events = sse_payloads(resp)
    next(events)
    s.proc.send_signal(signal.SIGTERM)
    rest = list(events)
    assert rest[-1] == "[DONE]"
    assert json.loads(rest[-2])["usage"]["completion_tokens"] == 300
    assert s.wait_exit() == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(s.url + "/health", timeout=5)


def test_sigint_past_grace_aborts_in_flight_requests():
    s = start_server(STORIES_ARGS, "--shutdown-grace", "0")
    conn, resp = open_stream(s, {"prompt": "Once", "max_tokens": 500, "n": 4, "ignore_eos": True})
    events = sse_payloads(resp)
    next(events)
    idle = http.client.HTTPConnection(*host_port(s), timeout=60)  # an idle keep-alive connection
    idle.request("GET", "/health")
    idle.getresponse().read()
    s.proc.send_signal(signal.SIGINT)
    rest = list(events)
    assert rest[-1] == "[DONE]"
    finishes = [c["finish_reason"] for e in rest[:-1] for c in json.loads(e)["choices"] if c["finish_reason"]]
    assert sorted(finishes) == ["abort"] * 4
    assert s.wait_exit() == 0

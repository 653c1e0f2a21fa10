"""Malformed and hostile requests: each gets the right status and an
OpenAI-shaped error body, and the server keeps serving."""
import json
import socket
import urllib.parse

import pytest

from conftest import STORIES

OK = {"model": STORIES, "prompt": "Once upon a time", "max_tokens": 4}
CHAT_OK = {"model": STORIES, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def comp(**changes):
    body = dict(OK, **changes)
    return {k: v for k, v in body.items() if v is not ...}


def chat(**changes):
    body = dict(CHAT_OK, **changes)
    return {k: v for k, v in body.items() if v is not ...}


C, CH = "/v1/completions", "/v1/chat/completions"

# (name, method, path, body: dict -> JSON, bytes -> raw, expected status, expected 'param' or None)
CASES = [
    ("truncated_json", "POST", C, b'{"prompt": "hi", "max_tokens": 5', 400, None),
    ("empty_body", "POST", C, b"", 400, None),
    ("json_array_body", "POST", C, b"[1, 2, 3]", 400, None),
    ("json_string_body", "POST", C, b'"hello"', 400, None),
    ("nan_literal", "POST", C, b'{"prompt": "hi", "temperature": NaN}', 400, None),
    ("number_overflow", "POST", C, b'{"prompt": "hi", "temperature": 1e400}', 400, None),
    ("invalid_utf8", "POST", C, b'{"prompt": "\xff\xfe\xfd", "max_tokens": 2}', 400, None),
    ("deep_nesting", "POST", C, b"[" * 100000 + b"]" * 100000, 400, None),
    ("prompt_missing", "POST", C, comp(prompt=...), 400, "prompt"),
    ("prompt_number", "POST", C, comp(prompt=5), 400, "prompt"),
    ("prompt_empty_list", "POST", C, comp(prompt=[]), 400, "prompt"),
    ("prompt_mixed_list", "POST", C, comp(prompt=["a", 1]), 400, "prompt[1]"),
    ("prompt_id_out_of_vocab", "POST", C, comp(prompt=[1, 99999]), 400, "prompt"),
    ("prompt_id_negative", "POST", C, comp(prompt=[1, -3]), 400, "prompt[1]"),
    ("prompt_over_context", "POST", C, comp(prompt="Once upon a time " * 400), 400, "prompt"),
    ("max_tokens_string", "POST", C, comp(max_tokens="10"), 400, "max_tokens"),
    ("max_tokens_huge", "POST", C, comp(max_tokens=10**9), 400, "max_tokens"),
    ("max_tokens_beyond_int64", "POST", C, comp(max_tokens=10**30), 400, "max_tokens"),
    ("max_tokens_zero", "POST", C, comp(max_tokens=0), 400, "max_tokens"),
    ("max_tokens_negative", "POST", C, comp(max_tokens=-5), 400, "max_tokens"),
    ("max_tokens_fraction", "POST", C, comp(max_tokens=2.5), 400, "max_tokens"),
    ("temperature_negative", "POST", C, comp(temperature=-1), 400, "temperature"),
    ("temperature_too_high", "POST", C, comp(temperature=7), 400, "temperature"),
    ("temperature_string", "POST", C, comp(temperature="hot"), 400, "temperature"),
    ("temperature_bool", "POST", C, comp(temperature=True), 400, "temperature"),
    ("top_p_zero", "POST", C, comp(top_p=0), 400, "top_p"),
    ("top_p_above_one", "POST", C, comp(top_p=1.5), 400, "top_p"),
    ("top_k_negative", "POST", C, comp(top_k=-7), 400, "top_k"),
    ("min_p_above_one", "POST", C, comp(min_p=2), 400, "min_p"),
    ("n_zero", "POST", C, comp(n=0), 400, "n"),
    ("n_huge", "POST", C, comp(n=100000), 400, "n"),
    ("presence_penalty_range", "POST", C, comp(presence_penalty=5), 400, "presence_penalty"),
    ("frequency_penalty_type", "POST", C, comp(frequency_penalty=[1]), 400, "frequency_penalty"),
    ("repetition_penalty_zero", "POST", C, comp(repetition_penalty=0), 400, "repetition_penalty"),
    ("repetition_penalty_negative", "POST", C, comp(repetition_penalty=-1), 400, "repetition_penalty"),
    ("repetition_penalty_string", "POST", C, comp(repetition_penalty="high"), 400, "repetition_penalty"),
    ("stop_number", "POST", C, comp(stop=5), 400, "stop"),
    ("stop_list_of_numbers", "POST", C, comp(stop=["ok", 2]), 400, "stop[1]"),
    ("stop_too_many", "POST", C, comp(stop=[f"s{i}" for i in range(17)]), 400, "stop"),
    ("stop_400k_strings", "POST", C, comp(stop=["x"] * 400000, n=32), 400, "stop"),
    ("prompts_times_n_over_256", "POST", C, comp(prompt=["a", "b", "c"], n=128), 400, "n"),
    ("stop_too_long", "POST", C, comp(stop=["ok", "y" * 1025]), 400, "stop[1]"),
    ("stop_token_ids_too_many", "POST", C, comp(stop_token_ids=list(range(257))), 400, "stop_token_ids"),
    ("logprobs_too_many", "POST", C, comp(logprobs=100), 400, "logprobs"),
    ("stream_string", "POST", C, comp(stream="yes"), 400, "stream"),
    ("stream_options_without_stream", "POST", C, comp(stream_options={"include_usage": True}), 400, "stream_options"),
    ("seed_string", "POST", C, comp(seed="abc"), 400, "seed"),
    ("model_number", "POST", C, comp(model=3), 400, "model"),
    ("unknown_model", "POST", C, comp(model="gpt-4"), 404, "model"),
    ("echo_with_logprobs", "POST", C, comp(echo=True, logprobs=1), 400, "echo"),
    ("logit_bias", "POST", C, comp(logit_bias={"50": 10}), 400, "logit_bias"),
    ("suffix", "POST", C, comp(suffix="the end"), 400, "suffix"),
    ("chat_messages_missing", "POST", CH, chat(messages=...), 400, "messages"),
    ("chat_messages_empty", "POST", CH, chat(messages=[]), 400, "messages"),
    ("chat_messages_not_list", "POST", CH, chat(messages="hi"), 400, "messages"),
    ("chat_message_not_object", "POST", CH, chat(messages=["hi"]), 400, "messages[0]"),
    ("chat_role_missing", "POST", CH, chat(messages=[{"content": "hi"}]), 400, "messages[0].role"),
    ("chat_role_unknown", "POST", CH, chat(messages=[{"role": "wizard", "content": "hi"}]), 400, "messages[0].role"),
    ("chat_content_number", "POST", CH, chat(messages=[{"role": "user", "content": 5}]), 400, "messages[0].content"),
    ("chat_image_part", "POST", CH,
     chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]),
     400, "messages[0].content[0].type"),
    ("chat_top_logprobs_without_logprobs", "POST", CH, chat(top_logprobs=2), 400, "top_logprobs"),
    ("chat_tools", "POST", CH, chat(tools=[{"type": "function", "function": {"name": "f"}}]), 400, "tools"),
    ("chat_json_mode", "POST", CH, chat(response_format={"type": "json_object"}), 400, "response_format"),
    ("chat_over_context", "POST", CH, chat(messages=[{"role": "user", "content": "story " * 1000}]), 400, "messages"),
    ("chat_max_completion_tokens_huge", "POST", CH, chat(max_completion_tokens=10**6), 400, "max_tokens"),
    ("tokenize_nothing", "POST", "/tokenize", {}, 400, "prompt"),
    ("detokenize_bad_ids", "POST", "/detokenize", {"tokens": [1, 100000]}, 400, "tokens[1]"),
    ("detokenize_wrong_type", "POST", "/detokenize", {"tokens": "abc"}, 400, "tokens"),
    ("unknown_path", "POST", "/v1/engines", OK, 404, None),
    ("unknown_path_get", "GET", "/v2/models", None, 404, None),
    ("wrong_method_completions", "GET", C, None, 405, None),
    ("wrong_method_models", "POST", "/v1/models", OK, 405, None),
    ("wrong_method_health", "DELETE", "/health", None, 405, None),
    ("body_too_large", "POST", C, b'{"prompt": "' + b"a" * (10 << 20) + b'"}', 413, None),
]


def check_error_body(r, status):
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    return err


@pytest.mark.parametrize("name,method,path,body,status,param", CASES, ids=[c[0] for c in CASES])
def test_bad_request(server, name, method, path, body, status, param):
    kw = {"headers": {"Content-Type": "application/json"}}
    if isinstance(body, bytes):
        kw["data"] = body
    elif body is not None:
        kw["data"] = json.dumps(body)
    r = server.get(path, **kw) if method == "GET" else server.post(path, **kw) if method == "POST" else \
        __import__("requests").request(method, server.url + path, timeout=60, **kw)
    assert r.status_code == status, r.text[:500]
    err = check_error_body(r, status)
    if param is not None:
        assert err["param"] == param, err
    if status == 405:
        assert "Allow" in r.headers


def raw_request(server, data, read_limit=1 << 16):
    u = urllib.parse.urlparse(server.url)
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(data)
        chunks = []
        while True:
            b = s.recv(read_limit)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)


def test_garbage_http(server):
    reply = raw_request(server, b"THIS IS NOT HTTP\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
    reply = raw_request(server, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")


def test_headers_too_large(server):
    reply = raw_request(server, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431")


def test_client_vanishing_mid_request(server):
    u = urllib.parse.urlparse(server.url)
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"prompt\": ")
    assert server.get("/health").status_code == 200


def test_unknown_fields_are_ignored(server):
    r = server.post("/v1/completions", json=comp(frobnicate=True, metadata={"a": 1}, repetition_penalty=1.1))
    assert r.status_code == 200, r.text
    r = server.post("/v1/chat/completions", json=chat(parallel_tool_calls=False, store=False, tool_choice="none"))
    assert r.status_code == 200, r.text


def test_still_serving_after_abuse(server):
    for _ in range(3):
        r = server.post("/v1/completions", data=b'{"prompt": ', headers={"Content-Type": "application/json"})
        assert r.status_code == 400
    r = server.post("/v1/completions", json=OK)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
    r = server.post("/v1/chat/completions", json=CHAT_OK)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"
    m = server.wait_idle()
    assert m["tidal:kv_cache_used_blocks"] == 0


def test_stop_lists_at_their_bounds_are_served(server):
    stop = ["z" * 1024] * 15 + ["never appears"]
    r = server.post("/v1/completions", json=comp(stop=stop, stop_token_ids=list(range(400, 656))))
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["finish_reason"] in ("length", "stop")


def test_repetition_penalty_is_applied(server):
    body = comp(prompt="Once upon a time", max_tokens=48, temperature=0)
    plain = server.post("/v1/completions", json=body).json()["choices"][0]["text"]
    same = server.post("/v1/completions", json=dict(body, repetition_penalty=1.0)).json()["choices"][0]["text"]
    penalized = server.post("/v1/completions", json=dict(body, repetition_penalty=1.8)).json()["choices"][0]["text"]
    assert same == plain
    assert penalized != plain


def test_prompts_times_n_at_the_bound_is_served(server):
    r = server.post("/v1/completions", json=comp(prompt=["a", "b"], n=128, max_tokens=2))
    assert r.status_code == 200, r.text
    assert len(r.json()["choices"]) == 256

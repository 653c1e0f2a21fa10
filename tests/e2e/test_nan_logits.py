"""Weights that make the logits NaN for some requests: each such request
fails alone (500 OpenAI-shaped, or an error event then [DONE] when
streaming) while the others are served as on the clean model."""
import json
import struct
import threading

import pytest

from conftest import ROOT, STORIES, STORIES_ARGS, generate, start_server

MODEL = ROOT / "tests/data/stories260K/stories260K.bin"
TOKENIZER = ROOT / "tests/data/stories260K/tok512.model"
GOOD_PROMPT = "Once upon a time"
MAX_TOKENS = 16


def poisoned_copy(path, token):
    """stories260K with its classifier untied from the embedding (a negative
    vocabulary size in the llama2.c header, the classifier appended) and the
    embedding row of `token` set to NaN: every sequence holding that token
    has NaN logits from it on, the others are untouched."""
    data = bytearray(MODEL.read_bytes())
    dim, _, _, _, _, vocab, _ = struct.unpack_from("7i", data)
    assert vocab > 0, "expected tied embeddings"
    embedding = bytes(data[28:28 + vocab * dim * 4])
    struct.pack_into("i", data, 20, -vocab)
    struct.pack_into(f"{dim}f", data, 28 + token * dim * 4, *([float("nan")] * dim))
    path.write_bytes(bytes(data) + embedding)


@pytest.fixture(scope="module")
def clean_output():
    return generate(STORIES_ARGS, GOOD_PROMPT, MAX_TOKENS)


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory, clean_output):
    seen = set(clean_output["prompt_ids"]) | set(clean_output["token_ids"])
    token = next(t for t in range(300, 512) if t not in seen)
    path = tmp_path_factory.mktemp("nan") / "stories-nan.bin"
    poisoned_copy(path, token)
    s = start_server(["--model", str(path), "--tokenizer", str(TOKENIZER)], "--http-threads", "1")
    yield s, token
    assert s.stop() == 0, s.log()


def body(prompt, **extra):
    return {"model": STORIES, "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0, **extra}


def assert_server_error(payload):
    error = payload["error"]
    assert error["type"] == "server_error"
    assert isinstance(error["message"], str) and error["message"]
    assert "param" in error and "code" in error


def test_a_request_with_nan_logits_gets_a_500(poisoned):
    s, token = poisoned
    for extra in ({}, {"logprobs": 3}, {"temperature": 0.8, "top_k": 20, "top_p": 0.9, "min_p": 0.05, "n": 3}):
        r = s.post("/v1/completions", json=body([1, token, 300, 301], **extra))
        assert r.status_code == 500, (extra, r.text)
        assert_server_error(r.json())


def test_a_stream_with_nan_logits_ends_with_an_error_event(poisoned):
    s, token = poisoned
    with s.post("/v1/completions", json=body([1, token, 300], stream=True), stream=True) as r:
        assert r.status_code == 200
        payloads = [line[len(b"data: "):].decode() for line in r.iter_lines() if line.startswith(b"data: ")]
    assert payloads[-1] == "[DONE]"
    assert_server_error(json.loads(payloads[-2]))


def test_the_rest_of_the_batch_goes_on(poisoned, clean_output):
    s, token = poisoned
    results = {}

    def run(name, prompt, n):
        results[name] = [s.post("/v1/completions", json=body(prompt, return_token_ids=True)) for _ in range(n)]

    threads = [threading.Thread(target=run, args=("bad", [1, token, 300, 301], 4)),
               threading.Thread(target=run, args=("good", GOOD_PROMPT, 4))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 500 for r in results["bad"])
    for r in results["good"]:
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["token_ids"] == clean_output["token_ids"]
    assert s.wait_idle()["tidal:kv_cache_used_blocks"] == 0

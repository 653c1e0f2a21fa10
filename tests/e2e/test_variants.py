"""`tidal serve --variants`: variants of one base model served side by side,
each under "<name>:<variant>" with an engine of its own; /v1/models and the
/v1/variants catalog (with a `tidal eval --profile-out` file); per-model
metrics; and the one-line start-up errors of the variant options."""
import concurrent.futures
import json
import os
import subprocess

import openai
import pytest

from conftest import STORIES, STORIES_ARGS, TIDAL, start_server

FLOAT_VARIANTS = ["f16", "bf16"]
INT_VARIANTS = ["int8", "int4-g32"]
VARIANTS = FLOAT_VARIANTS + INT_VARIANTS
PROMPT = "Once upon a time"

F16_PROFILE = {
    "derivation": "f16 (round to nearest even) from f32", "bytes": 521472, "perplexity": 5.3,
    "base": "f32", "base_perplexity": 5.29, "top1_agreement": 0.995, "mean_kl": 1e-5,
    "eval_text": "tests/data/eval.txt", "eval_tokens": 1024, "decode_tok_s_batch1": 2500.0,
    "threads": 2, "measured_at": "2025-01-01T00:00:00Z",
}


def name(variant):
    return f"{STORIES}:{variant}"


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile") / "stories.variants.json"
    path.write_text(json.dumps({"model": "stories260K.bin", "variants": {"f16": F16_PROFILE}}))
    return path


@pytest.fixture(scope="module")
def vserver(profile_path):
    s = start_server(STORIES_ARGS, "--variants", ",".join(VARIANTS), "--variant-profile", str(profile_path))
    yield s
    assert s.stop() == 0, s.log()


@pytest.fixture()
def vclient(vserver):
    return openai.OpenAI(base_url=vserver.base_url, api_key="unused", max_retries=0, timeout=60)


def greedy(client, model, max_tokens=16, prompt=PROMPT):
    return client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0)


def test_models_lists_base_then_variants_with_parent(vclient):
    cards = vclient.models.list().data
    assert [c.id for c in cards] == [STORIES] + [name(v) for v in VARIANTS]
    assert all(c.root == STORIES for c in cards)
    assert cards[0].parent is None
    assert all(c.parent == STORIES for c in cards[1:])
    assert vclient.models.retrieve(name("bf16")).parent == STORIES


def test_catalog_entries(vserver, profile_path):
    r = vserver.get("/v1/variants")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    entries = {e["id"]: e for e in body["data"]}
    assert list(entries) == [STORIES] + [name(v) for v in VARIANTS]
    base = entries[STORIES]
    assert base == {"id": STORIES, "base": STORIES, "storage": "f32", "derivation": "as loaded",
                    "bytes": base["bytes"], "profile": None}
    for v in VARIANTS:
        e = entries[name(v)]
        assert e["base"] == STORIES and e["storage"] == v
        assert e["derivation"].startswith(v.split("-")[0]) and e["derivation"].endswith(" from f32")
        assert 0 < e["bytes"] < base["bytes"]  # every variant is narrower than the f32 llama2.c base
    assert entries[name("int4-g32")]["bytes"] < entries[name("int8")]["bytes"] < entries[name("f16")]["bytes"]
    # The profile file's entry, as written; variants it does not cover have none.
    assert entries[name("f16")]["profile"] == F16_PROFILE
    assert entries[name("bf16")]["profile"] is None


def test_float_variants_agree_with_base_on_greedy_tokens(vclient):
    base = greedy(vclient, STORIES)
    assert base.usage.completion_tokens == 16
    for v in FLOAT_VARIANTS:
        r = greedy(vclient, name(v))
        assert r.model == name(v)
        # stories260K's greedy continuation survives rounding its weights to 16 bits.
        assert r.choices[0].text == base.choices[0].text, v


@pytest.mark.parametrize("variant", INT_VARIANTS)
def test_integer_variants_generate(vclient, variant):
    r = greedy(vclient, name(variant))
    assert r.model == name(variant)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 16


def test_chat_and_stream_reach_the_variant(vclient):
    chat = vclient.chat.completions.create(model=name("f16"), messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=5, temperature=0)
    assert chat.model == name("f16") and chat.usage.completion_tokens == 5
    chunks = list(vclient.completions.create(model=name("bf16"), prompt=PROMPT, max_tokens=8, temperature=0,
                                             stream=True))
    assert {c.model for c in chunks} == {name("bf16")}
    assert "".join(c.choices[0].text for c in chunks if c.choices) == greedy(vclient, name("bf16"), 8).choices[0].text


def test_requests_to_every_model_at_once(vclient):
    models = [STORIES] + [name(v) for v in FLOAT_VARIANTS]
    alone = {m: greedy(vclient, m, 24).choices[0].text for m in models}
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        futures = [(m, pool.submit(greedy, vclient, m, 24)) for m in models * 4]
        for m, f in futures:
            assert f.result().choices[0].text == alone[m], m


def test_tokenize_and_detokenize_for_any_name(vserver):
    ids = vserver.tokenize(prompt=PROMPT)
    for v in VARIANTS:
        assert vserver.tokenize(model=name(v), prompt=PROMPT) == ids
        r = vserver.post("/detokenize", json={"model": name(v), "tokens": ids[1:]})
        assert r.status_code == 200 and r.json()["prompt"] == PROMPT


@pytest.mark.parametrize("path,body", [
    ("/v1/completions", {"prompt": PROMPT, "max_tokens": 2}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    ("/tokenize", {"prompt": PROMPT}),
    ("/detokenize", {"tokens": [1]}),
])
def test_unknown_variant_is_model_not_found(vserver, path, body):
    r = vserver.post(path, json=dict(body, model=name("int3")))
    assert r.status_code == 404
    assert r.json() == {"error": {"message": f"The model `{name('int3')}` does not exist.",
                                  "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}
    assert vserver.get(f"/v1/models/{name('int3')}").status_code == 404


def test_metrics_are_labelled_per_model(vserver, vclient):
    before = vserver.metrics()
    key = f'tidal:generation_tokens_total{{model_name="{name("bf16")}"}}'
    base_key = f'tidal:generation_tokens_total{{model_name="{STORIES}"}}'
    greedy(vclient, name("bf16"), 6)
    after = vserver.metrics()
    assert after[key] - before[key] == 6
    assert after[base_key] == before[base_key]
    text = vserver.get("/metrics").text
    assert text.count("# TYPE tidal:num_requests_running gauge") == 1
    for m in [STORIES] + [name(v) for v in VARIANTS]:
        assert f'tidal:num_requests_running{{model_name="{m}",engine="0"}}' in text


def test_server_without_variants_catalogs_its_base(server):
    entries = server.get("/v1/variants").json()["data"]
    assert [(e["id"], e["storage"], e["derivation"], e["profile"]) for e in entries] == [
        (STORIES, "f32", "as loaded", None)]


def test_default_profile_sits_next_to_the_model(tmp_path):
    model = tmp_path / "stories260K.bin"
    os.symlink(STORIES_ARGS[1], model)
    (tmp_path / "stories260K.bin.variants.json").write_text(
        json.dumps({"model": "stories260K.bin", "variants": {"f32": {"perplexity": 5.29}, "f16": F16_PROFILE}}))
    s = start_server(["--model", str(model), *STORIES_ARGS[2:]], "--variants", "f16")
    try:
        entries = s.get("/v1/variants").json()["data"]
        # The base is an f32 model: the f32 variant's measurements are its own.
        assert [e["profile"] for e in entries] == [{"perplexity": 5.29}, F16_PROFILE]
    finally:
        assert s.stop() == 0


def run_serve(*args):
    return subprocess.run([TIDAL, "serve", *STORIES_ARGS, "--port", "0", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args,message", [
    (["--variants", "f16,int3"], "unknown variant 'int3'"),
    (["--variants", "f16,f16"], "--variants lists 'f16' twice"),
    (["--variants", "f16", "--tp", "2"], "--variants serves every model on one device"),
    (["--variant-profile", "/nonexistent/p.json"], "cannot open variant profile /nonexistent/p.json"),
])
def test_bad_variant_options_exit_2_with_one_line(args, message):
    p = run_serve(*args)
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("tidal: error: ") and message in p.stderr, p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("text", ["{not json", '{"model": "stories260K.bin"}', '{"variants": {"f16": {}}}',
                                  '{"model": "other.gguf", "variants": {}}'])
def test_malformed_or_foreign_profile_exits_2_with_one_line(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    p = run_serve("--variants", "f16", "--variant-profile", str(path))
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and f"variant profile {path}" in p.stderr, p.stderr

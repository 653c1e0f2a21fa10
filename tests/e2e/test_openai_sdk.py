"""The server through the official `openai` SDK: completions and chat,
streamed and not, n, stop strings, logprobs, seeds, usage, and agreement with
`tidal generate`."""
import concurrent.futures

import openai
import pytest

from conftest import SMOL, STORIES, STORIES_ARGS, generate

PROMPT = "Once upon a time"


def completion_text(client, **kw):
    kw.setdefault("model", STORIES)
    kw.setdefault("temperature", 0)
    return client.completions.create(**kw).choices[0].text


def test_models_list(client, server):
    models = client.models.list()
    assert [m.id for m in models.data] == [STORIES]
    assert client.models.retrieve(STORIES).id == STORIES
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_completion_shape_and_usage(client, server):
    r = client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=8, temperature=0)
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == STORIES
    assert isinstance(r.created, int) and r.created > 0
    assert len(r.choices) == 1 and r.choices[0].index == 0
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(server.tokenize(prompt=PROMPT))
    assert r.usage.completion_tokens == 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + 8


@pytest.mark.parametrize("prompt,max_tokens", [(PROMPT, 24), ("The little dog", 40), ("Lily and Ben", 7)])
def test_greedy_matches_tidal_generate(client, server, prompt, max_tokens):
    expected = generate(STORIES_ARGS, prompt, max_tokens)
    assert server.tokenize(prompt=prompt) == expected["prompt_ids"]
    r = client.completions.create(model=STORIES, prompt=prompt, max_tokens=max_tokens, temperature=0)
    assert r.choices[0].text == expected["text"]
    assert r.usage.prompt_tokens == len(expected["prompt_ids"])
    assert r.usage.completion_tokens == len(expected["token_ids"])
    # The same through the streaming path and from token ids.
    stream = client.completions.create(model=STORIES, prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in stream) == expected["text"]
    r = client.completions.create(model=STORIES, prompt=expected["prompt_ids"], max_tokens=max_tokens, temperature=0)
    assert r.choices[0].text == expected["text"]


def test_completion_stream_chunks_and_usage(client, server):
    full = client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=20, temperature=0)
    chunks = list(client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=20, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text_chunks = [c for c in chunks if c.choices]
    assert len(text_chunks) >= 2  # streamed piece by piece, not all at once
    assert all(c.id == chunks[0].id and c.id.startswith("cmpl-") for c in chunks)
    assert "".join(c.choices[0].text for c in text_chunks) == full.choices[0].text
    assert [c.choices[0].finish_reason for c in text_chunks][-1] == "length"
    assert all(c.choices[0].finish_reason is None for c in text_chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens
    # Without include_usage there is no usage chunk.
    chunks = list(client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=5, stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_chat_completion(client, server):
    messages = [{"role": "system", "content": "You tell stories."}, {"role": "user", "content": "A story please"}]
    r = client.chat.completions.create(model=STORIES, messages=messages, max_tokens=12, temperature=0)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert isinstance(r.choices[0].message.content, str) and r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens == len(server.tokenize(messages=messages))
    assert r.usage.completion_tokens <= 12

    chunks = list(client.chat.completions.create(model=STORIES, messages=messages, max_tokens=12, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].object == "chat.completion.chunk" and chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [r.choices[0].finish_reason]
    assert chunks[-1].usage.prompt_tokens == r.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens


def test_text_content_parts_equal_plain_string(client, server):
    plain = [{"role": "user", "content": "Tell me about a cat"}]
    parts = [{"role": "user", "content": [{"type": "text", "text": "Tell me "}, {"type": "text", "text": "about a cat"}]}]
    a = client.chat.completions.create(model=STORIES, messages=plain, max_tokens=10, temperature=0)
    b = client.chat.completions.create(model=STORIES, messages=parts, max_tokens=10, temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content


def test_n2(client, server):
    r = client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=16, temperature=1.0, seed=7, n=2)
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.finish_reason == "length" for c in r.choices)
    assert r.usage.completion_tokens == 32  # both choices ran to max_tokens

    r = client.chat.completions.create(model=STORIES, messages=[{"role": "user", "content": "hi"}], max_tokens=10,
                                       n=2, seed=3, temperature=1.0)
    assert [c.index for c in r.choices] == [0, 1]

    chunks = list(client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=16, temperature=1.0, seed=7,
                                            n=2, stream=True))
    texts, finishes = {0: "", 1: ""}, {}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] += ch.text
            if ch.finish_reason:
                finishes[ch.index] = ch.finish_reason
    non_stream = client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=16, temperature=1.0, seed=7, n=2)
    assert texts == {c.index: c.text for c in non_stream.choices}
    assert finishes == {0: "length", 1: "length"}

    msgs = [{"role": "user", "content": "hi"}]
    chunks = list(client.chat.completions.create(model=STORIES, messages=msgs, max_tokens=10, n=2, seed=3,
                                                 temperature=1.0, stream=True))
    roles = sorted(ch.index for c in chunks for ch in c.choices if ch.delta.role == "assistant")
    assert roles == [0, 1]
    texts = {0: "", 1: ""}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
    assert texts == {c.index: c.message.content for c in r.choices}


def test_multiple_prompts_and_token_prompts(client, server):
    prompts = [PROMPT, "The little dog"]
    r = client.completions.create(model=STORIES, prompt=prompts, max_tokens=6, temperature=0, n=2)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    singles = [completion_text(client, prompt=p, max_tokens=6) for p in prompts]
    assert [c.text for c in r.choices] == [singles[0], singles[0], singles[1], singles[1]]
    assert r.usage.prompt_tokens == sum(len(server.tokenize(prompt=p)) for p in prompts)

    ids = [server.tokenize(prompt=p) for p in prompts]
    r = client.completions.create(model=STORIES, prompt=ids, max_tokens=6, temperature=0)
    assert [c.text for c in r.choices] == singles


def test_stop_strings(client, server):
    text = completion_text(client, prompt=PROMPT, max_tokens=30)
    words = text.split()
    stop = " " + words[3]
    expected = text[: text.index(stop)]
    for stops in (stop, [stop], ["zzzz-never", stop]):
        r = client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=30, temperature=0, stop=stops)
        assert r.choices[0].text == expected and r.choices[0].finish_reason == "stop"
        chunks = list(client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=30, temperature=0,
                                                stop=stops, stream=True))
        assert "".join(c.choices[0].text for c in chunks) == expected
        assert chunks[-1].choices[0].finish_reason == "stop"


def test_completion_logprobs(client, server):
    r = client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=10, temperature=0, logprobs=3)
    choice = r.choices[0]
    lp = choice.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 10
    assert "".join(lp.tokens) == choice.text
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert logprob <= 0
        assert 3 <= len(top) <= 4 and token in top
        assert logprob == pytest.approx(max(top.values()))  # greedy picks the most likely
    stream = list(client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=10, temperature=0, logprobs=3,
                                            stream=True))
    assert sum((c.choices[0].logprobs.token_logprobs for c in stream), []) == pytest.approx(lp.token_logprobs)


def test_chat_logprobs(client, server):
    msgs = [{"role": "user", "content": "Hello"}]
    r = client.chat.completions.create(model=STORIES, messages=msgs, max_tokens=8, temperature=0, logprobs=True,
                                       top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for item in content:
        assert item.logprob <= 0 and len(item.top_logprobs) == 3
        assert bytes(item.bytes).decode("utf-8", "replace") == item.token
        assert item.logprob == pytest.approx(item.top_logprobs[0].logprob)
    r = client.chat.completions.create(model=STORIES, messages=msgs, max_tokens=4, logprobs=True)
    assert all(item.top_logprobs == [] for item in r.choices[0].logprobs.content)
    r = client.chat.completions.create(model=STORIES, messages=msgs, max_tokens=4)
    assert r.choices[0].logprobs is None


def test_seed_reproducible(client, server):
    kw = dict(prompt=PROMPT, max_tokens=30, temperature=1.0, top_p=0.95)
    a = completion_text(client, seed=42, **kw)
    b = completion_text(client, seed=42, **kw)
    c = completion_text(client, seed=43, **kw)
    assert a == b and a != c
    # The same seed gives the same text whatever else is running.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(completion_text, client, seed=42 if i % 2 else 1000 + i, **kw) for i in range(8)]
        results = [f.result() for f in futures]
    assert results[1::2] == [a] * 4


def test_sampling_options_accepted(client, server):
    r = client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=5, temperature=0.7, top_p=0.9,
                                  presence_penalty=0.5, frequency_penalty=0.5, seed=1, user="someone",
                                  extra_body={"top_k": 20, "min_p": 0.05})
    assert r.usage.completion_tokens == 5


def test_echo(client, server):
    plain = completion_text(client, prompt=PROMPT, max_tokens=5)
    r = client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=5, temperature=0, echo=True)
    assert r.choices[0].text == PROMPT + plain
    chunks = list(client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=5, temperature=0, echo=True,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks) == PROMPT + plain


def test_errors_through_sdk(client, server):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=STORIES, prompt=PROMPT, max_tokens=10**9)
    assert e.value.status_code == 400 and e.value.param == "max_tokens"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt=PROMPT, max_tokens=5)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=STORIES, messages=[], max_tokens=5)


def test_smollm2_chat_template(smol):
    client = openai.OpenAI(base_url=smol.base_url, api_key="unused", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    r = smol.post("/tokenize", json={"messages": messages, "return_token_strs": True}).json()
    strs = r["token_strs"]
    assert strs.count("<|im_start|>") == 3  # default system, user, generation prompt
    # The generation prompt: the special token, then "assistant\n" in byte-level BPE pieces.
    assert strs[-4] == "<|im_start|>" and "".join(strs[-3:]) == "assistant\u010a"

    chat = client.chat.completions.create(model=SMOL, messages=messages, max_tokens=24, temperature=0)
    assert chat.usage.prompt_tokens == r["count"]
    # The chat prompt is exactly the templated token ids.
    completion = client.completions.create(model=SMOL, prompt=r["tokens"], max_tokens=24, temperature=0)
    assert completion.choices[0].text == chat.choices[0].message.content
    assert "Paris" in chat.choices[0].message.content
    assert chat.choices[0].finish_reason in ("stop", "length")
    assert "<|im_end|>" not in chat.choices[0].message.content

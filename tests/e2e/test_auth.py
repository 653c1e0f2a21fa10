"""With --api-key, no endpoint answers without the key (a test that fails if
any does), and every endpoint works with it."""
import openai
import pytest
import requests

from conftest import STORIES, STORIES_ARGS, start_server

KEY = "sk-tidal-test-key"

# Every route the server has, plus paths it does not have.
ENDPOINTS = [
    ("GET", "/health", None),
    ("GET", "/metrics", None),
    ("GET", "/v1/models", None),
    ("GET", f"/v1/models/{STORIES}", None),
    ("POST", "/v1/completions", {"model": STORIES, "prompt": "Once", "max_tokens": 2}),
    ("POST", "/v1/chat/completions", {"model": STORIES, "messages": [{"role": "user", "content": "hi"}],
                                      "max_tokens": 2}),
    ("POST", "/tokenize", {"prompt": "Once"}),
    ("POST", "/detokenize", {"tokens": [1, 403]}),
    ("GET", "/", None),
    ("GET", "/no/such/path", None),
    ("POST", "/v1/completions?x=1", {"model": STORIES, "prompt": "Once", "max_tokens": 2}),
    ("DELETE", "/v1/models", None),
]

BAD_HEADERS = [
    {},
    {"Authorization": "Bearer wrong-key"},
    {"Authorization": f"Bearer {KEY}x"},
    {"Authorization": f"Bearer {KEY[:-1]}"},
    {"Authorization": KEY},
    {"Authorization": f"Basic {KEY}"},
    {"Authorization": "Bearer "},
    {"X-Api-Key": KEY},
]


@pytest.fixture(scope="module")
def keyed():
    s = start_server(STORIES_ARGS, "--api-key", KEY)
    yield s
    assert s.stop() == 0


@pytest.mark.parametrize("method,path,body", ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_every_endpoint_requires_the_key(keyed, method, path, body):
    for headers in BAD_HEADERS:
        r = requests.request(method, keyed.url + path, json=body, headers=headers, timeout=60)
        assert r.status_code == 401, (headers, r.status_code, r.text[:200])
        err = r.json()["error"]
        assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error"
        assert r.headers.get("WWW-Authenticate") == "Bearer"
    r = requests.request(method, keyed.url + path, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert r.status_code != 401
    if path in ("/", "/no/such/path"):
        assert r.status_code == 404
    elif method == "DELETE":
        assert r.status_code == 405
    else:
        assert r.status_code == 200, r.text


def test_key_scheme_is_case_insensitive(keyed):
    r = requests.get(keyed.url + "/health", headers={"Authorization": f"bearer {KEY}"}, timeout=60)
    assert r.status_code == 200


def test_sdk_with_and_without_key(keyed):
    good = openai.OpenAI(base_url=keyed.base_url, api_key=KEY, max_retries=0)
    r = good.completions.create(model=STORIES, prompt="Once", max_tokens=3)
    assert r.usage.completion_tokens == 3
    bad = openai.OpenAI(base_url=keyed.base_url, api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.completions.create(model=STORIES, prompt="Once", max_tokens=3)
    with pytest.raises(openai.AuthenticationError):
        list(bad.chat.completions.create(model=STORIES, messages=[{"role": "user", "content": "x"}], stream=True))
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_server_without_key_is_open(server):
    assert requests.get(server.url + "/v1/models", timeout=60).status_code == 200

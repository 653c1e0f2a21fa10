"""Fixtures that run the real `tidal serve` on a free loopback port.

The server is started with --port 0 and prints the URL it bound, so there is
no race for a port. Binary: $TIDAL_BIN, default build/bin/tidal.
"""
import json
import os
import pathlib
import re
import selectors
import signal
import subprocess
import tempfile
import threading
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
TIDAL = os.path.abspath(os.environ.get("TIDAL_BIN", str(ROOT / "build" / "bin" / "tidal")))
STORIES_ARGS = [
    "--model", str(ROOT / "tests/data/stories260K/stories260K.bin"),
    "--tokenizer", str(ROOT / "tests/data/stories260K/tok512.model"),
]
SMOL_PATH = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
STORIES = "stories"  # served model name
SMOL = "smollm2"
# A small KV pool starts fast; 2048 blocks of 16 tokens hold 64 full contexts of stories260K.
COMMON_ARGS = {"--kv-cache-mb": "40", "--max-num-seqs": "128"}

STARTUP_TIMEOUT_S = 120


class Server:
    def __init__(self, proc, url, log_path):
        self.proc = proc
        self.url = url
        self.base_url = url + "/v1"
        self.log_path = log_path

    def get(self, path, **kw):
        kw.setdefault("timeout", 60)
        return requests.get(self.url + path, **kw)

    def post(self, path, **kw):
        kw.setdefault("timeout", 60)
        return requests.post(self.url + path, **kw)

    def tokenize(self, **body):
        r = self.post("/tokenize", json=body, headers=self.auth_headers())
        r.raise_for_status()
        return r.json()["tokens"]

    def auth_headers(self):
        return {}

    def metrics(self):
        """Samples of /metrics without histogram buckets: {'name{labels}': value, 'name': value}."""
        r = self.get("/metrics", headers=self.auth_headers())
        r.raise_for_status()
        out = {}
        for line in r.text.splitlines():
            if not line or line.startswith("#"):
                continue
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
            name = key.split("{", 1)[0]
            if "le=" not in key and "finished_reason" not in key:
                out[name] = float(value)
        return out

    def wait_idle(self, timeout=60):
        """Polls /metrics until no request is running or waiting; returns the last sample."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if m["tidal:num_requests_running"] == 0 and m["tidal:num_requests_waiting"] == 0:
                return m
            assert time.monotonic() < deadline, f"server still busy: {m}"
            time.sleep(0.02)

    def log(self):
        return pathlib.Path(self.log_path).read_text(errors="replace")

    def wait_exit(self, timeout=60):
        """Waits for the server to exit on its own; returns its exit code.
        The log is kept only when the exit was not clean."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server did not exit within {timeout}s\n{self.log()}")
        if code == 0:
            pathlib.Path(self.log_path).unlink(missing_ok=True)
        else:
            print(f"tidal serve exited with {code}; log: {self.log_path}\n{self.log()}")
        return code

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Signals the server and returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)


def start_server(model_args, *extra, name=STORIES, launcher=()):
    """Starts `tidal serve` (under `launcher`, e.g. mpirun, if given) and
    waits until /health answers (with the key, if one is given)."""
    log = tempfile.NamedTemporaryFile(prefix="tidal-serve-", suffix=".log", delete=False)
    common = [x for flag, value in COMMON_ARGS.items() if flag not in extra for x in (flag, value)]
    cmd = [*launcher, TIDAL, "serve", *model_args, "--port", "0", "--served-model-name", name, *common, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    url = None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    # Read from the descriptor the selector watches: a buffered readline()
    # could swallow the URL line together with an earlier one, and the
    # selector would then wait for data that already arrived.
    out = b""
    while url is None and time.monotonic() < deadline:
        if not sel.select(timeout=0.5):
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        out += chunk
        m = re.search(r"(http://\S+)\n", out.decode(errors="replace"))
        if m:
            url = m.group(1)
    sel.close()
    if url is None:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"tidal serve did not start: {cmd}\n{pathlib.Path(log.name).read_text()}")
    # Nothing else is expected on stdout; drain it anyway so the pipe never fills.
    threading.Thread(target=proc.stdout.read, daemon=True).start()

    server = Server(proc, url, log.name)
    key = next((extra[i + 1] for i, a in enumerate(extra) if a == "--api-key"), None)
    if key:
        server.auth_headers = lambda: {"Authorization": f"Bearer {key}"}
    while True:
        try:
            if server.get("/health", headers=server.auth_headers(), timeout=5).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            server.stop(signal.SIGKILL)
            raise RuntimeError(f"tidal serve never became healthy\n{server.log()}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def server():
    s = start_server(STORIES_ARGS)
    yield s
    code = s.stop()
    assert code == 0, f"server exited with {code}\n{s.log()}"


@pytest.fixture(scope="session")
def smol():
    if not SMOL_PATH.exists():
        pytest.skip(f"{SMOL_PATH} not present (tools/setup_model.sh fetches it)")
    s = start_server(["--model", str(SMOL_PATH)], name=SMOL)
    yield s
    assert s.stop() == 0


@pytest.fixture()
def client(server):
    import openai

    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


def generate(model_args, prompt, max_tokens):
    """`tidal generate --json` for one prompt, greedy."""
    out = subprocess.run(
        [TIDAL, "generate", *model_args, "--kv-cache-mb", "16", "--prompt", prompt,
         "--max-tokens", str(max_tokens), "--temperature", "0", "--json"],
        capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def sse_payloads(response):
    """The `data:` payloads of an SSE response from http.client, in order."""
    while True:
        line = response.readline()
        if not line:
            return
        line = line.decode("utf-8").rstrip("\r\n")
        if line.startswith("data: "):
            yield line[len("data: "):]

#!/usr/bin/env python3
"""Real writing requests for benchmarks, with their provenance.

Takes the 1000 WritingBench queries that the PyPI package `inspect-evals`
ships (inspect_evals/writingbench/benchmark_all.jsonl) and writes them as a
prompts JSONL, one object per line:

    {"prompt": query text, "index": WritingBench's own index, "domain1": ...,
     "domain2": ..., "lang": "en" | "zh", "chars": len(prompt),
     "prompt_tokens": chat-formatted prompt tokens (when counted)}

plus `<out minus .jsonl>.provenance.json`: package name and version, the
file's path inside the wheel, sha256 of the wheel and of the file, the
package's license as its metadata states it, the extraction date, the
command, and how many queries each filter dropped.

The package is fetched WITHOUT its dependency tree (`pip download
inspect-evals==VERSION --no-deps`) and read as a zip; nothing is installed.
Pass --wheel to use a wheel already downloaded.

Language: WritingBench has no language field; a query is "zh" when more
than 1% of its characters are CJK ideographs or CJK punctuation, else "en".

Context: with --count-tokens (default on when build/bin/tidal and the model
exist), a `tidal serve --port 0` is started on loopback and every query is
tokenized through POST /tokenize as one chat user message (the same chat
template the benchmark's /v1/chat/completions requests get, generation
prompt included); queries whose prompt plus --reserve-output-tokens exceed
the served context are skipped and counted.

  python3 tools/extract_writingbench.py                      # all 1000 -> bench/data/writingbench.jsonl
  python3 tools/extract_writingbench.py --lang en --max-chars 4000 --out bench/data/writingbench_en.jsonl
  python3 tools/extract_writingbench.py --every 25 --out tests/data/prompts/writingbench_sample.jsonl

Python stdlib only (plus pip, for the download).
"""
import argparse
import datetime
import hashlib
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile

PACKAGE = "inspect-evals"
DEFAULT_VERSION = "0.28.0"  # pinned so that the data does not change under the benchmarks
MEMBER = "inspect_evals/writingbench/benchmark_all.jsonl"
REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_TIDAL = REPO / "build" / "bin" / "tidal"
CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def language(text):
    return "zh" if text and len(CJK.findall(text)) > 0.01 * len(text) else "en"


def download_wheel(version, dest):
    spec = PACKAGE if version == "latest" else f"{PACKAGE}=={version}"
    cmd = [sys.executable, "-m", "pip", "download", spec, "--no-deps", "--only-binary=:all:", "-d", str(dest),
           "--quiet", "--disable-pip-version-check"]
    print("extract_writingbench: " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    wheels = sorted(pathlib.Path(dest).glob("inspect_evals-*.whl"))
    if len(wheels) != 1:
        sys.exit(f"extract_writingbench: expected one inspect_evals wheel in {dest}, found {wheels}")
    return wheels[0]


def wheel_metadata(z):
    """Name, version and license fields of the wheel's METADATA."""
    meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    fields = {}
    for line in z.read(meta_name).decode("utf-8").splitlines():
        if not line.strip():
            break  # the description follows the headers
        key, _, value = line.partition(": ")
        if key in ("Name", "Version", "License", "License-Expression", "Author"):
            fields[key] = value
        if key == "License-File":
            fields.setdefault("License-File", []).append(value)
    return fields


class TokenCounter:
    """A private `tidal serve` on loopback whose /tokenize counts chat-formatted prompts."""

    def __init__(self, tidal, model, threads):
        self.log = tempfile.NamedTemporaryFile(prefix="extract_writingbench-", suffix=".log", delete=False)
        cmd = [str(tidal), "serve", "--model", str(model), "--host", "127.0.0.1", "--port", "0",
               "--threads", str(threads)]  # default KV pool: the context is the one a default server has
        print("extract_writingbench: counting tokens with " + " ".join(cmd), file=sys.stderr)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = None
        deadline = time.time() + 120
        while time.time() < deadline and self.url is None:
            if self.proc.poll() is not None:
                break
            m = re.search(r"http://127\.0\.0\.1:\d+", pathlib.Path(self.log.name).read_text(errors="replace"))
            if m:
                self.url = m.group(0)
            else:
                time.sleep(0.1)
        if self.url is None:
            self.close()
            sys.exit("extract_writingbench: tidal serve did not start:\n" +
                     pathlib.Path(self.log.name).read_text(errors="replace"))
        self.max_model_len = None

    def count(self, text):
        body = json.dumps({"messages": [{"role": "user", "content": text}]}).encode()
        req = urllib.request.Request(self.url + "/tokenize", data=body, headers={"Content-Type": "application/json"})
        for attempt in range(50):
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    reply = json.load(resp)
                break
            except OSError:
                if attempt == 49:
                    raise
                time.sleep(0.2)
        self.max_model_len = reply["max_model_len"]
        return reply["count"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "bench" / "data" / "writingbench.jsonl"),
                    help="prompts JSONL to write (default: %(default)s)")
    ap.add_argument("--version", default=DEFAULT_VERSION,
                    help="inspect-evals version to download, or 'latest' (default: %(default)s)")
    ap.add_argument("--wheel", help="use this inspect_evals wheel instead of downloading one")
    ap.add_argument("--lang", choices=["en", "zh", "all"], default="all", help="keep only this language")
    ap.add_argument("--max-chars", type=int, default=0, help="skip queries longer than this many characters (0: none)")
    ap.add_argument("--every", type=int, default=1,
                    help="keep every N-th query of the file's order (1st, N+1-th, ...), after the other filters")
    ap.add_argument("--count-tokens", choices=["auto", "yes", "no"], default="auto",
                    help="count chat-formatted prompt tokens with a private tidal serve and skip what does not fit "
                         "the context (auto: when --tidal and --model exist)")
    ap.add_argument("--tidal", default=str(DEFAULT_TIDAL), help="tidal binary for --count-tokens")
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="model whose tokenizer and context count")
    ap.add_argument("--threads", type=int, default=1, help="threads of the token-counting server")
    ap.add_argument("--reserve-output-tokens", type=int, default=256,
                    help="a query fits when its prompt tokens plus this many output tokens fit the context")
    args = ap.parse_args()
    if args.every < 1:
        ap.error("--every must be >= 1")

    with tempfile.TemporaryDirectory(prefix="inspect-evals-") as tmp:
        wheel = pathlib.Path(args.wheel) if args.wheel else download_wheel(args.version, tmp)
        wheel_bytes = wheel.read_bytes()
        with zipfile.ZipFile(wheel) as z:
            meta = wheel_metadata(z)
            raw = z.read(MEMBER)

    rows = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
    counts = {"in_file": len(rows)}
    for r in rows:
        if not isinstance(r.get("query"), str) or not r["query"].strip():
            sys.exit(f"extract_writingbench: row {r.get('index')} has no query text")

    kept = [r for r in rows if args.lang == "all" or language(r["query"]) == args.lang]
    counts["dropped_lang"] = len(rows) - len(kept)
    before = len(kept)
    if args.max_chars > 0:
        kept = [r for r in kept if len(r["query"]) <= args.max_chars]
    counts["dropped_max_chars"] = before - len(kept)

    count_tokens = args.count_tokens == "yes" or (
        args.count_tokens == "auto" and os.access(args.tidal, os.X_OK) and pathlib.Path(args.model).is_file())
    tokens = {}
    max_model_len = None
    if count_tokens:
        counter = TokenCounter(args.tidal, args.model, args.threads)
        try:
            for r in kept:
                tokens[r["index"]] = counter.count(r["query"])
            max_model_len = counter.max_model_len
        finally:
            counter.close()
        before = len(kept)
        kept = [r for r in kept if tokens[r["index"]] + args.reserve_output_tokens <= max_model_len]
        counts["dropped_context"] = before - len(kept)
        print(f"extract_writingbench: {counts['dropped_context']} queries skipped: prompt + "
              f"{args.reserve_output_tokens} output tokens over the {max_model_len}-token context", file=sys.stderr)
    before = len(kept)
    kept = kept[::args.every]
    counts["dropped_every"] = before - len(kept)
    counts["written"] = len(kept)

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for r in kept:
            line = {"prompt": r["query"], "index": r["index"], "domain1": r.get("domain1"),
                    "domain2": r.get("domain2"), "lang": language(r["query"]), "chars": len(r["query"])}
            if count_tokens:
                line["prompt_tokens"] = tokens[r["index"]]
            f.write(json.dumps(line, ensure_ascii=False) + "\n")

    license_text = meta.get("License-Expression") or meta.get("License")
    provenance = {
        "source": "WritingBench queries as shipped in the PyPI package inspect-evals",
        "package": meta.get("Name"),
        "version": meta.get("Version"),
        "wheel": wheel.name,
        "wheel_sha256": sha256_bytes(wheel_bytes),
        "file": MEMBER,
        "file_sha256": sha256_bytes(raw),
        "license": license_text,
        "license_note": "as stated by the package metadata (License-Expression / License); the package's "
                        "LICENSE and NOTICE name no separate license for the WritingBench data",
        "author": meta.get("Author"),
        "upstream": "https://github.com/X-PLUG/WritingBench (arXiv 2503.05244)",
        "extracted_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(shlex.quote(a) for a in ["python3", "tools/extract_writingbench.py", *sys.argv[1:]]),
        "filters": {"lang": args.lang, "max_chars": args.max_chars, "every": args.every,
                    "count_tokens": count_tokens,
                    "reserve_output_tokens": args.reserve_output_tokens if count_tokens else None,
                    "tokenizer_model": pathlib.Path(args.model).name if count_tokens else None,
                    "max_model_len": max_model_len},
        "counts": counts,
        "language_rule": "zh when more than 1% of the characters are CJK ideographs or CJK punctuation, else en",
        "fields": {"prompt": "the query, verbatim", "index": "WritingBench's index (1-based)",
                   "domain1": "WritingBench's domain", "domain2": "WritingBench's subdomain",
                   "lang": "by the language rule", "chars": "characters (Unicode code points) of the prompt",
                   "prompt_tokens": "tokens of the prompt as one chat user message, chat template and "
                                    "generation prompt included (when counted)"},
    }
    prov_path = out.with_name(out.name[:-len(".jsonl")] if out.name.endswith(".jsonl") else out.name)
    prov_path = prov_path.with_name(prov_path.name + ".provenance.json")
    prov_path.write_text(json.dumps(provenance, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"extract_writingbench: wrote {len(kept)} prompts to {out} and {prov_path}; counts {counts}",
          file=sys.stderr)


if __name__ == "__main__":
    main()

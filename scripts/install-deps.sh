#!/usr/bin/env bash
# Installs what building and testing mooncake-c needs, and nothing when it is all there.
# Idempotent: a second run only checks dpkg and exits. Runs as root (CI) or through sudo.
set -euo pipefail

APT_PKGS=(cmake ninja-build pkg-config gcc clang libclang-rt-14-dev
          libuv1-dev libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev
          libxxhash-dev libcmocka-dev python3 python3-dev python3-pip curl)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import pytest' 2>/dev/null; then
  echo "install-deps: installing pytest"
  python3 -m pip install -q pytest 2>/dev/null || python3 -m pip install -q --break-system-packages pytest
fi

# scikit-build-core: the build backend of `pip install ./python` (the mooncake wheel).
if ! python3 -c 'import scikit_build_core' 2>/dev/null; then
  echo "install-deps: installing scikit-build-core"
  python3 -m pip install -q scikit-build-core 2>/dev/null || \
    python3 -m pip install -q --break-system-packages scikit-build-core
fi

# numpy: the Python tests use numpy arrays as zero-copy buffers (as vLLM/LMCache do).
if ! python3 -c 'import numpy' 2>/dev/null; then
  echo "install-deps: installing numpy"
  python3 -m pip install -q numpy 2>/dev/null || python3 -m pip install -q --break-system-packages numpy
fi

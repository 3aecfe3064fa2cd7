#!/usr/bin/env bash
# Fetches vLLM's three Python proxies for bench_proxy's side by side, at bench time, from the
# vLLM source distribution on PyPI (never committed): the .tar.gz named on the index's simple
# page (pip download --no-binary would try to build vLLM), checked against the sha256 the page
# gives, cached in build/bench; only the three scripts are unpacked. Then a venv with what they
# import (FastAPI, uvicorn, uvloop, httpx, aiohttp, requests). Idempotent and quick when done.
# usage: bench/proxy/vllm_proxies_setup.sh [OUT_DIR]   (default build/bench)
set -euo pipefail
VERSION=0.32.0
OUT=${1:-build/bench}
DIR=$OUT/vllm_proxies
VENV=$OUT/vllm-proxy-venv
FILES=(examples/disaggregated/disaggregated_serving/disagg_proxy_demo.py
       examples/disaggregated/mooncake_connector/mooncake_connector_proxy.py
       tests/v1/kv_connector/nixl_integration/toy_proxy_server.py)
mkdir -p "$OUT"
TGZ=$OUT/vllm-$VERSION.tar.gz
if [ ! -s "$TGZ.ok" ]; then
  href=$(curl -fsSL https://pypi.org/simple/vllm/ |
         grep -o "href=\"[^\"]*/vllm-$VERSION\.tar\.gz#sha256=[0-9a-f]*\"" | head -n1 |
         sed -e 's/^href="//' -e 's/"$//')
  [ -n "$href" ] || { echo "vllm-$VERSION.tar.gz not on https://pypi.org/simple/vllm/" >&2; exit 1; }
  sha=${href##*#sha256=}
  curl -fsSL -o "$TGZ.part" "${href%%#*}"
  echo "$sha  $TGZ.part" | sha256sum -c --quiet -
  mv "$TGZ.part" "$TGZ"
  echo "$sha" > "$TGZ.ok"
fi
ok=1
for f in "${FILES[@]}"; do [ -s "$DIR/$f" ] || ok=0; done
if [ $ok = 0 ]; then
  mkdir -p "$DIR"
  tar -xzf "$TGZ" -C "$DIR" --strip-components=1 "${FILES[@]/#/vllm-$VERSION/}"
fi
if [ ! -x "$VENV/bin/python" ] ||
   ! "$VENV/bin/python" -c 'import fastapi, uvicorn, uvloop, httpx, aiohttp, requests' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q fastapi uvicorn uvloop httpx aiohttp requests
fi
echo "vLLM $VERSION proxies in $DIR, venv $VENV"

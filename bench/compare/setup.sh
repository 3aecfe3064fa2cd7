#!/usr/bin/env bash
# Setup for the side-by-side benchmark (bench/compare): installs what it needs and nothing
# when it is all there (a second run only checks). Called by `make bench-compare`.
#   - Debian: redis-server (Redis 7), libibverbs1 (upstream's binaries link it even
#     for TCP; without it they do not start) and python3-venv;
#   - build/bench/venv: the harness's venv (matplotlib for the plots, redis-py with hiredis
#     for the Redis driver); our `mooncake` package comes from the release build via
#     PYTHONPATH=build/release/python, so this venv holds no `mooncake`;
#   - build/bench/venv-upstream: upstream Mooncake's PyPI wheel, pinned (same import name
#     `mooncake`, so it gets a venv of its own). MC_UPSTREAM_WHEEL_DIR=<dir> lets pip take the
#     wheel from a local directory first.
# A failing upstream install is reported, not fatal: the harness then compares the rest.
set -uo pipefail

UPSTREAM_PKG="mooncake-transfer-engine-non-cuda==0.3.13.post1"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=$ROOT/build/bench/venv
VUP=$ROOT/build/bench/venv-upstream
PY=${PYTHON:-python3}

need=()
for p in redis-server libibverbs1 python3-venv; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bench-compare setup: apt-get install ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    echo "bench-compare setup: apt-get failed for ${need[*]}" >&2
fi

mkdir -p "$ROOT/build/bench"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV" || { echo "bench-compare setup: cannot create $VENV" >&2; exit 1; }
fi
if ! "$VENV/bin/python" -c "import matplotlib, redis, hiredis, numpy" 2>/dev/null; then
  echo "bench-compare setup: pip install matplotlib numpy redis hiredis into $VENV"
  "$VENV/bin/python" -m pip install -q matplotlib numpy redis hiredis || exit 1
fi

# The pinned wheel is published for CPython 3.11: prefer a python3.11 for its venv.
UPY=$PY
command -v python3.11 >/dev/null && UPY=python3.11
if [ ! -x "$VUP/bin/python" ]; then
  "$UPY" -m venv "$VUP" || echo "bench-compare setup: cannot create $VUP" >&2
fi
if [ -x "$VUP/bin/python" ] &&
   ! "$VUP/bin/python" -c "import importlib.metadata as m; assert m.version('mooncake-transfer-engine-non-cuda') == '0.3.13.post1'" 2>/dev/null; then
  echo "bench-compare setup: pip install $UPSTREAM_PKG into $VUP"
  extra=()
  [ -n "${MC_UPSTREAM_WHEEL_DIR:-}" ] && extra=(--find-links "$MC_UPSTREAM_WHEEL_DIR")
  "$VUP/bin/python" -m pip install -q "${extra[@]}" "$UPSTREAM_PKG" ||
    echo "bench-compare setup: upstream wheel not installed; the harness will say so and compare the rest" >&2
fi
exit 0

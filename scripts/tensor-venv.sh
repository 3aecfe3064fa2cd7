#!/bin/bash
# tensor-venv.sh: the venv the tensor tests run in (make test-tensor):
# build/tensor-venv with torch (PyPI's 2.13.0, runs on CPU), numpy,
# safetensors, pytest, pytest-timeout and msgpack. Idempotent: a venv that already
# imports them is left as it is (a second run takes a second).
#   scripts/tensor-venv.sh [VENV]   default build/tensor-venv
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:-$ROOT/build/tensor-venv}
# msgpack: upstream's test_put_get_tensor.py imports a module that needs it (upstream_suite.sh)
PKGS=(torch==2.13.0 numpy safetensors pytest pytest-timeout msgpack)
# installed is enough (importing torch cold takes many seconds)
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "${PKGS[@]}" 2>/dev/null <<'PY'; then
import sys
from importlib import metadata
for spec in sys.argv[1:]:
    name, _, want = spec.partition("==")
    if want and metadata.version(name) != want:
        sys.exit(1)
    metadata.version(name)
PY
    exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "${PKGS[@]}"
"$VENV/bin/python" -c "import torch; print('tensor venv: torch', torch.__version__)"

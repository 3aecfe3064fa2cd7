#!/bin/bash
# run-upstream-suite.sh: upstream Mooncake's own Python suite (mooncake-wheel/tests
# and scripts/test_*.py), unmodified, against our package, with the daemons
# started as upstream's scripts/run_tests.sh and CI start them. Makes (once)
# the venv with upstream's test dependencies (scripts/tensor-venv.sh: torch on
# CPU, numpy, safetensors, msgpack, pytest, pytest-timeout), then runs
# python/tools/upstream_suite.sh with that venv's python first on PATH. The
# upstream files are exported from the mirror into a temporary directory and
# never into this tree. Not part of `make test` (about 15 minutes; upstream's
# fixed ports 8080, 50051, 50052 must be free).
#
#   scripts/run-upstream-suite.sh [BUILD_DIR [pytest args...]]   BUILD_DIR default build/release
#   VENV (default build/tensor-venv), UPSTREAM_GIT, UPSTREAM_REV, ONLY, OUT_DIR: as upstream_suite.sh
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/build/tensor-venv}
"$ROOT/scripts/tensor-venv.sh" "$VENV"
PATH="$VENV/bin:$PATH" exec "$ROOT/python/tools/upstream_suite.sh" "$@"

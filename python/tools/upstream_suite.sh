#!/bin/bash
# upstream_suite.sh: runs upstream Mooncake's own Python tests (mooncake-wheel/tests
# and scripts/test_*.py), unmodified, against our `mooncake` package, with the
# daemons started as upstream's scripts/run_tests.sh starts them (metadata server
# on 8080, mooncake_master --default_kv_lease_ttl=500 on 50051, a standalone
# mooncake_client on 50052). The tests are exported from a local mirror of
# upstream's repository into a temporary directory; nothing of them enters this
# tree. Readiness is a listening port, not a sleep.
#
#   python/tools/upstream_suite.sh [BUILD_DIR] [pytest args...]
#     BUILD_DIR  default build/release (its bin/ and python/)
#     UPSTREAM_GIT  upstream's bare git dir (default /work/.mirror/kvcache-ai+Mooncake/repo)
#     UPSTREAM_REV  revision (default HEAD)
# Prints pytest's summary; JUnit XML under $OUT_DIR (default /tmp/upstream-suite).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-build/release}
shift || true
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
UPSTREAM_GIT=${UPSTREAM_GIT:-/work/.mirror/kvcache-ai+Mooncake/repo}
UPSTREAM_REV=${UPSTREAM_REV:-HEAD}
OUT_DIR=${OUT_DIR:-/tmp/upstream-suite}
WORK=$(mktemp -d /tmp/upstream-suite.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() { # port pid name
    for _ in $(seq 1 300); do
        if ! kill -0 "$2" 2>/dev/null; then echo "$3 exited before listening on $1" >&2; return 1; fi
        if python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "$3 is not listening on $1" >&2
    return 1
}

git --git-dir="$UPSTREAM_GIT" archive "$UPSTREAM_REV" mooncake-wheel/tests mooncake-wheel/mooncake \
    scripts | tar -x -C "$WORK" || exit 1
# the upstream tests' conftest adds upstream's Python sources to mooncake.__path__
# only for modules our package lacks; ours come first.
export PATH="$BUILD/bin:$PATH" PYTHONPATH="$BUILD/python"
export MC_METADATA_SERVER=http://127.0.0.1:8080/metadata DEFAULT_KV_LEASE_TTL=500
mkdir -p "$OUT_DIR"
mooncake_http_metadata_server --port 8080 >"$OUT_DIR/metadata.log" 2>&1 &
PIDS+=($!)
wait_port 8080 $! metadata_server || exit 1
mooncake_master --default_kv_lease_ttl=500 --enable_http_metadata_server=false \
    >"$OUT_DIR/master.log" 2>&1 &
PIDS+=($!)
wait_port 50051 $! mooncake_master || exit 1
mooncake_client >"$OUT_DIR/client.log" 2>&1 &
PIDS+=($!)
wait_port 50052 $! mooncake_client || exit 1

cd "$WORK/mooncake-wheel/tests" || exit 1
TESTS=(.)
for f in "$WORK"/scripts/test_*.py; do TESTS+=("$f"); done
python3 -m pytest -q -p no:cacheprovider --continue-on-collection-errors --timeout=120 -rfE --junitxml="$OUT_DIR/junit.xml" \
    "${TESTS[@]}" "$@" 2>&1 | tee "$OUT_DIR/pytest.log" | tail -n 400

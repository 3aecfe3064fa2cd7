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
#     ONLY          space-separated test file names (e.g. "test_put_get_tensor.py
#                   test_tensor_api.py"): run just those, against the master (no TE
#                   pair, no standalone client)
# As run_tests.sh, each test file runs in its own python (pytest, one JUnit file
# each), in its phases: the transfer-engine pair with transfer_engine_target.py
# running; the store files against the master; the standalone mooncake_client
# started before the dummy-client files (test_multi_dummy_clients.py twice at
# once, --client-id client1 / client2, counted by exit status). The files that
# are scripts rather than tests run as upstream runs them, counted by exit
# status: scripts/test_drain_http_api.py as its CI step does (--timeout-sec 90;
# it creates its stores on 127.0.0.1:19001 / 19002 and drives the master's
# admin port 9003, which is bound to loopback here: our master serves its
# state-changing endpoints only there or with an admin key), and
# test_meta_server.py with the arguments its header gives (127.0.0.1 8).
# Prints one summary line; JUnit XML and logs under $OUT_DIR (default
# /tmp/upstream-suite).
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

# one archive per folder (REV:path): a pathspec archive reads the whole tree and
# fails on a mirror that lacks some large blob outside these folders
for d in mooncake-wheel/tests mooncake-wheel/mooncake scripts; do
    git --git-dir="$UPSTREAM_GIT" archive --prefix="$d/" "$UPSTREAM_REV:$d" |
        tar -x -C "$WORK" || exit 1
done
# scripts/test_engram_store.py imports `store` from upstream's native build
# folder (<repo>/build/mooncake-integration, where its store.so lands): there,
# a module that is our mooncake.store (python/tools/upstream_native_store.py)
mkdir -p "$WORK/build/mooncake-integration"
cp "$ROOT/python/tools/upstream_native_store.py" "$WORK/build/mooncake-integration/store.py"
# the upstream tests' conftest adds upstream's Python sources to mooncake.__path__
# only for modules our package lacks; ours come first.
export PATH="$BUILD/bin:$PATH" PYTHONPATH="$BUILD/python"
export MC_METADATA_SERVER=http://127.0.0.1:8080/metadata DEFAULT_KV_LEASE_TTL=500
mkdir -p "$OUT_DIR"
mooncake_http_metadata_server --port 8080 >"$OUT_DIR/metadata.log" 2>&1 &
PIDS+=($!)
wait_port 8080 $! metadata_server || exit 1
mooncake_master --default_kv_lease_ttl=500 --enable_http_metadata_server=false \
    --metrics_host=127.0.0.1 \
    >"$OUT_DIR/master.log" 2>&1 &
PIDS+=($!)
wait_port 50051 $! mooncake_master || exit 1

cd "$WORK/mooncake-wheel/tests" || exit 1
rm -f "$OUT_DIR"/junit-*.xml "$OUT_DIR"/script-*.rc
PYTEST=(python3 -m pytest -q -p no:cacheprovider --timeout=300 -rfE)
# upstream's CI runs its scripts/test_*.py with the store named by these
# (MooncakeConfig.load_from_env); its wheel tests read their own defaults
SCRIPT_ENV=(MOONCAKE_MASTER=127.0.0.1:50051 MOONCAKE_TE_META_DATA_SERVER=http://127.0.0.1:8080/metadata
    MOONCAKE_PROTOCOL=tcp LOCAL_HOSTNAME=127.0.0.1)
run_script() { # file args...
    local f=$1 name envs=()
    shift
    name=$(basename "$f" .py)
    case "$f" in "$WORK"/scripts/*) envs=("${SCRIPT_ENV[@]}") ;; esac
    env "${envs[@]}" python3 "$f" "$@" >"$OUT_DIR/$name.log" 2>&1
    local rc=$?
    echo $rc >"$OUT_DIR/script-$name.rc"
    echo "$name: exit status $rc (script)"
}
run_one() { # file: as a script or with pytest
    case "$(basename "$1")" in
    test_drain_http_api.py) run_script "$1" --timeout-sec 90 ;;
    test_meta_server.py) run_script "$1" 127.0.0.1 8 ;;
    *) run_file "$1" ;;
    esac
}
run_file() { # file [pytest args]
    local f=$1 name envs=()
    shift
    name=$(basename "$f" .py)
    case "$f" in "$WORK"/scripts/*) envs=("${SCRIPT_ENV[@]}") ;; esac
    env "${envs[@]}" "${PYTEST[@]}" --junitxml="$OUT_DIR/junit-$name.xml" "$f" "$@" \
        >"$OUT_DIR/$name.log" 2>&1
    # pytest's summary line (a daemon's log line may follow it)
    { grep -E "[0-9]+ (passed|failed|errors?|skipped)|no tests ran" "$OUT_DIR/$name.log" ||
        tail -n 1 "$OUT_DIR/$name.log"; } | tail -n 1 | sed "s|^|$name: |"
}

summary() {
    python3 - "$OUT_DIR" <<'PY'
import glob, os, sys, xml.etree.ElementTree as ET
out = sys.argv[1]
c = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
for f in sorted(glob.glob(os.path.join(out, "junit-*.xml"))):
    for ts in ET.parse(f).iter("testsuite"):
        t, fl, e, s = (int(ts.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        c["passed"] += t - fl - e - s
        c["failed"] += fl
        c["errors"] += e
        c["skipped"] += s
for f in sorted(glob.glob(os.path.join(out, "script-*.rc"))):
    c["passed" if open(f).read().strip() == "0" else "failed"] += 1
print("upstream suite: %(passed)d passed, %(failed)d failed, %(errors)d errors, "
      "%(skipped)d skipped" % c)
PY
}

if [ -n "${ONLY:-}" ]; then
    for name in $ONLY; do
        for f in "$name" "$WORK/scripts/$name"; do
            [ -f "$f" ] && run_one "$f"
        done
    done
    summary
    exit 0
fi

# 1. the transfer engine pair (run_tests.sh: target in the background)
MC_FORCE_TCP=true PYTHONUNBUFFERED=1 python3 transfer_engine_target.py >"$OUT_DIR/te_target.log" 2>&1 &
TARGET=$!
PIDS+=($TARGET)
for _ in $(seq 1 300); do
    grep -q "Target server ready" "$OUT_DIR/te_target.log" 2>/dev/null && break
    kill -0 $TARGET 2>/dev/null || break
    sleep 0.05
done
MC_FORCE_TCP=true run_file transfer_engine_initiator_test.py
kill $TARGET 2>/dev/null

# 2. every other file, each in its own python, against the master
DUMMY="test_dummy_client.py test_multi_dummy_clients.py"
for f in test_*.py "$WORK"/scripts/test_*.py; do
    case " $DUMMY " in *" $(basename "$f") "*) continue ;; esac
    run_one "$f"
done

# 3. the standalone client, then the dummy-client files
mooncake_client >"$OUT_DIR/client.log" 2>&1 &
PIDS+=($!)
wait_port 50052 $! mooncake_client || exit 1
run_file test_dummy_client.py
python3 test_multi_dummy_clients.py --client-id client1 >"$OUT_DIR/multi1.log" 2>&1 &
M1=$!
python3 test_multi_dummy_clients.py --client-id client2 >"$OUT_DIR/multi2.log" 2>&1 &
M2=$!
wait $M1; echo $? >"$OUT_DIR/script-multi1.rc"
wait $M2; echo $? >"$OUT_DIR/script-multi2.rc"

summary

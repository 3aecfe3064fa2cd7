#!/bin/bash
# Runs upstream Mooncake's three SSD-tier test files, unmodified, against our
# daemons and our `mooncake` package, with the daemons started the way
# upstream's scripts/run_tests.sh starts them for each file (same master
# flags, same client environment), on loopback and on free ports.
#
#   scripts/run-upstream-ssd-tests.sh UPSTREAM [BIN_DIR [PY_DIR]]
#
# UPSTREAM: a checkout (work tree) of kvcache-ai/Mooncake, or its git
# directory (the files are then read from HEAD). BIN_DIR: our daemons
# (default build/release/bin); PY_DIR: the directory holding our `mooncake`
# package (default BIN_DIR/../python). An ASan-built package gets the ASan
# runtime preloaded. The upstream files are copied to a temporary directory
# and never into this tree. Exit status: 0 when all three pass. FILES (space
# separated) picks a subset; KEEP=1 keeps the logs (daemons, tests).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
up=${1:?usage: $0 UPSTREAM [BIN_DIR [PY_DIR]]}
bin=$(cd "${2:-$here/build/release/bin}" && pwd)
py=$(cd "${3:-$bin/../python}" && pwd)
files=${FILES:-"test_offload_on_eviction.py test_promotion_on_hit.py test_ssd_offload_in_evict.py"}

work=$(mktemp -d /tmp/mc-upstream-ssd.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    if [ -n "${KEEP:-}" ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

for f in $files; do
    if [ -d "$up/mooncake-wheel/tests" ]; then
        cp "$up/mooncake-wheel/tests/$f" "$work/$f" || exit 2
    else
        git --git-dir="$up" show "HEAD:mooncake-wheel/tests/$f" >"$work/$f" || exit 2
    fi
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# waits until 127.0.0.1:$1 accepts connections (or $2, a pid, exits)
wait_port() {
    for _ in $(seq 1 200); do
        kill -0 "$2" 2>/dev/null || return 1
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

pyenv=(PYTHONPATH="$py${PYTHONPATH:+:$PYTHONPATH}")
so=$(ls "$py"/mooncake/_core*.so 2>/dev/null | head -1)
if [ -n "$so" ] && grep -q __asan_init "$so"; then
    rt=$(clang -print-file-name=libclang_rt.asan-x86_64.so)
    pyenv+=(LD_PRELOAD="$rt" ASAN_OPTIONS=detect_leaks=0:abort_on_error=0)
fi

meta_port=$(free_port)
"$bin/mooncake_http_metadata_server" --host 127.0.0.1 --port "$meta_port" >"$work/meta.log" 2>&1 &
pids+=($!)
wait_port "$meta_port" "${pids[-1]}" || { echo "metadata server did not start"; cat "$work/meta.log"; exit 1; }

# run_one FILE CLIENT_ENV... -- MASTER_FLAGS...
run_one() {
    local f=$1 envs=() flags=()
    shift
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    flags=("$@")
    local port mport root="$work/root-${f%.py}"
    port=$(free_port)
    mport=$(free_port)
    mkdir -p "$root"
    flags=("${flags[@]//@ROOT@/$root}")
    envs=("${envs[@]//@ROOT@/$root}")
    "$bin/mooncake_master" --rpc_address=127.0.0.1 --port="$port" --metrics_host=127.0.0.1 \
        --metrics_port="$mport" --default_kv_lease_ttl=500 "${flags[@]}" >"$work/master-$f.log" 2>&1 &
    local mpid=$!
    pids+=($mpid)
    if ! wait_port "$port" "$mpid"; then
        echo "FAIL $f: the master did not start:"
        cat "$work/master-$f.log"
        return 1
    fi
    echo "=== $f (master: ${flags[*]})"
    (cd "$work" && env "${pyenv[@]}" MC_METADATA_SERVER="http://127.0.0.1:$meta_port/metadata" \
        MASTER_SERVER="127.0.0.1:$port" DEFAULT_KV_LEASE_TTL=500 "${envs[@]}" \
        python3 "$f" >"$work/$f.log" 2>&1)
    local rc=$?
    grep -vE '^\S+ [DI] \[' "$work/$f.log" # the test's own output, and our warnings
    kill "$mpid"
    wait "$mpid" 2>/dev/null
    [ $rc -eq 0 ] && echo "PASS $f" || { echo "FAIL $f (rc $rc)"; tail -20 "$work/master-$f.log"; }
    return $rc
}

fails=0
for f in $files; do
    case $f in
    test_offload_on_eviction.py) # master.json of its docstring: enable_offload + offload_on_evict
        run_one "$f" MOONCAKE_OFFLOAD_FILE_STORAGE_PATH=@ROOT@ -- \
            --enable_offload=true --offload_on_evict=true || fails=$((fails + 1)) ;;
    test_promotion_on_hit.py) # run_tests.sh, TEST_PROMOTION_ON_HIT
        run_one "$f" MOONCAKE_OFFLOAD_FILE_STORAGE_PATH=@ROOT@ MOONCAKE_OFFLOAD_BUCKET_KEYS_LIMIT=10 \
            MOONCAKE_OFFLOAD_BUCKET_SIZE_LIMIT_BYTES=10485760 -- \
            --root_fs_dir=@ROOT@ --enable_offload=true --offload_on_evict=true \
            --promotion_on_hit=true --promotion_admission_threshold=1 || fails=$((fails + 1)) ;;
    test_ssd_offload_in_evict.py) # run_tests.sh, TEST_SSD_OFFLOAD_IN_EVICT (MC_STORE_MEMCPY=false in CI)
        run_one "$f" MC_STORE_MEMCPY=false -- --root_fs_dir=@ROOT@ || fails=$((fails + 1)) ;;
    *) echo "unknown file $f"; fails=$((fails + 1)) ;;
    esac
done
echo "upstream SSD tests: $fails failed"
[ $fails -eq 0 ]

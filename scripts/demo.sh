#!/usr/bin/env bash
# The store demo (`make demo`): mooncake_master with its embedded HTTP metadata
# server, then kvcache_demo, which starts two store processes contributing
# segments to the pool and runs a KV-cache workload through the C API:
# requests sharing prefixes, blocks keyed by chained hashes, one process
# prefilling (putting the blocks it misses), the other fetching each request's
# KV cache (hit rate, GB/s, p50/p99, every byte verified). Everything started
# here is stopped by pid on exit, failure included; kvcache_demo's workers die
# with it. The transfer-engine demo is scripts/demo-te.sh (`make demo-te`).
# Usage: scripts/demo.sh BIN_DIR [kvcache_demo options...]
set -euo pipefail
BIN=${1:?usage: demo.sh BIN_DIR [kvcache_demo options]}
shift
MASTER_PID=
LOG=$(mktemp /tmp/mooncake-demo.XXXXXX.log)
cleanup() {
  if [ -n "$MASTER_PID" ]; then
    kill "$MASTER_PID" 2>/dev/null || true
    wait "$MASTER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The master on loopback, every port chosen by the kernel; its listening lines
# (read from a pipe, not guessed) give the addresses.
exec {MFD}< <(exec "$BIN/mooncake_master" --enable_http_metadata_server \
  --http_metadata_server_host=127.0.0.1 --http_metadata_server_port=0 \
  --rpc_address=127.0.0.1 --port=0 --metrics_host=127.0.0.1 --metrics_port=0 2>>"$LOG")
MASTER_PID=$!
META= RPC= ADMIN=
while IFS= read -r -t 10 -u "$MFD" line; do
  case $line in
    *"http metadata server listening on "*) META="http://${line##* on }/metadata" ;;
    *"rpc listening on "*) RPC=${line##* on } ;;
    *"metrics listening on "*) ADMIN=${line##* on } ;;
    *": ready") break ;;
  esac
done
if [ -z "$META" ] || [ -z "$RPC" ]; then
  echo "demo: mooncake_master did not become ready; see $LOG" >&2
  exit 1
fi
echo "master:          $RPC (admin http://$ADMIN, metadata $META)"
if ! "$BIN/kvcache_demo" --master "$RPC" --metadata "$META" "$@" 2>>"$LOG"; then
  echo "demo: kvcache_demo failed; the end of $LOG:" >&2
  tail -n 20 "$LOG" >&2
  exit 1
fi
echo "(logs: $LOG)"

#!/usr/bin/env bash
# The transfer-engine demo (`make demo-te`): an HTTP metadata server, a target and
# an initiator on loopback. KV-block-sized buffers move both ways over each
# transport (tcp, and shm for this same-host peer), are verified byte for byte,
# and the figures print next to the single-thread memcpy limit of the same run.
# `make bench-te` runs the same with 4 MiB blocks for 10 s a cell.
# Usage: scripts/demo-te.sh BIN_DIR [SECONDS_PER_RUN] [BLOCK_SIZES]
# With BENCH_JSON=FILE set, every run's JSON line is also appended to FILE.
set -euo pipefail
BIN=${1:?usage: demo-te.sh BIN_DIR [SECONDS] [BLOCK_SIZES]}
SECS=${2:-3}
BLOCKS=${3:-262144 4194304}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_and_wait VAR PATTERN CMD...: starts CMD, waits up to 10 s for a stdout
# line matching PATTERN and stores that line in VAR.
start_and_wait() {
  local var=$1 pattern=$2; shift 2
  local fd line
  exec {fd}< <(exec "$@" 2>>"$LOG")
  PIDS+=($!)
  while IFS= read -r -t 10 -u "$fd" line; do
    if [[ $line =~ $pattern ]]; then printf -v "$var" '%s' "$line"; return 0; fi
  done
  echo "demo: '$1' did not become ready; see $LOG" >&2
  exit 1
}

LOG=$(mktemp /tmp/mooncake-demo.XXXXXX.log)
start_and_wait META_LINE '^listening on ' "$BIN/mooncake_http_metadata_server" --host 127.0.0.1 --port 0
META="http://${META_LINE#listening on }/metadata"
echo "metadata server:  $META"
start_and_wait TARGET_LINE '^READY ' "$BIN/transfer_engine_bench" --mode target \
  --metadata_server "$META" --local_server_name 127.0.0.1:17777 --buffer_size $((512 << 20))
echo "target segment:   $(echo "$TARGET_LINE" | cut -d' ' -f2 | cut -d= -f2)"
echo
printf '%-6s %-6s %-10s %8s %9s %8s %12s %7s %14s %7s\n' transport op block GB/s ops/s p50_us memcpy_GB/s ratio loopback_GB/s ratio
for proto in tcp shm; do
  for op in write read; do
    for block in $BLOCKS; do
      out=$("$BIN/transfer_engine_bench" --mode initiator --metadata_server "$META" \
              --local_server_name 127.0.0.1:17778 --segment_id 127.0.0.1:17777 \
              --protocol "$proto" --operation "$op" --block_size "$block" --batch_size 8 \
              --threads 2 --duration "$SECS" --buffer_size $((512 << 20)) --verify --json 2>>"$LOG")
      [ -z "${BENCH_JSON:-}" ] || echo "$out" >> "$BENCH_JSON"
      python3 - "$out" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
assert d["verified"] and d["errors"] == 0
print(f'{d["protocol"]:<6} {d["operation"]:<6} {d["block_size"]//1024:>6} KiB {d["gbps"]:>8.2f} '
      f'{d["ops_per_s"]:>9.0f} {d["p50_us"]:>8.0f} {d["memcpy_gbps"]:>12.2f} {d["ratio_to_memcpy"]:>7.2f} '
      f'{d["tcp_loopback_gbps"]:>14.2f} {d["ratio_to_loopback"]:>7.2f}')
PY
    done
  done
done
echo
echo "every run verified its data both ways, byte for byte (logs: $LOG)"

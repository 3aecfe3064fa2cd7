#!/usr/bin/env bash
# `make bench-rdma`: transfer_engine_bench over rdma (libfabric's software
# provider tcp;ofi_rxm, FI_PROVIDER=tcp: no RDMA NIC here) next to tcp, in the
# same run against the same target, in alternating rounds (tcp, rdma, rdma,
# tcp, ...) so that a change of load hits both. Every run verifies its data
# both ways and prints the single-thread memcpy and one-stream tcp loopback
# limits it measured; the load average is printed with every line.
# Usage: scripts/bench-rdma.sh BIN_DIR [SECONDS] [ROUNDS] [BLOCK_SIZES]
# JSON lines (one per run, plus "loadavg") go to $BENCH_JSON when set.
set -euo pipefail
BIN=${1:?usage: bench-rdma.sh BIN_DIR [SECONDS] [ROUNDS] [BLOCK_SIZES]}
SECS=${2:-5}
ROUNDS=${3:-2}
BLOCKS=${4:-65536 4194304}
export FI_PROVIDER=${FI_PROVIDER:-tcp} MC_TCP_BIND_ADDRESS=127.0.0.1
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
LOG=$(mktemp /tmp/mooncake-bench-rdma.XXXXXX.log)

start_and_wait() { # VAR PATTERN CMD...
  local var=$1 pattern=$2; shift 2
  local fd line
  exec {fd}< <(exec "$@" 2>>"$LOG")
  PIDS+=($!)
  while IFS= read -r -t 20 -u "$fd" line; do
    if [[ $line =~ $pattern ]]; then printf -v "$var" '%s' "$line"; return 0; fi
  done
  echo "bench-rdma: '$1' did not become ready; see $LOG" >&2
  exit 1
}

start_and_wait META_LINE '^listening on ' "$BIN/mooncake_http_metadata_server" --host 127.0.0.1 --port 0
META="http://${META_LINE#listening on }/metadata"
start_and_wait TARGET_LINE '^READY ' "$BIN/transfer_engine_bench" --mode target --protocol rdma \
  --metadata_server "$META" --local_server_name 127.0.0.1:17877 --buffer_size $((512 << 20))
printf '%-5s %-5s %5s %3s %8s %8s %11s %6s %13s %6s %s\n' proto op block rnd GB/s p50_us \
  memcpy_GB/s ratio loopback_GB/s ratio load1
for block in $BLOCKS; do
  for op in write read; do
    for ((r = 0; r < ROUNDS; r++)); do
      order="tcp rdma"; ((r % 2)) && order="rdma tcp"
      for proto in $order; do
        out=$("$BIN/transfer_engine_bench" --mode initiator --metadata_server "$META" \
                --local_server_name 127.0.0.1:17878 --segment_id 127.0.0.1:17877 \
                --protocol "$proto" --operation "$op" --block_size "$block" --batch_size 8 \
                --threads 2 --duration "$SECS" --buffer_size $((512 << 20)) --verify --json \
                2>>"$LOG")
        load=$(cut -d' ' -f1 /proc/loadavg)
        [ -z "${BENCH_JSON:-}" ] || echo "${out%\}},\"round\":$r,\"loadavg\":$load}" >> "$BENCH_JSON"
        python3 - "$out" "$proto" "$r" "$load" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
assert d["verified"] and d["errors"] == 0, d
assert d["protocol"] == sys.argv[2], (d["protocol"], sys.argv[2])  # no silent fallback
print(f'{d["protocol"]:<5} {d["operation"]:<5} {d["block_size"]//1024:>4}K {sys.argv[3]:>3} '
      f'{d["gbps"]:>8.3f} {d["p50_us"]:>8.0f} {d["memcpy_gbps"]:>11.2f} {d["ratio_to_memcpy"]:>6.3f} '
      f'{d["tcp_loopback_gbps"]:>13.2f} {d["ratio_to_loopback"]:>6.3f} {sys.argv[4]}')
PY
      done
    done
  done
done
echo "every run verified its data both ways (logs: $LOG)"

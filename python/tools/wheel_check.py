"""Checks an installed mooncake-c wheel (scripts/test-wheel.sh runs it in a
fresh venv, inside a mount namespace where the system's copies of the C
libraries the tree links are hidden).

    <venv>/bin/python python/tools/wheel_check.py --readme README.md \
        --expect-version 0.1.0 [--allowed SONAME ...] [--hidden LIB ...]

What it proves, in order (any failure exits 1 with the reason):
  1. every --hidden path is really unreadable here (the hiding worked);
  2. every ELF file of the installed package (mooncake/_core, _buf, the
     daemons in mooncake/bin) resolves each needed library (`ldd`) either
     inside the installation (auditwheel's mooncake_c.libs) or to one the
     manylinux policy lets the system provide (--allowed: glibc's, libz, ...),
     and none is "not found";
  3. each console script (mooncake_master, mooncake_client,
     mooncake_http_metadata_server, mooncake_proxy, transfer_engine_bench)
     answers --version with "<name> (mooncake-c) <v>", and <v> is
     mooncake.__version__ and --expect-version; mc_store_rest_server --help works;
  4. the README's "Python quick start" store and engine snippets, run as
     written against the console script's mooncake_master (only the fixed
     ports 8080 / 50051 replaced by free ones), plus a put/get of every
     buffer kind (bytes, bytearray, memoryview, slices) byte for byte, the
     buffer protocol of get_buffer on Python >= 3.11 (TypeError and
     tobytes() on 3.10), and one transfer between two engines;
  5. the same store put/get through a master with TLS files (certificates
     made by the openssl CLI; client certificates required): the RPC on
     OpenSSL at both ends, the HTTPS metadata server on libmicrohttpd and
     GnuTLS, the store's metadata client on libcurl and OpenSSL, each the
     wheel's own copy.
Prints one JSON line with what it checked."""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

from tls_pki import key_of, make_pki  # python/tools, beside this file

# the kernel's and the loader's; --allowed adds the manylinux policy's list
ALLOWED = {"ld-linux-x86-64.so.2", "linux-vdso.so.1"}
SCRIPTS = ["mooncake_master", "mooncake_client", "mooncake_http_metadata_server",
           "mooncake_proxy", "transfer_engine_bench"]


def fail(msg):
    sys.stderr.write("wheel_check: FAIL: %s\n" % msg)
    sys.exit(1)


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def is_elf(path):
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def check_ldd(pkg_root):
    """pkg_root: site-packages. Returns the number of ELF files checked."""
    roots = [os.path.join(pkg_root, "mooncake")] + [
        os.path.join(pkg_root, d) for d in os.listdir(pkg_root) if d.endswith(".libs")]
    n = 0
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for fn in files:
                path = os.path.join(dirpath, fn)
                if not is_elf(path):
                    continue
                n += 1
                r = subprocess.run(["ldd", path], capture_output=True, text=True)
                out = r.stdout
                if r.returncode != 0 or r.stderr.strip() or "=>" not in out:
                    fail("ldd %s: rc %d: %s" % (path, r.returncode, (r.stderr or out).strip()))
                for line in out.splitlines():
                    line = line.strip()
                    m = re.match(r"(\S+)(?: => (\S+))?", line)
                    if not m or "statically linked" in line:
                        continue
                    name, where = m.group(1), m.group(2)
                    if "not found" in line:
                        fail("%s: %s not found" % (path, name))
                    base = os.path.basename(name)
                    if base in ALLOWED:
                        continue
                    real = os.path.realpath(where or name)
                    if not real.startswith(os.path.realpath(pkg_root) + os.sep):
                        fail("%s needs %s from outside the installation (%s)" % (path, base, real))
    if n < 2 + len(SCRIPTS):
        fail("only %d ELF files in the installed package" % n)
    return n


def check_versions(expect):
    import mooncake
    if mooncake.__version__ != expect:
        fail("mooncake.__version__ %r, expected %r" % (mooncake.__version__, expect))
    bindir = os.path.dirname(sys.executable)
    for s in SCRIPTS:
        exe = os.path.join(bindir, s)
        if not os.path.exists(exe):
            fail("console script %s missing from %s" % (s, bindir))
        r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
        want = "%s (mooncake-c) %s" % (s, expect)
        if r.returncode != 0 or r.stdout.strip() != want:
            fail("%s --version: rc %d, %r (want %r)" % (s, r.returncode, r.stdout, want))
    exe = os.path.join(bindir, "mc_store_rest_server")  # python -m mooncake.mooncake_store_service
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or "--max-wait-time" not in r.stdout:
        fail("mc_store_rest_server --help: rc %d: %s" % (r.returncode, r.stderr[-2000:]))


def readme_snippets(path):
    text = open(path, encoding="utf-8").read()
    sec = text.split("## Python quick start", 1)
    if len(sec) != 2:
        fail("README has no 'Python quick start' section")
    body = sec[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", body, re.S)
    if len(blocks) < 2:
        fail("README's quick start has %d python blocks, expected the store and engine ones"
             % len(blocks))
    return blocks[0], blocks[1]


class Master:
    def __init__(self, meta_port, rpc_port, extra=()):
        exe = os.path.join(os.path.dirname(sys.executable), "mooncake_master")
        self.p = subprocess.Popen(
            [exe, "--enable_http_metadata_server=true",
             "--http_metadata_server_port", str(meta_port),
             "--http_metadata_server_host", "127.0.0.1", "--rpc_address", "127.0.0.1",
             "--port", str(rpc_port), "--metrics_port", "0"] + list(extra),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        got = []
        t = threading.Thread(target=self._scan, args=(got,), daemon=True)
        t.start()
        t.join(30)
        if not got:
            self.stop()
            fail("mooncake_master did not print its ready line: %s" % self.p.stderr.read()[-2000:])

    def _scan(self, got):
        for line in self.p.stdout:
            if line.strip().endswith(": ready"):
                got.append(line)
                break
        for _ in self.p.stdout:  # drain
            pass

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def run_snippet(code, env_ports, name):
    meta, rpc = env_ports
    code = code.replace("8080", str(meta)).replace("50051", str(rpc))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail("README %s quick start: rc %d\n%s%s" % (name, r.returncode, r.stdout, r.stderr))
    return r.stdout


BYTES_CHECK = r"""
import sys
from mooncake.store import MooncakeDistributedStore
from mooncake.engine import TransferEngine
s = MooncakeDistributedStore()
assert s.setup("127.0.0.1", "http://127.0.0.1:%(meta)d/metadata", 64 << 20, 16 << 20, "tcp", "",
               "127.0.0.1:%(rpc)d") == 0
blob = bytes(range(256)) * 4097
kinds = {"bytes": blob, "bytearray": bytearray(blob), "memoryview": memoryview(blob),
         "slice": memoryview(blob)[3:-5], "bytearray_slice": memoryview(bytearray(blob))[7:]}
for k, v in kinds.items():
    assert s.put("k_" + k, v) == 0, k
    assert s.get("k_" + k) == bytes(v), k
assert s.put_parts("parts", b"ab", memoryview(b"cdef")[1:], bytearray(b"g")) == 0
assert s.get("parts") == b"abdefg"
assert s.put_batch(["b1", "b2"], [memoryview(b"x" * 10), bytearray(b"yz")]) == 0
assert s.get_batch(["b1", "b2"]) == [b"x" * 10, b"yz"]
for bad in ([1, 2, 3], "str", 7):
    try:
        s.put("bad", bad)
        raise SystemExit("put accepted %%r" %% (bad,))
    except TypeError:
        pass
h = s.get_buffer("k_bytes")
assert h.size() == len(blob) and h.tobytes() == blob
if sys.version_info >= (3, 11):
    assert bytes(memoryview(h)) == blob
    mode = "buffer protocol"
else:
    try:
        memoryview(h)
        raise SystemExit("memoryview(BufferHandle) worked on 3.10")
    except TypeError:
        mode = "tobytes"
s.close()
a, b = TransferEngine(), TransferEngine()
assert a.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == 0
assert b.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == 0
n = 1 << 20
pa, pb = a.allocate_managed_buffer(n), b.allocate_managed_buffer(n)
data = bytes((i * 7) %% 251 for i in range(n))
assert a.write_bytes_to_buffer(pa, data, n) == 0
assert a.transfer_sync_write("127.0.0.1:%%d" %% b.get_rpc_port(), pa, pb, n) == 0
assert b.read_bytes_from_buffer(pb, n) == data
print(mode)
"""


TLS_CHECK = r"""
from mooncake.store import MooncakeDistributedStore
s = MooncakeDistributedStore()
assert s.setup("127.0.0.1", "https://127.0.0.1:%(meta)d/metadata", 32 << 20, 16 << 20, "tcp", "",
               "127.0.0.1:%(rpc)d") == 0
blob = bytes(range(256)) * 1031
assert s.put("tls_k", blob) == 0
assert s.get("tls_k") == blob
assert s.close() == 0
print("ok")
"""


def check_tls():
    """The TLS paths of the bundled libraries: the master's RPC (OpenSSL on both ends), its
    HTTPS metadata server (libmicrohttpd on GnuTLS) and the store's metadata client (libcurl on
    OpenSSL), client certificates required."""
    if not shutil.which("openssl"):
        fail("the openssl CLI is needed to make the TLS check's certificates")
    with tempfile.TemporaryDirectory() as d:
        try:
            k = make_pki(d)
        except RuntimeError as e:
            fail("TLS check's certificates: %s" % e)
        meta, rpc = free_ports(2)
        m = Master(meta, rpc, ["--tls_cert_file", k["server"], "--tls_key_file",
                               key_of(k["server"]), "--tls_ca_file", k["ca"]])
        try:
            env = dict(os.environ, MC_TLS_CERT_FILE=k["client"],
                       MC_TLS_KEY_FILE=key_of(k["client"]), MC_TLS_CA_FILE=k["ca"])
            r = subprocess.run([sys.executable, "-c", TLS_CHECK % {"meta": meta, "rpc": rpc}],
                               capture_output=True, text=True, timeout=120, env=env)
            if r.returncode != 0 or r.stdout.strip() != "ok":
                fail("TLS check: rc %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
        finally:
            m.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--readme", required=True)
    ap.add_argument("--expect-version", required=True)
    ap.add_argument("--hidden", nargs="*", default=[])
    ap.add_argument("--allowed", nargs="*", default=[])
    a = ap.parse_args()
    ALLOWED.update(a.allowed)
    for h in a.hidden:
        with open(h, "rb") as f:
            if f.read(4):
                fail("%s is still readable: the system copy is not hidden" % h)
    import mooncake
    site = os.path.dirname(os.path.dirname(os.path.abspath(mooncake.__file__)))
    if not site.startswith(sys.prefix):
        fail("mooncake imported from %s, not from the venv %s" % (site, sys.prefix))
    nelf = check_ldd(site)
    check_versions(a.expect_version)
    store_code, engine_code = readme_snippets(a.readme)
    meta, rpc = free_ports(2)
    m = Master(meta, rpc)
    try:
        out = run_snippet(store_code, (meta, rpc), "store")
        if out.split() != ["b'hello'", "1"]:
            fail("README store quick start printed %r" % out)
        run_snippet(engine_code + "\nassert session.split(':')[1] != '0'\n", (meta, rpc), "engine")
        r = subprocess.run([sys.executable, "-c", BYTES_CHECK % {"meta": meta, "rpc": rpc}],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            fail("buffer / transfer check: rc %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
        mode = r.stdout.strip()
    finally:
        m.stop()
    check_tls()
    print(json.dumps({"python": "%d.%d" % sys.version_info[:2], "elf_files": nelf,
                      "hidden": len(a.hidden), "version": a.expect_version,
                      "readme_store": "ok", "readme_engine": "ok", "get_buffer": mode, "tls": "ok",
                      "ok": True}))


if __name__ == "__main__":
    main()

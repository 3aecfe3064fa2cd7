"""Load and faults of the soak, run as threads of soak.py: the HTTP clients
(metadata GET/PUT/DELETE with a byte checker, master admin GETs, proxy
completions checked byte for byte against the fake backends), the liveness
probes of each listener (master RPC SERVICE_READY, transfer-engine PROBE), and
the fault injectors (garbage, bad and truncated frames, idle-connection bursts,
slow-drip requests). Standard library only; every socket has a timeout."""

import http.client
import json
import random
import socket
import struct
import threading
import time

MCMR, MCTE = 0x524D434D, 0x4554434D
RPC_HDR = struct.Struct("<IBBHIiIQ")  # magic version method flags req_id status length view
RPC_V = 3  # the master RPC protocol version (docs/protocol.md)
TE_HDR = struct.Struct("<IBBHIiQQ")  # magic version opcode flags req_id status addr length
TIMEOUT = 15


def hostport(addr):
    h, p = addr.rsplit(":", 1)
    return h, int(p)


def http_req(addr, method, path, body=None, headers=None, timeout=TIMEOUT):
    """(status, body bytes); raises OSError/HTTPException on a transport failure."""
    h, p = hostport(addr)
    c = http.client.HTTPConnection(h, p, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def _recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(b), n))
        b += chunk
    return b


def rpc_service_ready(addr, version=b"2.0.0"):
    """One SERVICE_READY round trip on a fresh connection: True when answered
    with status 0."""
    with socket.create_connection(hostport(addr), timeout=TIMEOUT) as s:
        payload = struct.pack("<I", len(version)) + version
        s.sendall(RPC_HDR.pack(MCMR, RPC_V, 0x01, 0, 7, 0, len(payload), 0) + payload)
        magic, ver, method, _, req, status, n, _view = RPC_HDR.unpack(
            _recv_exact(s, RPC_HDR.size))
        _recv_exact(s, n)
        return magic == MCMR and method == 0x81 and req == 7 and status == 0


def te_probe(addr):
    """One transfer-engine PROBE round trip: True when answered with status 0."""
    with socket.create_connection(hostport(addr), timeout=TIMEOUT) as s:
        s.sendall(TE_HDR.pack(MCTE, 1, 0x12, 0, 9, 0, 0, 0))
        magic, _, op, _, req, status, _, n = TE_HDR.unpack(_recv_exact(s, TE_HDR.size))
        if n:
            _recv_exact(s, n)
        return magic == MCTE and op == 0x92 and req == 9 and status == 0


class Stats:
    """ops / errors / wrong per target (daemon slot name), thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.d = {}
        self.notes = []

    def add(self, target, ops=0, errors=0, wrong=0, note=None):
        with self.lock:
            c = self.d.setdefault(target, {"ops": 0, "errors": 0, "wrong": 0})
            c["ops"] += ops
            c["errors"] += errors
            c["wrong"] += wrong
            if note and len(self.notes) < 200:
                self.notes.append("%s: %s" % (target, note))

    def get(self, target):
        with self.lock:
            return dict(self.d.get(target, {"ops": 0, "errors": 0, "wrong": 0}))


def _loop(stop, pace, fn):
    while not stop.is_set():
        fn()
        stop.wait(pace)


def meta_load(stop, stats, target, addr, rng, pace=0.05):
    """GET/PUT/DELETE on 64 keys of our own namespace, against a model of what
    each key holds: a GET must return exactly the last PUT, or 404 after a DELETE."""
    model = {}
    ver = [0]

    def one():
        k = "soak/%s/%d" % (target, rng.randrange(64))
        path = "/metadata?key=" + k
        op = rng.choices(["GET", "PUT", "DELETE"], [5, 3, 1])[0]
        try:
            if op == "PUT":
                ver[0] += 1
                body = json.dumps({"k": k, "v": ver[0],
                                   "pad": "x" * rng.randrange(16, 32768)}).encode()
                st, _ = http_req(addr, "PUT", path, body, {"Content-Type": "application/json"})
                model[k] = body if st == 200 else "?"  # "?": unknown from now on
                if st != 200:
                    return stats.add(target, 1, 1, note="PUT %s -> %d" % (k, st))
            elif op == "GET":
                st, body = http_req(addr, "GET", path)
                want = model.get(k)
                if want == "?" and st in (200, 404):
                    model[k] = body if st == 200 else None  # known again
                elif st == 404 and want is None:
                    pass
                elif st == 200 and body != want:
                    return stats.add(target, 1, 0, 1, note="GET %s: not the last PUT" % k)
                elif st == 404 and want is not None:
                    return stats.add(target, 1, 0, 1, note="GET %s: 404 after a PUT" % k)
                elif st not in (200, 404):
                    return stats.add(target, 1, 1, note="GET %s -> %d" % (k, st))
            else:
                st, _ = http_req(addr, "DELETE", path)
                if st in (200, 404):
                    model.pop(k, None)
                else:
                    model[k] = "?"
                    return stats.add(target, 1, 1, note="DELETE %s -> %d" % (k, st))
            stats.add(target, 1)
        except (OSError, http.client.HTTPException) as e:
            model[k] = "?"
            stats.add(target, 1, 1, note="%s %s: %r" % (op, k, e))

    _loop(stop, pace, one)


ADMIN_PATHS = ["/metrics", "/metrics/summary", "/health", "/get_all_keys", "/get_all_segments",
               "/get_segments_detail", "/query_key?key=soak-w0-i0-k1", "/query_segment?segment=x"]


def admin_load(stop, stats, target, addr, rng, pace=0.2):
    def one():
        path = rng.choice(ADMIN_PATHS)
        try:
            st, _ = http_req(addr, "GET", path)
            ok = st == 200 or (st in (404, 400) and "query" in path)
            stats.add(target, 1, 0 if ok else 1, note=None if ok else "%s -> %d" % (path, st))
        except (OSError, http.client.HTTPException) as e:
            stats.add(target, 1, 1, note="%s: %r" % (path, e))

    _loop(stop, pace, one)


class BackendFaults:
    """Which fake backend is misbehaving, so the proxy checker can tell a wrong
    answer from the effect of an injected fault."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active = 0
        self.last_end = 0.0

    def begin(self):
        with self.lock:
            self.active += 1

    def end(self):
        with self.lock:
            self.active -= 1
            self.last_end = time.monotonic()

    def overlaps(self, t0):
        with self.lock:
            return self.active > 0 or self.last_end >= t0 - 1.0


def proxy_completion(addr, decoders, stream, timeout=TIMEOUT):
    """One completion through the proxy: (ok, why). ok when the answer is byte
    for byte what one of the decode fakes sends."""
    body = json.dumps({"model": "test-model", "prompt": "soak", "max_tokens": 8,
                       "stream": stream}).encode()
    st, data = http_req(addr, "POST", "/v1/completions", body,
                        {"Content-Type": "application/json"}, timeout)
    if st != 200:
        return False, "status %d" % st
    want = [d.expected_stream() if stream else d.answer_json(None) for d in decoders]
    return (data in want), "answer differs (%d bytes)" % len(data)


def proxy_load(stop, stats, target, addr, decoders, faults, rng, pace=0.2):
    def one():
        t0 = time.monotonic()
        stream = rng.random() < 0.5
        try:
            ok, why = proxy_completion(addr, decoders, stream)
        except (OSError, http.client.HTTPException) as e:
            ok, why = False, repr(e)
        if ok:
            stats.add(target, 1)
        elif faults.overlaps(t0):
            stats.add(target, 1, 1)  # a fault was on: an error, not a wrong answer
        elif why.startswith("answer"):
            stats.add(target, 1, 0, 1, note=why)
        else:
            stats.add(target, 1, 1, note=why)

    _loop(stop, pace, one)


def probe_load(stop, stats, probes, pace=1.0):
    """probes: list of (target, fn) returning True when answered; fn may raise."""
    def one():
        for target, fn in probes():
            try:
                ok = fn()
            except (OSError, http.client.HTTPException, struct.error) as e:
                ok = False
                stats.add(target, 1, 1, note="probe: %r" % e)
                continue
            stats.add(target, 1, 0 if ok else 1, note=None if ok else "probe failed")

    _loop(stop, pace, one)


# ---------------------------------------------------------------- faults

def _drain_until_closed(s, limit_s=5.0):
    """Reads what the peer sends until it closes (or limit_s): a server must close
    a connection that sent it a bad frame."""
    s.settimeout(0.5)
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            if not s.recv(65536):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def bad_frames_rpc(rng):
    """Hostile byte strings for the master RPC port: each is sent on its own
    connection, which is then half-closed and read until the master closes it."""
    ready = struct.pack("<I", 5) + b"2.0.0"
    return [
        rng.randbytes(rng.randrange(1, 4096)),
        RPC_HDR.pack(0xDEADBEEF, RPC_V, 0x01, 0, 1, 0, 0, 0),
        RPC_HDR.pack(MCMR, 9, 0x01, 0, 1, 0, len(ready), 0) + ready,
        RPC_HDR.pack(MCMR, RPC_V, 0x7F, 0, 1, 0, 0, 0),  # unknown method
        RPC_HDR.pack(MCMR, RPC_V, 0x81, 0, 1, 0, 0, 0),  # a reply sent to the server
        RPC_HDR.pack(MCMR, RPC_V, 0x01, 3, 1, 0, 0, 0),  # flags
        RPC_HDR.pack(MCMR, RPC_V, 0x01, 0, 1, 5, 0, 0),  # nonzero status
        RPC_HDR.pack(MCMR, RPC_V, 0x15, 0, 1, 0, (1 << 26) + 1, 0),  # length over 64 MiB
        RPC_HDR.pack(MCMR, RPC_V, 0x15, 0, 1, 0, 100, 0) + b"\x50\x00\x00\x00abc",  # truncated
        RPC_HDR.pack(MCMR, RPC_V, 0x15, 0, 1, 0, 8, 0) + struct.pack("<I", 1000) + b"abcd",  # bad str
        RPC_HDR.pack(MCMR, RPC_V, 0x01, 0, 1, 0, len(ready), 0)[:11],  # truncated header
        RPC_HDR.pack(MCMR, RPC_V, 0x01, 0, 1, 0, len(ready), 0) + ready + rng.randbytes(64),
    ]


def bad_frames_te(rng):
    return [
        rng.randbytes(rng.randrange(1, 4096)),
        TE_HDR.pack(0xDEADBEEF, 1, 0x12, 0, 1, 0, 0, 0),
        TE_HDR.pack(MCTE, 7, 0x12, 0, 1, 0, 0, 0),
        TE_HDR.pack(MCTE, 1, 0x55, 0, 1, 0, 0, 0),  # unknown opcode
        TE_HDR.pack(MCTE, 1, 0x92, 0, 1, 0, 0, 0),  # a reply sent to the server
        TE_HDR.pack(MCTE, 1, 0x12, 1, 1, 0, 0, 0),  # flags
        TE_HDR.pack(MCTE, 1, 0x00, 0, 1, 0, 16, 4096),  # READ out of range: status 1
        TE_HDR.pack(MCTE, 1, 0x10, 0, 1, 0, 0, 200) + b'{"name": "tru',  # truncated META
        TE_HDR.pack(MCTE, 1, 0x10, 0, 1, 0, 0, 10) + b"not json!!",  # META garbage
        TE_HDR.pack(MCTE, 1, 0x11, 0, 1, 0, 0, (2 << 20)),  # NOTIFY over 1 MiB
        TE_HDR.pack(MCTE, 1, 0x12, 0, 1, 0, 0, 0)[:20],  # truncated header
    ]


def send_bad(addr, frames, rng):
    """Sends each frame on its own connection, sometimes lingers up to 1 s (a
    truncated frame stays half-sent meanwhile), then half-closes it: the server
    must close the connection within 5 s of our FIN. Returns how many it did not
    (those are closed by us)."""
    stuck = 0
    for f in frames:
        try:
            s = socket.create_connection(hostport(addr), timeout=5)
        except OSError:
            stuck += 1
            continue
        try:
            s.sendall(f)
            if rng.random() < 0.5:
                time.sleep(rng.uniform(0.1, 1.0))  # the fault's length, not a synchronisation
            s.shutdown(socket.SHUT_WR)
            if not _drain_until_closed(s):
                stuck += 1
        except OSError:
            pass
        finally:
            s.close()
    return stuck


def idle_burst(addr, n, hold_s, check):
    """Opens n idle connections to addr, runs check() while they are open (the
    listener must still serve), then closes them. Returns (opened, check result)."""
    socks = []
    try:
        for _ in range(n):
            try:
                socks.append(socket.create_connection(hostport(addr), timeout=5))
            except OSError:
                break
        time.sleep(hold_s)  # the burst's length, not a synchronisation
        try:
            ok = check()
        except (OSError, http.client.HTTPException, struct.error):
            ok = False
        return len(socks), ok
    finally:
        for s in socks:
            s.close()


def slow_drip(addr, request, gap_s, stop):
    """Sends request one byte every gap_s, then reads the answer; True when the
    server answered (any HTTP status). The soak only needs every daemon to keep
    serving the others meanwhile."""
    try:
        s = socket.create_connection(hostport(addr), timeout=10)
    except OSError:
        return False
    try:
        for i in range(len(request)):
            if stop.is_set():
                return True
            s.sendall(request[i:i + 1])
            time.sleep(gap_s)  # the drip itself
        s.settimeout(10)
        return s.recv(4096).startswith(b"HTTP/1.")
    except OSError:
        return False  # a server may close a dripping client: allowed, not an answer
    finally:
        s.close()

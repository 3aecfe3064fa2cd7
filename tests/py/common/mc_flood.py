"""Connection floods against a real HTTP listener, for the listener-limit tests
(tests/py/mooncake/test_mc_http_limits.py, tests/py/proxy/test_proxy_limits.py).

A flood is many idle TCP connections from one loopback source address (any
127.x address works on Linux loopback), each bound to that address before
connecting, so that the listener's per-IP limit sees one peer. Every socket
is closed by close()."""

import errno
import resource
import select
import socket
import time


def raise_nofile(want):
    """Raises this process's RLIMIT_NOFILE soft limit to at least want (up to
    the hard limit); returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def accept_queue(port):
    """Connections waiting in the accept queue of the listener on port (the
    rx_queue of its LISTEN row in /proc/net/tcp{,6}); 0 when none is found."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            col = row.split()
            if col[3] == "0A" and int(col[1].rsplit(":", 1)[1], 16) == port:
                n += int(col[4].split(":")[1], 16)
    return n


class Flood:
    """n idle connections from src to 127.0.0.1:port. A connect that does not
    complete within connect_s (accept queue full) is kept open anyway: it
    still occupies the listener's backlog, as an attacker's would."""

    def __init__(self, port, n, src="127.0.0.2", connect_s=10.0, batch=64):
        raise_nofile(n + 512)
        self.socks = []
        deadline = time.monotonic() + connect_s
        try:
            while len(self.socks) < n:
                # In batches, each once the listener has taken the previous one
                # off its accept queue: a burst past the listen backlog leaves
                # handshakes to the kernel's SYN-ACK retries (seconds), and the
                # test would then watch retries, not the listener's limits.
                pending = {}
                for _ in range(min(batch, n - len(self.socks))):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    self.socks.append(s)
                    s.bind((src, 0))
                    s.setblocking(False)
                    rc = s.connect_ex(("127.0.0.1", port))
                    assert rc in (0, errno.EINPROGRESS), "connect: %s" % errno.errorcode.get(rc, rc)
                    pending[s.fileno()] = s
                while pending and time.monotonic() < deadline:
                    p = select.poll()
                    for fd in pending:
                        p.register(fd, select.POLLOUT)
                    for fd, _ in p.poll(50):
                        pending.pop(fd, None)
                while accept_queue(port) and time.monotonic() < deadline:
                    time.sleep(0.005)
        except BaseException:
            self.close()
            raise

    def closed_by_peer(self):
        """Sockets the server closed (EOF or reset readable), as a list."""
        gone = []
        p = select.poll()
        by_fd = {s.fileno(): s for s in self.socks}
        for fd in by_fd:
            p.register(fd, select.POLLIN)
        for fd, _ in p.poll(0):
            s = by_fd[fd]
            try:
                if s.recv(1, socket.MSG_PEEK) == b"":
                    gone.append(s)
            except (ConnectionResetError, ConnectionAbortedError):
                gone.append(s)
            except BlockingIOError:
                pass
        return gone

    def wait_closed(self, n, timeout):
        """Waits until at least n sockets were closed by the server; returns the
        count seen (which may be < n when the deadline passed)."""
        deadline = time.monotonic() + timeout
        while True:
            k = len(self.closed_by_peer())
            if k >= n or time.monotonic() >= deadline:
                return k
            time.sleep(0.05)

    def close(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.socks = []

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def http_get(port, path, timeout, src="127.0.0.1", sock=None, body=None):
    """One GET (a POST of the JSON text body when given) over a new
    connection from src, or over sock (kept open) when given; returns
    (status, body). Raises socket.timeout past timeout."""
    own = sock is None
    if own:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                        source_address=(src, 0))
    try:
        sock.settimeout(timeout)
        if body is None:
            sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
        else:
            sock.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          "Content-Length: %d\r\n\r\n%s" % (path, len(body), body)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = sock.recv(65536)
            if not d:
                raise ConnectionError("closed before the answer: %r" % buf)
            buf += d
        head, got = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.strip().lower(): v.strip() for k, v in
                (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        want = int(hdrs.get("content-length", "0"))
        while len(got) < want:
            d = sock.recv(65536)
            if not d:
                raise ConnectionError("closed mid-body")
            got += d
        return status, got
    finally:
        if own:
            sock.close()

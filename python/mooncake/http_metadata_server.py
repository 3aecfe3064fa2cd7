"""The HTTP metadata server of mooncake-c, from Python.

`python -m mooncake.http_metadata_server [--port 8080] [--host 0.0.0.0]
[--log-level INFO] [--tls-cert-file F --tls-key-file F [--tls-ca-file F]]` serves the transfer engine's metadata (GET/PUT/DELETE
/metadata?key=K, GET /health) as the `mooncake_http_metadata_server` binary
does, and `KVBootstrapServer` embeds it in a Python program under upstream's
names (`run`, `close`, `poll`, `store`, `_handle_metadata`).

There is one implementation of the protocol: the C server of src/metasrv,
loaded from mooncake._core. Requests made over HTTP and those handed to
`_handle_metadata` in-process reach the same store under the same rules (the
key stripped, a blank key refused with 400, the duplicate rpc_meta rule); the
HTTP side runs on the C server's own threads, never on the GIL.
"""
import argparse
import os
import logging
import signal
import sys
import threading
from collections.abc import Mapping
from enum import Enum

from . import _core
from .mooncake_config import use_tls_files

log = logging.getLogger("mooncake.http_metadata_server")


class KVPoll(Enum):
    """State of a KVBootstrapServer (upstream's values)."""
    Failed = 0
    Bootstrapping = 1
    WaitingForInput = 2
    Transferring = 3
    Success = 4


class MetadataResponse:
    """The answer to one /metadata request: `status`, `body` (bytes), `text`
    and `content_type` (application/json, as over HTTP)."""
    content_type = "application/json"

    def __init__(self, status, body):
        self.status = status
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return "<MetadataResponse %d %r>" % (self.status, self.body[:64])


class _StoreView(Mapping):
    """Read-only view of the server's store: key -> stored bytes."""

    def __init__(self, srv):
        self._srv = srv

    def __getitem__(self, key):
        v = self._srv.get(key) if isinstance(key, str) else None
        if v is None:
            raise KeyError(key)
        return v

    def __iter__(self):
        return iter(self._srv.keys())

    def __len__(self):
        return len(self._srv.keys())


class KVBootstrapServer:
    """An HTTP metadata server on host:port. It holds its store from the
    start; `run()` begins serving it over HTTP, `close()` stops."""

    def __init__(self, port: int, host: str = "0.0.0.0"):
        self.port = port
        self.host = host
        self._srv = _core.MetadataServer()
        self.store = _StoreView(self._srv)
        self.thread = None
        self._stop = threading.Event()
        self._failed = False

    def run(self):
        """Starts serving on host:port and returns a thread that lives until
        close(). A bind failure is logged; poll() then says Failed."""
        try:
            self.port = self._srv.listen(self.host, self.port)
        except OSError as e:
            log.error("HTTP metadata server: %s", e)
            self._failed = True
            return None
        self.thread = threading.Thread(target=self._stop.wait, name="mooncake-metadata",
                                       daemon=True)
        self.thread.start()
        log.info("HTTP metadata server serving on %s:%d", self.host, self.port)
        return self.thread

    async def _handle_metadata(self, request):
        """Answers one request given as an object with `method`, `query` and
        an awaitable `read()` (an aiohttp request, or any look-alike)."""
        key = request.query.get("key", "")
        body = await request.read() if request.method == "PUT" else b""
        status, data = self._srv.request(request.method, key, bytes(body))
        return MetadataResponse(status, data)

    def close(self):
        """Stops serving and frees the store."""
        self._srv.close()
        self._stop.set()
        if self.thread is not None:
            self.thread.join(timeout=2)

    def poll(self) -> KVPoll:
        if self._failed or self.thread is None or not self.thread.is_alive():
            return KVPoll.Failed
        return KVPoll.Success


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m mooncake.http_metadata_server",
        description="HTTP metadata server of mooncake-c (GET/PUT/DELETE /metadata?key=K, "
                    "GET /health)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free port)")
    p.add_argument("--host", default="0.0.0.0", help="address to bind")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], help="log level")
    p.add_argument("--tls-cert-file", "--tls_cert_file", default="",
                   help="serve HTTPS with this PEM certificate (default MC_TLS_CERT_FILE)")
    p.add_argument("--tls-key-file", "--tls_key_file", default="",
                   help="its PEM private key (default MC_TLS_KEY_FILE)")
    p.add_argument("--tls-ca-file", "--tls_ca_file", default="",
                   help="require client certificates signed by this CA, mutual TLS "
                        "(default MC_TLS_CA_FILE)")
    p.add_argument("--version", action="version", version="%(prog)s (mooncake-c) "
                   + _core.VERSION)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MC_LOG_LEVEL", {"CRITICAL": "error"}.get(args.log_level,
                                                                     args.log_level.lower()))
    try:
        use_tls_files(args.tls_cert_file, args.tls_key_file, args.tls_ca_file)
    except ValueError as e:
        log.error("%s", e)
        return 2
    server = KVBootstrapServer(port=args.port, host=args.host)
    if server.run() is None:
        return 1
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the line: a script may signal at once
        signal.signal(sig, lambda *_: done.set())
    # The line scripts wait for (the bound port matters with --port 0).
    print("mooncake_http_metadata_server: serving on %s:%d" % (args.host, server.port),
          flush=True)
    while not done.wait(3600):
        pass
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

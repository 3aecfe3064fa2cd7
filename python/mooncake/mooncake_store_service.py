"""A store client with a small REST API, launched as upstream's is:

    python -m mooncake.mooncake_store_service [--config FILE] [-D key=value ...]
        [--port 8080] [--max-wait-time 60]
    mc_store_rest_server ...            (the wheel's console script, the same)

The store is configured by `MooncakeConfig` (`--config`, else
MOONCAKE_CONFIG_PATH / MOONCAKE_* as `MooncakeConfig.load_from_env`); each
`-D key=value` (`--define`) overrides one of its fields (unknown keys and
items without `=` are ignored with a warning). `setup` is retried once a
second until it answers 0 or `--max-wait-time` seconds have gone (exit 1).
Then the HTTP API serves on 0.0.0.0:`--port` (the stdlib's threading HTTP
server, one thread per connection; every answer but a value is JSON):

    PUT    /api/put            {"key": K, "value": "text"}  200 {"status": "success"},
                               400 missing key/value or a body that is not JSON, 500 the put failed
    GET    /api/get/K          200 the value (application/octet-stream), 404 {"error": "Key not found"}
    GET    /api/exist/K        200 {"exists": true|false}, 500 when the master cannot be asked
    DELETE /api/remove/K       200 {"status": "success"}, 500 {"error": ...}
    DELETE /api/remove_all     200 {"status": "success removed N keys"}
    POST   /api/mount, /api/unmount, /api/mount_shm, /api/unmount_shm,
           /api/unmount_local_disk, /api/reconfigure
                               400 for a body that is not a JSON object; else 500 with the
                               store's NOT_SUPPORTED: a store here mounts exactly one segment,
                               its global_segment_size at setup (docs/python.md)

SIGINT / SIGTERM stop the server and close the store. Once serving, one line
`mooncake_store_service: serving on port P` goes to stdout (readiness)."""
import argparse
import json
import logging
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .mooncake_config import MooncakeConfig, parse_bool

log = logging.getLogger("mooncake.mooncake_store_service")

NOT_SUPPORTED = -1012
_CONFIG_TYPES = {"global_segment_size": "size", "local_buffer_size": "size",
                 "enable_ssd_offload": "bool", "enable_client_http_server": "bool",
                 "client_http_port": "int"}


def _apply_overrides(cfg, defines):
    for key, value in defines.items():
        if not hasattr(cfg, key):
            log.warning("-D %s: not a MooncakeConfig field, ignored", key)
            continue
        kind = _CONFIG_TYPES.get(key)
        if kind == "size":
            from .mooncake_config import _parse_segment_size
            value = _parse_segment_size(value)
        elif kind == "bool":
            value = parse_bool(value)
        elif kind == "int":
            value = int(value)
        setattr(cfg, key, value)
    cfg.__post_init__()  # the same checks as a config built from a file
    return cfg


class MooncakeStoreService:
    """The store and its HTTP server (upstream's class name)."""

    def __init__(self, config_path=None, cli_config=None):
        cfg = (MooncakeConfig.from_file(config_path) if config_path
               else MooncakeConfig.load_from_env())
        self.config = _apply_overrides(cfg, cli_config or {})
        self.store = None
        self.httpd = None

    def _setup_args(self):
        c = self.config
        return {"local_hostname": c.local_hostname, "metadata_server": c.metadata_server,
                "global_segment_size": c.global_segment_size,
                "local_buffer_size": c.local_buffer_size, "protocol": c.protocol,
                "rdma_devices": c.device_name, "master_server_addr": c.master_server_address,
                "enable_ssd_offload": c.enable_ssd_offload,
                "ssd_offload_path": c.ssd_offload_path, "tenant_id": c.tenant_id,
                "enable_client_http_server": c.enable_client_http_server,
                "client_http_port": c.client_http_port}

    def start_store_service(self, max_wait_time=60.0, stop_event=None):
        """setup, retried every second for at most max_wait_time s: True once it answers 0."""
        from .store import MooncakeDistributedStore
        deadline = time.monotonic() + max_wait_time
        attempt = 0
        while not (stop_event and stop_event.is_set()):
            attempt += 1
            store = MooncakeDistributedStore()
            rc = store.setup(self._setup_args())
            if rc == 0:
                self.store = store
                log.info("store set up as %s (attempt %d)", self.config.local_hostname, attempt)
                return True
            store.close()
            left = deadline - time.monotonic()
            log.warning("store setup answered %d (attempt %d), %.1f s left", rc, attempt,
                        max(left, 0))
            if left <= 0:
                return False
            if stop_event:
                stop_event.wait(min(1.0, left))
            else:
                time.sleep(min(1.0, left))
        return False

    def start_http_service(self, port=8080, host="0.0.0.0"):
        svc = self

        class Handler(_Handler):
            service = svc

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        return self.httpd.server_address[1]

    def stop(self):
        if self.httpd:
            self.httpd.server_close()
            self.httpd = None
        if self.store:
            rc = self.store.close()
            self.store = None
            if rc:
                log.warning("store close answered %d", rc)


class _Handler(BaseHTTPRequestHandler):
    service = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status, obj=None, raw=None):
        body = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if raw is not None
                         else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n > 0 else b""
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None

    def _route(self, prefix):
        path = urllib.parse.urlsplit(self.path).path
        if not path.startswith(prefix):
            return None
        return urllib.parse.unquote(path[len(prefix):])

    def do_PUT(self):
        if self._route("/api/put") != "":
            return self._send(404, {"error": "Not found"})
        data = self._body_json()
        if not isinstance(data, dict):
            return self._send(400, {"error": "Request body must be a JSON object"})
        key, value = data.get("key"), data.get("value")
        if not key or value is None or not isinstance(value, str):
            return self._send(400, {"error": "Missing key or value"})
        rc = self.service.store.put(key, value.encode())
        if rc != 0:
            return self._send(500, {"error": "PUT operation failed", "code": rc})
        self._send(200, {"status": "success"})

    def do_GET(self):
        store = self.service.store
        key = self._route("/api/get/")
        if key:
            value = store.get(key)
            if not value:  # a miss, or an empty value: the master tells which
                ex = store.is_exist(key)
                if ex < 0:
                    return self._send(500, {"error": "Exist check failed", "code": ex})
                if ex == 0:
                    return self._send(404, {"error": "Key not found"})
            return self._send(200, raw=value)
        key = self._route("/api/exist/")
        if key:
            ex = store.is_exist(key)
            if ex < 0:
                return self._send(500, {"error": "Exist check failed", "code": ex})
            return self._send(200, {"exists": ex > 0})
        self._send(404, {"error": "Not found"})

    def do_DELETE(self):
        store = self.service.store
        if self._route("/api/remove_all") == "":
            n = store.remove_all()
            if n < 0:
                return self._send(500, {"error": "RemoveAll operation failed", "code": n})
            return self._send(200, {"status": "success removed %d keys" % n})
        key = self._route("/api/remove/")
        if key:
            rc = store.remove(key)
            if rc != 0:
                return self._send(500, {"error": "Remove operation failed", "code": rc})
            return self._send(200, {"status": "success"})
        self._send(404, {"error": "Not found"})

    def do_POST(self):
        name = self._route("/api/")
        if name not in ("mount", "unmount", "mount_shm", "unmount_shm", "unmount_local_disk",
                        "reconfigure"):
            return self._send(404, {"error": "Not found"})
        data = self._body_json()
        if not isinstance(data, dict):
            return self._send(400, {"error": "Request body must be a JSON object"})
        self._send(500, {"error": "%s: not supported: this store mounts one segment, its "
                                  "global_segment_size at setup" % name, "code": NOT_SUPPORTED})


def parse_arguments(argv=None):
    p = argparse.ArgumentParser(description="Mooncake store client with a REST API")
    p.add_argument("--config", help="MooncakeConfig JSON file (else MOONCAKE_* variables)")
    p.add_argument("-D", "--define", action="append", default=[],
                   help="override one config field: -Dlocal_hostname=host")
    p.add_argument("--port", type=int, default=8080, help="HTTP API port (8080)")
    p.add_argument("--max-wait-time", type=float, default=60,
                   help="seconds to keep retrying the store's setup (60)")
    return p.parse_args(argv)


def main(argv=None):
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    a = parse_arguments(argv)
    defines = {}
    for item in a.define:
        k, sep, v = item.partition("=")
        if sep:
            defines[k] = v
        else:
            log.warning("-D %s: not key=value, ignored", item)
    svc = MooncakeStoreService(a.config, defines)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
        if svc.httpd:
            threading.Thread(target=svc.httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if not svc.start_store_service(a.max_wait_time, stop):
            if stop.is_set():
                return 0
            log.error("store startup failed within %.1f s", a.max_wait_time)
            return 1
        port = svc.start_http_service(a.port)
        print("mooncake_store_service: serving on port %d" % port, flush=True)
        if not stop.is_set():
            svc.httpd.serve_forever(poll_interval=0.2)
    finally:
        svc.stop()
    return 0


def sync_main():
    sys.exit(main())


if __name__ == "__main__":
    sync_main()

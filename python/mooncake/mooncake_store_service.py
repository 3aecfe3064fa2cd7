"""A store client with a small REST API, launched as upstream's is:

    python -m mooncake.mooncake_store_service [--config FILE] [-D key=value ...]
        [--port 8080] [--max-wait-time 60]
    mc_store_rest_server ...            (the wheel's console script, the same)

The store is configured by `MooncakeConfig` (`--config`, else
MOONCAKE_CONFIG_PATH / MOONCAKE_* as `MooncakeConfig.load_from_env`); each
`-D key=value` (`--define`) overrides one of its fields (unknown keys and
items without `=` are ignored with a warning). `setup` is retried once a
second until it answers 0 or `--max-wait-time` seconds have gone (exit 1).

Shape (upstream's names, so that its unit test drives this module): the
service is an asyncio program. `MooncakeStoreService.handle_<route>` are
coroutines taking a request (`await request.json()`, `request.match_info`)
and answering a `Reply` (aiohttp.web.Response's `status`, `text`, `body`,
`content_type`). aiohttp is not needed: the HTTP/1.1 front is the standard
library's threading server on 0.0.0.0:`--port`, which wraps each request and
runs the handler
  - in the connection's thread for the data routes (put, get, exist, remove,
    remove_all: they await nothing but the body, so connections run in
    parallel, as the store client allows), and
  - on the service's event loop for the POST routes, which share the
    Prefill/Decode state (`current_mode`, `mounted_segment_ids`,
    `last_mount_info`) under `_state_lock`.

    PUT    /api/put            {"key": K, "value": "text"}  200 {"status": "success"};
                               400 no key / a body that is not a JSON object;
                               500 no string value (as upstream) or the put failed
    GET    /api/get/K          200 the value (application/octet-stream),
                               404 {"error": "Key not found"}
    GET    /api/exist/K        200 {"exists": true|false}, 500 when the master cannot be asked
    DELETE /api/remove/K       200 {"status": "success"}, 500 {"error": ...}
    DELETE /api/remove_all     200 {"status": "success removed N keys"}
    POST   /api/mount_shm      {"name", "size", "offset"?, "protocol"?, "location"?}
    POST   /api/unmount_shm    {"segment_ids", "grace_period_seconds"?}
    POST   /api/mount          {"size", "protocol"?, "location"?}
    POST   /api/unmount        {"segment_ids", "grace_period_seconds"?}
    POST   /api/unmount_local_disk {"grace_period_seconds"?: 0..3600}
    POST   /api/reconfigure    {"mode": "decode", "path", "size", ...} | {"mode": "prefill"}

Every error is JSON {"error": text} (upstream's texts), plus "code" (the
store's negative return) where the store refused. This store mounts exactly
one segment, its global_segment_size at setup: its mount/unmount calls answer
NOT_SUPPORTED (-1012), which the segment routes report as a 500 with that
code (docs/python.md, "Launchable modules").

SIGINT / SIGTERM stop the server and close the store. Once serving, one line
`mooncake_store_service: serving on port P` goes to stdout (readiness)."""
import argparse
import asyncio
import dataclasses
import functools
import json
import logging
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .mooncake_config import MooncakeConfig, parse_bool
from .store import MooncakeDistributedStore

log = logging.getLogger("mooncake.mooncake_store_service")

NOT_SUPPORTED = -1012
MAX_GRACE_PERIOD_SECONDS = 3600   # bounds a preStop hook's wait (upstream's cap)
MAX_BODY_BYTES = 100 << 20        # upstream's aiohttp client_max_size
SHM_DIR = "/dev/shm/"

_CONFIG_TYPES = {"global_segment_size": "size", "local_buffer_size": "size",
                 "enable_ssd_offload": "bool", "enable_client_http_server": "bool",
                 "client_http_port": "int"}
# what setup gets for a field a (hand-made) config object lacks
_CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(MooncakeConfig)
                    if f.default is not dataclasses.MISSING}


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


def _shm_name_to_path(name):
    """/dev/shm/<name> for a POSIX shm object name ("x" or "/x"), None for
    anything that is not one plain file name (empty, ".", "..", "a/b", not a str)."""
    if not isinstance(name, str):
        return None
    base = name[1:] if name.startswith("/") else name
    if base in ("", ".", "..") or "/" in base or "\0" in base:
        return None
    return SHM_DIR + base


def _unblock_shutdown_signals():
    """Unblocks SIGINT and SIGTERM in this thread (a launcher may have blocked them)."""
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    except (AttributeError, OSError, ValueError):
        pass


def _install_shutdown_signal_handlers(loop, shutdown_event):
    """SIGINT / SIGTERM set shutdown_event: through loop.add_signal_handler,
    else (no support, not the main thread's loop) a plain handler that hands
    the request to the loop thread-safely."""
    def on_signal(signum):
        log.info("signal %s: shutting down", signum)
        shutdown_event.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            continue
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        try:
            signal.signal(sig, lambda signum, _frame: loop.call_soon_threadsafe(on_signal, signum))
        except (ValueError, OSError) as e:
            log.warning("cannot catch signal %s: %s", sig, e)


# ---- replies and request checks ----

class Reply:
    """A handler's answer: the attributes of aiohttp.web.Response that the
    HTTP front and upstream's tests read. `body` is bytes, `text` its UTF-8."""
    __slots__ = ("status", "body", "content_type")

    def __init__(self, status=200, body=b"", content_type="application/json"):
        self.status = status
        self.body = body
        self.content_type = content_type

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")


def _reply(http_status, **fields):
    return Reply(http_status, json.dumps(fields).encode())


def _error(http_status, error, code=None, **extra):
    if code is not None:
        extra["code"] = code
    return _reply(http_status, error=error, **extra)


def _ok(**fields):
    return _reply(200, status="success", **fields)


def _store_ret(result):
    """(ret, segment_ids, result dict) of a mount call: our store and upstream's
    answer a dict {"ret", "segment_ids", ...}; a bare int is read as ret."""
    if isinstance(result, dict):
        return result.get("ret", -1), list(result.get("segment_ids") or []), result
    return int(result), [], {}


def _nonneg_int(v):
    return type(v) is int and v >= 0


async def _read_object(request):
    """(dict, None) or (None, 400 reply) for a body that is not a JSON object."""
    try:
        data = await request.json()
    except Exception:
        return None, _error(400, "Malformed JSON body")
    if not isinstance(data, dict):
        return None, _error(400, "Request body must be a JSON object")
    return data, None


def _segment_ids(data):
    """(ids, None) or (None, 400 reply): one id as a string, or a non-empty list of them."""
    ids = data.get("segment_ids")
    if isinstance(ids, str):
        ids = [ids]
    if not ids:
        return None, _error(400, "Missing segment_ids")
    if not isinstance(ids, list) or not all(isinstance(s, str) and s for s in ids):
        return None, _error(400, "Invalid segment_ids, must be a list of non-empty strings")
    return ids, None


def _grace_period(data):
    """(seconds, None) or (None, 400 reply): an int 0..MAX_GRACE_PERIOD_SECONDS, 0 by default."""
    g = data.get("grace_period_seconds", 0)
    if not _nonneg_int(g) or g > MAX_GRACE_PERIOD_SECONDS:
        return None, _error(400, "Invalid grace_period_seconds, must be a non-negative integer "
                                 "no greater than %d" % MAX_GRACE_PERIOD_SECONDS)
    return g, None


async def _read_unmount(request):
    """(segment ids, grace period, None) of an unmount body, or (None, None, 400 reply)."""
    data, bad = await _read_object(request)
    if bad:
        return None, None, bad
    ids, bad = _segment_ids(data)
    if bad:
        return None, None, bad
    grace, bad = _grace_period(data)
    return ids, grace, bad


def _handler(label):
    """Wraps a handler: an exception (a store gone, a bad value) becomes a 500
    {"error": text}, logged, and never reaches the HTTP front."""
    def wrap(fn):
        @functools.wraps(fn)
        async def run(self, request):
            try:
                return await fn(self, request)
            except Exception as e:
                log.error("%s: %s: %s", label, type(e).__name__, e)
                return _error(500, str(e) or type(e).__name__)
        return run
    return wrap


class MooncakeStoreService:
    """The store, its HTTP server and the Prefill/Decode state (upstream's class name)."""

    def __init__(self, config_path=None, cli_config=None):
        cfg = (MooncakeConfig.from_file(config_path) if config_path
               else MooncakeConfig.load_from_env())
        self.config = _apply_overrides(cfg, cli_config or {})
        self.store = None
        self.httpd = None
        self.port = None
        self.current_mode = "prefill"     # "decode" while mounted_segment_ids serve
        self.mounted_segment_ids = []     # the segments /api/reconfigure mounted
        self.last_mount_info = {}         # path, offset, size, protocol, location of that mount
        self._state_lock = asyncio.Lock()

    # ---- lifecycle ----

    def _setup_args(self):
        c = self.config

        def field(name):
            return getattr(c, name, _CONFIG_DEFAULTS.get(name))
        return {"local_hostname": c.local_hostname, "metadata_server": c.metadata_server,
                "global_segment_size": c.global_segment_size,
                "local_buffer_size": c.local_buffer_size, "protocol": field("protocol"),
                "rdma_devices": field("device_name"),
                "master_server_addr": c.master_server_address,
                "enable_ssd_offload": field("enable_ssd_offload"),
                "ssd_offload_path": field("ssd_offload_path"), "tenant_id": field("tenant_id"),
                "enable_client_http_server": field("enable_client_http_server"),
                "client_http_port": field("client_http_port")}

    async def start_store_service(self, max_wait_time=60.0, shutdown_event=None):
        """Sets the store up, retried once a second for at most max_wait_time
        seconds: True once setup answers 0. False when time runs out or
        shutdown_event (an asyncio.Event) is set, before, during or after an
        attempt; a store set up when the shutdown is seen is closed again."""
        deadline = time.monotonic() + max_wait_time
        attempt = 0

        def stopping():
            return shutdown_event is not None and shutdown_event.is_set()
        await asyncio.sleep(0)  # let a signal already queued land first
        while not stopping():
            attempt += 1
            store = MooncakeDistributedStore()
            try:
                rc = store.setup(self._setup_args())
            except Exception as e:
                rc = "%s: %s" % (type(e).__name__, e)
            if rc == 0:
                # setup blocked the loop: look for a shutdown asked meanwhile
                await asyncio.sleep(0)
                if stopping():
                    _close_quietly(store)
                    self.store = None
                    break
                self.store = store
                log.info("store set up as %s (attempt %d)", self.config.local_hostname, attempt)
                return True
            _close_quietly(store)
            left = deadline - time.monotonic()
            log.warning("store setup answered %s (attempt %d), %.1f s left", rc, attempt,
                        max(left, 0))
            if left <= 0:
                return False
            pause = min(1.0, left)
            if shutdown_event is None:
                await asyncio.sleep(pause)
                continue
            try:
                await asyncio.wait_for(shutdown_event.wait(), pause)
            except asyncio.TimeoutError:
                pass
        log.info("store startup cancelled by a shutdown request")
        return False

    async def start_http_service(self, port=8080, host="0.0.0.0"):
        """Serves the routes on host:port (0: any free port, then in self.port)
        from a background thread; True once listening."""
        svc = self

        class Handler(_Handler):
            service = svc
            loop = asyncio.get_running_loop()

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._http_thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
            name="mc-store-rest", daemon=True)
        self._http_thread.start()
        log.info("REST API on %s:%d", host, self.port)
        return True

    async def stop(self):
        """Stops the HTTP server and closes the store; again, it does nothing."""
        httpd, self.httpd = getattr(self, "httpd", None), None
        if httpd is not None:
            thread = getattr(self, "_http_thread", None)
            if thread is not None and thread.is_alive():
                await asyncio.to_thread(httpd.shutdown)
            httpd.server_close()
        store, self.store = getattr(self, "store", None), None
        if store is not None:
            rc = store.close()
            if rc:
                log.warning("store close returned %s", rc)
            else:
                log.info("store closed")

    # ---- data routes ----

    @_handler("PUT")
    async def handle_put(self, request):
        data, bad = await _read_object(request)
        if bad:
            return bad
        key, value = data.get("key"), data.get("value")
        if not key or not isinstance(key, str):
            return _error(400, "Missing key or value")
        if not isinstance(value, str):
            # a 500 for a missing value is upstream's answer, pinned by its test
            return _error(500, "Missing key or value: value must be a string")
        rc = self.store.put(key, value.encode())
        if rc != 0:
            return _error(500, "PUT operation failed", rc)
        return _ok()

    def _exists(self, key):
        """None when the key exists, else the 404 / 500 reply."""
        ex = self.store.is_exist(key)
        if ex < 0:
            return _error(500, "Exist check failed", int(ex))
        if not ex:
            return _error(404, "Key not found")
        return None

    @_handler("GET")
    async def handle_get(self, request):
        # One round trip on a hit. An empty answer is a miss or an empty
        # value: the master tells which; when it says the key exists, the
        # value is read once more, since a put may have landed between the
        # two calls (and a remove between the next two).
        key = request.match_info["key"]
        for _ in range(2):
            value = self.store.get(key)
            if value is None:
                return _error(500, "GET operation failed")
            if value:
                break
            missing = self._exists(key)
            if missing:
                return missing
        return Reply(200, bytes(value), "application/octet-stream")

    @_handler("EXIST")
    async def handle_exist(self, request):
        ex = self.store.is_exist(request.match_info["key"])
        if ex < 0:
            return _error(500, "Exist check failed", int(ex))
        return _reply(200, exists=ex > 0)

    @_handler("REMOVE")
    async def handle_remove(self, request):
        rc = self.store.remove(request.match_info["key"])
        if rc != 0:
            return _error(500, "Remove operation failed", rc)
        return _ok()

    @_handler("REMOVE_ALL")
    async def handle_remove_all(self, request):
        n = self.store.remove_all()
        if n < 0:
            return _error(500, "RemoveAll operation failed", n)
        return _reply(200, status="success removed %d keys" % n)

    # ---- segment routes ----

    def _mount_args(self, data):
        """(offset, protocol, location, None) or (.., 400 reply) from a mount body."""
        offset = data.get("offset", 0)
        protocol = data.get("protocol", self.config.protocol)
        location = data.get("location", "")
        if not _nonneg_int(offset):
            return None, None, None, _error(400, "Invalid offset, must be a non-negative integer")
        if not isinstance(protocol, str) or not isinstance(location, str):
            return None, None, None, _error(400, "Invalid protocol or location, must be strings")
        return offset, protocol, location, None

    def _unmount_each(self, ids, grace=0):
        """Unmounts ids one at a time (a batch answers only its first error,
        hiding which ids went): (ids that failed, first failing code)."""
        failed, code = [], None
        for sid in ids:
            rc = self.store.unmount_segment([sid], grace)
            if rc != 0:
                failed.append(sid)
                code = rc if code is None else code
        return failed, code

    @_handler("MOUNT_SHM")
    async def handle_mount_shm(self, request):
        """Mounts a /dev/shm object as a segment of this store (no mode change)."""
        data, bad = await _read_object(request)
        if bad:
            return bad
        path, size = _shm_name_to_path(data.get("name")), data.get("size")
        if path is None or type(size) is not int or size <= 0:
            return _error(400, "Missing or invalid name or size")
        offset, protocol, location, bad = self._mount_args(data)
        if bad:
            return bad
        rc, ids, _ = _store_ret(self.store.mount_segment(path, size, offset, protocol, location))
        if rc != 0:
            return _error(500, "Mount failed, ret=%s" % rc, rc)
        return _ok(segment_ids=ids)

    @_handler("UNMOUNT_SHM")
    async def handle_unmount_shm(self, request):
        """Unmounts segments id by id; the ones that went leave the decode set
        (an emptied set means prefill); 500 lists the ones that did not."""
        ids, grace, bad = await _read_unmount(request)
        if bad:
            return bad
        async with self._state_lock:
            failed, code = self._unmount_each(ids, grace)
            for sid in ids:
                if sid not in failed and sid in self.mounted_segment_ids:
                    self.mounted_segment_ids.remove(sid)
            if not self.mounted_segment_ids:
                self.current_mode = "prefill"
        if failed:
            return _error(500, "Unmount failed for one or more segments", code,
                          failed_segment_ids=failed)
        return _ok()

    @_handler("MOUNT")
    async def handle_mount(self, request):
        """Has the store allocate `size` bytes and mount them as a segment."""
        data, bad = await _read_object(request)
        if bad:
            return bad
        size = data.get("size")
        if type(size) is not int or size <= 0:
            return _error(400, "Invalid size, must be a positive integer")
        _, protocol, location, bad = self._mount_args(data)
        if bad:
            return bad
        rc, ids, res = _store_ret(self.store.allocate_and_mount_segment(size, protocol, location))
        if rc != 0:
            return _error(500, "Allocate and mount failed, ret=%s" % rc, rc)
        return _ok(segment_ids=ids, allocated_size=res.get("allocated_size", size))

    @_handler("UNMOUNT")
    async def handle_unmount(self, request):
        """Unmounts segments /api/mount allocated and frees their memory."""
        ids, grace, bad = await _read_unmount(request)
        if bad:
            return bad
        rc = self.store.unmount_and_free_segment(ids, grace)
        if rc != 0:
            return _error(500, "Unmount and free failed, ret=%s" % rc, rc)
        return _ok()

    @_handler("UNMOUNT_LOCAL_DISK")
    async def handle_unmount_local_disk(self, request):
        """Withdraws this store's SSD tier (a preStop hook): the store waits
        grace_period_seconds for reads in flight, so in a worker thread."""
        data, bad = await _read_object(request)
        if bad:
            return bad
        grace, bad = _grace_period(data)
        if bad:
            return bad
        rc = await asyncio.to_thread(self.store.unmount_local_disk_segment, grace)
        if rc != 0:
            return _error(500, "Unmount local disk failed, ret=%s" % rc, rc)
        return _ok()

    @_handler("RECONFIGURE")
    async def handle_reconfigure(self, request):
        """Switches the node between prefill (no extra segment) and decode (a
        segment mounted from `path`). A decode remount is make-before-break:
        the new segment is mounted first and the previous ones retired only
        then, id by id, so a failed mount leaves the node serving as before."""
        data, bad = await _read_object(request)
        if bad:
            return bad
        mode = data.get("mode", "")
        mode = mode.lower() if isinstance(mode, str) else ""
        if mode == "decode":
            return await self._reconfigure_decode(data)
        if mode == "prefill":
            return await self._reconfigure_prefill()
        return _error(400, "Invalid mode. Use 'decode' or 'prefill'")

    async def _reconfigure_decode(self, data):
        path, size = data.get("path"), data.get("size")
        if not path or size is None:
            return _error(400, "Missing path or size for decode mode")
        if not isinstance(path, str) or type(size) is not int or size <= 0:
            return _error(400, "Invalid path or size: a string and a positive integer")
        offset, protocol, location, bad = self._mount_args(data)
        if bad:
            return bad
        async with self._state_lock:
            previous = list(self.mounted_segment_ids)
            rc, new_ids, _ = _store_ret(
                self.store.mount_segment(path, size, offset, protocol, location))
            if rc != 0:
                if previous:
                    log.warning("reconfigure: mounting %s answered %s; the previous decode "
                                "segments keep serving", path, rc)
                    return _error(500, "Mount failed, ret=%s; keeping previous decode "
                                       "segments" % rc, rc, mode=self.current_mode)
                self.current_mode = "prefill"
                self.mounted_segment_ids.clear()
                self.last_mount_info.clear()
                return _error(500, "Mount failed, ret=%s; rolled back to prefill" % rc, rc,
                              mode=self.current_mode)
            # the new segment serves: retire the old ones, keeping those that
            # would not go so that a later prefill switch tries them again
            stuck, code = self._unmount_each(previous)
            if stuck:
                log.warning("reconfigure: unmounting previous segments %s answered %s; "
                            "still tracked", stuck, code)
            self.mounted_segment_ids = new_ids + stuck
            self.current_mode = "decode"
            self.last_mount_info = {"path": path, "offset": offset, "size": size,
                                    "protocol": protocol, "location": location}
            return _ok(mode=self.current_mode, segment_ids=list(self.mounted_segment_ids))

    async def _reconfigure_prefill(self):
        async with self._state_lock:
            if self.mounted_segment_ids:
                stuck, code = self._unmount_each(self.mounted_segment_ids)
                self.mounted_segment_ids = stuck
                if stuck:
                    return _error(500, "Unmount failed, ret=%s" % code, code,
                                  mode=self.current_mode, failed_segment_ids=stuck)
            self.current_mode = "prefill"
            self.last_mount_info.clear()
            return _ok(mode=self.current_mode)


def _close_quietly(store):
    close = getattr(store, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception as e:
        log.debug("closing a store that did not set up: %s", e)


# ---- the HTTP front ----

class _HttpRequest:
    """What a handler reads of a request, as aiohttp's: json() and match_info."""
    __slots__ = ("_body", "match_info")

    def __init__(self, body, match_info):
        self._body = body
        self.match_info = match_info

    async def json(self):
        return json.loads(self._body.decode("utf-8"))


def _run_inline(coro):
    """Runs a handler coroutine that never suspends to its end, in this thread."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("handler suspended outside the service loop")


# (method, path) -> handler; (method, prefix) -> handler of the key after it
_EXACT = {("PUT", "/api/put"): "handle_put", ("DELETE", "/api/remove_all"): "handle_remove_all",
          ("POST", "/api/reconfigure"): "handle_reconfigure",
          ("POST", "/api/mount_shm"): "handle_mount_shm",
          ("POST", "/api/unmount_shm"): "handle_unmount_shm",
          ("POST", "/api/mount"): "handle_mount", ("POST", "/api/unmount"): "handle_unmount",
          ("POST", "/api/unmount_local_disk"): "handle_unmount_local_disk"}
_KEYED = (("GET", "/api/get/", "handle_get"), ("GET", "/api/exist/", "handle_exist"),
          ("DELETE", "/api/remove/", "handle_remove"))


class _Handler(BaseHTTPRequestHandler):
    service = None
    loop = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, reply):
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type or "application/octet-stream")
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def _dispatch(self, method):
        path = urllib.parse.urlsplit(self.path).path
        name, match = _EXACT.get((method, path)), {}
        if name is None:
            for m, prefix, handler in _KEYED:
                if m == method and path.startswith(prefix) and len(path) > len(prefix):
                    name, match = handler, {"key": urllib.parse.unquote(path[len(prefix):])}
                    break
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BODY_BYTES:
            self.close_connection = True
            return self._send(_error(413 if n > 0 else 400, "Bad or too large Content-Length"))
        body = self.rfile.read(n) if n else b""
        if name is None:
            return self._send(_error(404, "Not found"))
        coro = getattr(self.service, name)(_HttpRequest(body, match))
        try:
            if method == "POST":  # shares the mode state: on the service's loop
                reply = asyncio.run_coroutine_threadsafe(coro, self.loop).result()
            else:
                reply = _run_inline(coro)
        except Exception as e:  # the loop is gone (shutting down)
            coro.close()
            log.warning("%s %s: %s", method, path, e)
            reply = _error(503, "service is shutting down")
        self._send(reply)

    def do_PUT(self):
        self._dispatch("PUT")

    def do_GET(self):
        self._dispatch("GET")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_POST(self):
        self._dispatch("POST")


# ---- command line ----

def parse_arguments(argv=None):
    p = argparse.ArgumentParser(description="Mooncake store client with a REST API")
    p.add_argument("--config", help="MooncakeConfig JSON file (else MOONCAKE_* variables)")
    p.add_argument("-D", "--define", action="append", default=[],
                   help="override one config field: -Dlocal_hostname=host")
    p.add_argument("--port", type=int, default=8080, help="HTTP API port (8080)")
    p.add_argument("--max-wait-time", type=float, default=60,
                   help="seconds to keep retrying the store's setup (60)")
    return p.parse_args(argv)


def _parse_defines(items):
    defines = {}
    for item in items or ():
        k, sep, v = item.partition("=")
        if sep:
            defines[k] = v
        else:
            log.warning("-D %s: not key=value, ignored", item)
    return defines


async def main(argv=None):
    """The service until SIGINT / SIGTERM: 0, or 1 when the store never set up."""
    args = parse_arguments(argv)
    svc = MooncakeStoreService(args.config, _parse_defines(args.define))
    shutdown = asyncio.Event()
    _install_shutdown_signal_handlers(asyncio.get_running_loop(), shutdown)
    _unblock_shutdown_signals()
    try:
        if not await svc.start_store_service(args.max_wait_time, shutdown_event=shutdown):
            if shutdown.is_set():
                return 0
            log.error("store startup failed within %.1f s", args.max_wait_time)
            return 1
        await asyncio.sleep(0)
        if shutdown.is_set():
            return 0
        await svc.start_http_service(args.port)
        print("mooncake_store_service: serving on port %d" % svc.port, flush=True)
        await shutdown.wait()
    finally:
        await svc.stop()
    return 0


def sync_main():
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sys.exit(asyncio.run(main()))


if __name__ == "__main__":
    sync_main()

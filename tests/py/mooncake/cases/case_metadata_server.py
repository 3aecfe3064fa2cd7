"""mooncake.http_metadata_server.KVBootstrapServer in this process: the store
it answers over HTTP is the one _handle_metadata and .store see."""
import asyncio
import socket
import urllib.error
import urllib.request

from mooncake.http_metadata_server import KVBootstrapServer, KVPoll


class Req:
    def __init__(self, method, key=None, body=b""):
        self.method = method
        self.query = {} if key is None else {"key": key}
        self._body = body

    async def read(self):
        return self._body


def http(port, method, key, body=None):
    url = "http://127.0.0.1:%d/metadata?key=%s" % (port, key)
    r = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type")


def case_http_and_in_process_share_one_store():
    s = KVBootstrapServer(port=0, host="127.0.0.1")
    assert s.poll() == KVPoll.Failed  # not running yet
    assert s.run() is not None and s.port > 0
    assert s.poll() == KVPoll.Success
    value = bytes(range(256)) * 17
    assert http(s.port, "PUT", "mooncake/ram/seg", value)[0] == 200
    got = asyncio.run(s._handle_metadata(Req("GET", "  mooncake/ram/seg ")))
    assert (got.status, got.body, got.content_type) == (200, value, "application/json")
    assert s.store["mooncake/ram/seg"] == value and "mooncake/ram/seg" in s.store
    assert " mooncake/ram/seg" not in s.store and len(s.store) == 1
    # written in-process, read over HTTP
    put = asyncio.run(s._handle_metadata(Req("PUT", "mooncake/rpc_meta/a", b"one")))
    assert put.status == 200
    assert http(s.port, "GET", "mooncake/rpc_meta/a") == (200, b"one", "application/json")
    # the duplicate rpc_meta rule holds on both paths
    assert http(s.port, "PUT", "mooncake/rpc_meta/a", b"two")[0] == 400
    dup = asyncio.run(s._handle_metadata(Req("PUT", "mooncake/rpc_meta/a", b"two")))
    assert dup.status == 400 and s.store["mooncake/rpc_meta/a"] == b"one"
    for method in ("GET", "PUT", "DELETE"):
        assert asyncio.run(s._handle_metadata(Req(method))).status == 400
        assert asyncio.run(s._handle_metadata(Req(method, "   "))).status == 400
    assert asyncio.run(s._handle_metadata(Req("POST", "k"))).status == 405
    assert asyncio.run(s._handle_metadata(Req("DELETE", "mooncake/ram/seg"))).status == 200
    assert http(s.port, "GET", "mooncake/ram/seg")[0] == 404
    assert sorted(s.store) == ["mooncake/rpc_meta/a"]
    s.close()
    assert s.poll() == KVPoll.Failed


def case_bind_failure_is_failed():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    s = KVBootstrapServer(port=taken.getsockname()[1], host="127.0.0.1")
    assert s.run() is None
    assert s.poll() == KVPoll.Failed
    s.close()
    taken.close()

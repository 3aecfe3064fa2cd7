"""mooncake.mooncake_store_service's handlers and state, driven through its
real HTTP front (start_http_service on a free port) with a scripted store in
place of MooncakeDistributedStore: the segment calls our store answers
NOT_SUPPORTED for, the Prefill/Decode switch, error mapping, startup retry and
shutdown. Run by test_mc_store_service.py in a child python."""
import asyncio
import json
import os
import signal
import tempfile
import urllib.error
import urllib.request
from unittest import mock

import mooncake.mooncake_store_service as mss
from mooncake.mooncake_store_service import MooncakeStoreService, _shm_name_to_path

A, B, C = ("seg-%d" % i for i in range(3))


class ScriptedStore:
    """Answers as told and writes down every segment call as (name, args...)."""

    def __init__(self):
        self.calls = []
        self.kv = {}
        self.next_ids = [A]        # ids the next mount_segment answers
        self.mount_rc = 0
        self.refuse = set()        # ids whose unmount_segment answers -1
        self.local_disk_rc = 0
        self.exist_rc = None       # overrides is_exist when set
        self.closed = 0

    def mount_segment(self, path, size, offset, protocol, location):
        self.calls.append(("mount", path, size, offset, protocol, location))
        return {"ret": self.mount_rc, "segment_ids": [] if self.mount_rc else list(self.next_ids)}

    def unmount_segment(self, ids, grace=0):
        self.calls.append(("unmount", list(ids), grace))
        return -1 if set(ids) & self.refuse else 0

    def allocate_and_mount_segment(self, size, protocol, location):
        self.calls.append(("alloc", size, protocol, location))
        return {"ret": 0, "segment_ids": [B], "allocated_size": size + 100}

    def unmount_and_free_segment(self, ids, grace=0):
        self.calls.append(("free", list(ids), grace))
        return 0

    def unmount_local_disk_segment(self, grace=0):
        self.calls.append(("local_disk", grace))
        return self.local_disk_rc

    def put(self, key, value):
        self.kv.setdefault(key, value)
        return 0

    def get(self, key):
        if key == "boom":
            raise RuntimeError("the store fell over")
        if key == "none":
            return None
        return self.kv.get(key, b"")

    def is_exist(self, key):
        return self.exist_rc if self.exist_rc is not None else int(key in self.kv)

    def remove(self, key):
        return 0 if self.kv.pop(key, None) is not None else -704

    def remove_all(self):
        n = len(self.kv)
        self.kv.clear()
        return n

    def close(self):
        self.closed += 1
        return 0


def make_service(store=None):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.json")
        with open(path, "w") as f:
            json.dump({"local_hostname": "127.0.0.1", "metadata_server": "P2PHANDSHAKE",
                       "master_server_address": "127.0.0.1:1", "protocol": "TCP"}, f)
        svc = MooncakeStoreService(path, {"tenant_id": "t-cli"})
    svc.store = store
    return svc


def call(port, method, path, body=None):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data,
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            st = r.status
    except urllib.error.HTTPError as e:
        raw, st = e.read(), e.code
    try:
        return st, json.loads(raw)
    except ValueError:
        return st, raw


def over_http(store, fn):
    """fn(port, service) in a thread while the service's loop serves HTTP."""
    async def go():
        svc = make_service(store)
        await svc.start_http_service(0, "127.0.0.1")
        try:
            await asyncio.to_thread(fn, svc.port, svc)
        finally:
            await svc.stop()
    asyncio.run(go())


def case_shm_names():
    for name in ("seg", "/seg", "a.b", "..x"):
        assert _shm_name_to_path(name) == "/dev/shm/" + name.lstrip("/"), name
    for bad in ("", "/", ".", "..", "/.", "/..", "a/b", "../etc", "//x", None, 7, b"x"):
        assert _shm_name_to_path(bad) is None, bad


def case_config_and_setup_args():
    svc = make_service()
    args = svc._setup_args()
    assert args["tenant_id"] == "t-cli" and args["protocol"] == "tcp", args
    assert args["master_server_addr"] == "127.0.0.1:1" and "rdma_devices" in args
    assert (svc.current_mode, svc.mounted_segment_ids, svc.last_mount_info) == ("prefill", [], {})


def case_data_routes():
    s = ScriptedStore()

    def go(port, svc):
        ok = {"status": "success"}
        assert call(port, "PUT", "/api/put", {"key": "k", "value": "v1"}) == (200, ok)
        assert call(port, "GET", "/api/get/k") == (200, b"v1")
        assert call(port, "GET", "/api/exist/k") == (200, {"exists": True})
        assert call(port, "GET", "/api/get/missing") == (404, {"error": "Key not found"})
        assert call(port, "PUT", "/api/put", {"value": "v"})[0] == 400
        assert call(port, "PUT", "/api/put", {"key": "", "value": "v"})[0] == 400
        assert call(port, "PUT", "/api/put", {"key": "x"})[0] == 500  # upstream's answer
        assert call(port, "PUT", "/api/put", b"not json")[0] == 400
        st, body = call(port, "GET", "/api/get/none")
        assert st == 500 and body["error"] == "GET operation failed", body
        st, body = call(port, "GET", "/api/get/boom")
        assert st == 500 and "fell over" in body["error"], body
        s.exist_rc = -1
        assert call(port, "GET", "/api/exist/k") == \
            (500, {"error": "Exist check failed", "code": -1})
        assert call(port, "GET", "/api/get/missing")[0] == 500
        s.exist_rc = None
        assert call(port, "DELETE", "/api/remove/k") == (200, {"status": "success"})
        st, body = call(port, "DELETE", "/api/remove/k")
        assert st == 500 and body["code"] == -704, body
        for k in "abc":
            call(port, "PUT", "/api/put", {"key": k, "value": k})
        assert call(port, "DELETE", "/api/remove_all") == \
            (200, {"status": "success removed 3 keys"})
        assert call(port, "GET", "/api/nothing")[0] == 404
        assert call(port, "POST", "/api/put", {})[0] == 404
    over_http(s, go)
    assert s.closed == 1  # stop closed it


def case_get_empty_value_reads_again():
    """An empty get answer with the key present is read again: a put racing
    the first read is seen, and a key gone by the second check is a 404."""
    class Racy(ScriptedStore):
        def __init__(self, answers, exists):
            super().__init__()
            self.answers, self.exists = list(answers), list(exists)

        def get(self, key):
            return self.answers.pop(0)

        def is_exist(self, key):
            return self.exists.pop(0)

    def run(answers, exists):
        out = []
        over_http(Racy(answers, exists),
                  lambda port, svc: out.append(call(port, "GET", "/api/get/k")))
        return out[0]
    assert run([b"", b"late"], [1]) == (200, b"late")
    assert run([b"", b""], [1, 0]) == (404, {"error": "Key not found"})
    assert run([b"", b""], [1, 1]) == (200, b"")


def case_segment_routes():
    s = ScriptedStore()

    def go(port, svc):
        st, body = call(port, "POST", "/api/mount_shm", {"name": "/seg", "size": 4096, "offset": 8,
                                                          "location": "cpu:0"})
        assert (st, body) == (200, {"status": "success", "segment_ids": [A]}), body
        assert s.calls[-1] == ("mount", "/dev/shm/seg", 4096, 8, "tcp", "cpu:0")
        for bad in ({"name": "seg"}, {"name": "a/b", "size": 1}, {"name": "..", "size": 1},
                    {"name": "seg", "size": "1"}, {"name": "seg", "size": 0}):
            st, body = call(port, "POST", "/api/mount_shm", bad)
            assert st == 400 and "name or size" in body["error"], (bad, body)
        bad_offset = {"name": "s", "size": 1, "offset": -1}
        assert call(port, "POST", "/api/mount_shm", bad_offset)[0] == 400
        s.mount_rc = -1012
        st, body = call(port, "POST", "/api/mount_shm", {"name": "seg", "size": 1})
        assert st == 500 and body["code"] == -1012 and "Mount failed" in body["error"], body
        s.mount_rc = 0

        st, body = call(port, "POST", "/api/unmount_shm",
                        {"segment_ids": A, "grace_period_seconds": 2})
        assert (st, body) == (200, {"status": "success"})
        assert s.calls[-1] == ("unmount", [A], 2)
        for bad in ({}, {"segment_ids": []}, {"segment_ids": [1]}):
            assert call(port, "POST", "/api/unmount_shm", bad)[0] == 400, bad
        assert call(port, "POST", "/api/unmount_shm",
                    {"segment_ids": [A], "grace_period_seconds": -1})[0] == 400

        st, body = call(port, "POST", "/api/mount", {"size": 10, "protocol": "tcp"})
        assert (st, body) == (200, {"status": "success", "segment_ids": [B], "allocated_size": 110})
        for size in (0, -1, 1.5, "10", True, None):
            st, body = call(port, "POST", "/api/mount", {"size": size})
            assert st == 400 and "Invalid size" in body["error"], (size, body)
        assert call(port, "POST", "/api/unmount",
                    {"segment_ids": [B], "grace_period_seconds": 5})[0] == 200
        assert s.calls[-1] == ("free", [B], 5)
        assert call(port, "POST", "/api/unmount", {"segment_ids": []})[0] == 400

        assert call(port, "POST", "/api/unmount_local_disk", {})[0] == 200
        assert call(port, "POST", "/api/unmount_local_disk",
                    {"grace_period_seconds": 3600})[0] == 200
        assert s.calls[-2:] == [("local_disk", 0), ("local_disk", 3600)]
        n = len(s.calls)
        for bad in (b"{", b"[]", {"grace_period_seconds": True}, {"grace_period_seconds": "1"},
                    {"grace_period_seconds": 0.5}, {"grace_period_seconds": 3601}):
            assert call(port, "POST", "/api/unmount_local_disk", bad)[0] == 400, bad
        assert len(s.calls) == n  # none reached the store
        s.local_disk_rc = -1012
        st, body = call(port, "POST", "/api/unmount_local_disk", {})
        assert st == 500 and body["code"] == -1012, body
    over_http(s, go)


def case_unmount_shm_partial():
    s = ScriptedStore()
    s.refuse = {B}

    def go(port, svc):
        svc.current_mode, svc.mounted_segment_ids = "decode", [A, B]
        st, body = call(port, "POST", "/api/unmount_shm", {"segment_ids": [A, B]})
        assert st == 500 and body["failed_segment_ids"] == [B], body
        assert s.calls == [("unmount", [A], 0), ("unmount", [B], 0)]  # one id at a time
        assert (svc.current_mode, svc.mounted_segment_ids) == ("decode", [B])
        s.refuse = set()
        assert call(port, "POST", "/api/unmount_shm", {"segment_ids": [B]})[0] == 200
        assert (svc.current_mode, svc.mounted_segment_ids) == ("prefill", [])
    over_http(s, go)


def case_reconfigure():
    s = ScriptedStore()

    def go(port, svc):
        decode = {"mode": "Decode", "path": "/dev/shm/one", "size": 4096}
        # a first mount that fails: nothing to keep, the node stays prefill
        s.mount_rc = -1
        st, body = call(port, "POST", "/api/reconfigure", decode)
        assert st == 500 and body["mode"] == "prefill" and "rolled back to prefill" in body["error"]
        s.mount_rc = 0
        st, body = call(port, "POST", "/api/reconfigure", decode)
        assert (st, body) == (200, {"status": "success", "mode": "decode", "segment_ids": [A]})
        assert svc.last_mount_info == {"path": "/dev/shm/one", "offset": 0, "size": 4096,
                                       "protocol": "tcp", "location": ""}
        # a remount that fails keeps the serving segment, whatever the path
        s.mount_rc = -1
        for path in ("/dev/shm/two", "/dev/shm/one"):
            st, body = call(port, "POST", "/api/reconfigure", dict(decode, path=path))
            assert st == 500 and body["mode"] == "decode", body
            assert "keeping previous decode segments" in body["error"]
            assert svc.mounted_segment_ids == [A] and svc.last_mount_info["path"] == "/dev/shm/one"
        assert not [c for c in s.calls if c[0] == "unmount"]
        # make-before-break: mount B, then retire A; C's retirement is refused
        s.mount_rc, s.next_ids = 0, [B]
        svc.mounted_segment_ids = [A, C]
        s.refuse = {C}
        del s.calls[:]
        st, body = call(port, "POST", "/api/reconfigure", dict(decode, path="/dev/shm/two"))
        assert st == 200 and body["segment_ids"] == [B, C], body
        assert [c[0] for c in s.calls] == ["mount", "unmount", "unmount"], s.calls
        assert s.calls[1:] == [("unmount", [A], 0), ("unmount", [C], 0)]
        assert svc.last_mount_info["path"] == "/dev/shm/two"
        # prefill: C still refuses, then goes
        st, body = call(port, "POST", "/api/reconfigure", {"mode": "prefill"})
        assert st == 500 and "Unmount failed" in body["error"] and body["failed_segment_ids"] == [C]
        assert svc.current_mode == "decode" and svc.mounted_segment_ids == [C]
        s.refuse = set()
        assert call(port, "POST", "/api/reconfigure", {"mode": "prefill"}) == \
            (200, {"status": "success", "mode": "prefill"})
        assert (svc.current_mode, svc.mounted_segment_ids, svc.last_mount_info) == \
            ("prefill", [], {})
        for bad in ({}, {"mode": "both"}, {"mode": 3}):
            st, body = call(port, "POST", "/api/reconfigure", bad)
            assert st == 400 and "Invalid mode" in body["error"], bad
        for bad in ({"mode": "decode", "size": 1}, {"mode": "decode", "path": "/p"}):
            st, body = call(port, "POST", "/api/reconfigure", bad)
            assert st == 400 and "Missing path or size" in body["error"], bad
        assert call(port, "POST", "/api/reconfigure",
                    {"mode": "decode", "path": "/p", "size": -4})[0] == 400
    over_http(s, go)


def case_startup_retry_and_shutdown():
    svc = make_service()
    made = []

    class Flaky(ScriptedStore):
        def setup(self, args):
            made.append(self)
            if len(made) == 1:
                raise RuntimeError("no master yet")
            return -1 if len(made) == 2 else 0

    with mock.patch.object(mss, "MooncakeDistributedStore", Flaky):
        assert asyncio.run(svc.start_store_service(30)) is True  # two 1 s pauses
    assert len(made) == 3 and svc.store is made[2] and [m.closed for m in made] == [1, 1, 0]

    # a shutdown asked while setup ran: the set-up store is closed again
    class Signalled(ScriptedStore):
        def setup(self, args):
            made.append(self)
            asyncio.get_running_loop().call_soon(ev.set)
            return 0

    async def during():
        return await svc.start_store_service(30, shutdown_event=ev)
    made.clear()
    svc.store = None
    with mock.patch.object(mss, "MooncakeDistributedStore", Signalled):
        ev = asyncio.Event()
        assert asyncio.run(during()) is False
    assert svc.store is None and made[0].closed == 1

    # time runs out
    class Never(ScriptedStore):
        def setup(self, args):
            return -1
    with mock.patch.object(mss, "MooncakeDistributedStore", Never):
        assert asyncio.run(svc.start_store_service(0.3)) is False

    # stop: a non-zero close is logged, a second stop does nothing
    store = mock.Mock()
    store.close.return_value = 5
    svc.store = store
    with mock.patch.object(mss.log, "warning") as warn:
        asyncio.run(svc.stop())
        asyncio.run(svc.stop())
    store.close.assert_called_once_with()
    assert "close returned" in warn.call_args[0][0] and 5 in warn.call_args[0]


def case_signal_handlers():
    async def go():
        ev = asyncio.Event()
        mss._install_shutdown_signal_handlers(asyncio.get_running_loop(), ev)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(ev.wait(), 5)
        return True
    assert asyncio.run(go())

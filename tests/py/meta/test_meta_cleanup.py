"""--enable_metadata_cleanup_on_timeout: when a store dies (kill -9) and the
master expires it, the master deletes its transfer-engine records
(mooncake/ram/<name>, mooncake/rpc_meta/<name>) from the cluster's metadata
store: etcd (named by MOONCAKE_TE_META_DATA_SERVER) and the master's embedded
http server. Without the flag the records stay. Before: the flag was accepted
and ignored, so the records always stayed."""
import os
import signal
import time
import urllib.error
import urllib.request

import pytest

from mc_fixtures import SAN_RE, Master, StandaloneClient
from waits import until  # noqa: E402


def store(tmp, master, meta):
    """A mooncake_client store on master with its TE records on meta."""
    class Meta:
        pass
    m = Meta()
    m.rpc, m.meta = master.rpc, meta
    return StandaloneClient(tmp, m)


def segments(master):
    with urllib.request.urlopen("http://%s/get_all_segments" % master.admin, timeout=3) as r:
        return r.read().decode().split()


def http_has(meta_url, key):
    try:
        with urllib.request.urlopen("%s?key=%s" % (meta_url, key), timeout=3):
            return True
    except urllib.error.HTTPError as e:
        return e.code != 404


@pytest.mark.parametrize("cleanup", [True, False])
def test_expired_store_records_deleted_on_etcd(tmp_path, etcd, monkeypatch, cleanup):
    monkeypatch.setenv("MOONCAKE_TE_META_DATA_SERVER", etcd.conn())
    flags = ["--client_ttl=2"] + (["--enable_metadata_cleanup_on_timeout=true"] if cleanup else [])
    m = Master(tmp_path, extra=flags)
    try:
        s = store(tmp_path, m, etcd.conn())
        name = s.name
        keys = ["mooncake/ram/" + name, "mooncake/rpc_meta/" + name]
        assert until(lambda: all(k in etcd.keys("mooncake/") for k in keys)), etcd.keys("mooncake/")
        os.kill(s.p.pid, signal.SIGKILL)
        s.p.wait()
        if cleanup:
            assert until(lambda: not any(k in etcd.keys("mooncake/") for k in keys), 15), \
                etcd.keys("mooncake/")
        else:
            # once the master has expired it (its segment is gone), the records are still there
            assert until(lambda: name not in segments(m), 15)
            assert all(k in etcd.keys("mooncake/") for k in keys)
    finally:
        m.stop()
    assert not SAN_RE.search(m.stderr()), m.stderr()[-3000:]


def test_expired_store_records_deleted_on_embedded_http(tmp_path):
    m = Master(tmp_path, extra=["--client_ttl=2", "--enable_metadata_cleanup_on_timeout=true"])
    try:
        s = StandaloneClient(tmp_path, m)
        key = "mooncake/ram/" + s.name
        assert until(lambda: http_has(m.meta, key))
        os.kill(s.p.pid, signal.SIGKILL)
        s.p.wait()
        assert until(lambda: not http_has(m.meta, key), 15)
        assert not http_has(m.meta, "mooncake/rpc_meta/" + s.name)
    finally:
        m.stop()
    assert not SAN_RE.search(m.stderr()), m.stderr()[-3000:]

"""Child process of test_ops_metrics.py (needs the extension's environment):
a store set up with enable_client_http_server serves its own /metrics; the
counters match what this process did, byte for byte."""
import json
import os
import re
import sys
import urllib.request

from mooncake.store import MooncakeDistributedStore


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        assert "version=0.0.4" in r.headers["Content-Type"]
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def main():
    rpc, meta = os.environ["MC_TEST_RPC"], os.environ["MC_TEST_META"]
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", meta, 32 << 20, 16 << 20, "tcp", "", rpc,
                 enable_client_http_server=True, client_http_port=0)
    assert rc == 0, rc
    port = s.client_http_port()
    assert port > 0
    vals = [os.urandom(1000 * (i + 1)) for i in range(3)]
    for i, v in enumerate(vals):
        assert s.put("cm/%d" % i, v) == 0
    for i, v in enumerate(vals):
        assert s.get("cm/%d" % i) == v
    assert s.get("cm/missing") in (b"", None)
    m = scrape(port)
    name = s.get_hostname()
    lab = 'store="%s"' % name

    def g(metric, op=None):
        return m["%s{%s%s}" % (metric, lab, ',op="%s"' % op if op else "")]
    assert g("mooncake_client_keys_ok_total", "put") == 3
    assert g("mooncake_client_bytes_total", "put") == sum(map(len, vals))
    assert g("mooncake_client_bytes_total", "get") == sum(map(len, vals))
    assert g("mooncake_client_get_misses_total") == 1
    assert g("mooncake_client_errors_total", "get") == 0
    # replicas land on this store's segment (copied: a local hit) or on the
    # pool's other one (read over the TE); every byte came one way or the other
    hits = g("mooncake_client_local_hits_total")
    local = g("mooncake_client_local_copy_bytes_total", "get")
    te = g("mooncake_client_transfer_bytes_total", "get")
    assert 0 <= hits <= 3 and local + te == sum(map(len, vals)), (hits, local, te)
    assert (hits == 0) == (local == 0)
    assert g("mooncake_client_op_duration_seconds_count", "put") == 3
    assert g("mooncake_client_op_duration_seconds_count", "get") == 4
    with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=10) as r:
        assert json.loads(r.read())["status"] == "ok"
    assert s.close() == 0
    print("OK", port)


if __name__ == "__main__":
    main()
    sys.stdout.flush()

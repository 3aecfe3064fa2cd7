"""The master's admin port as an operator meets it: GET / and /api list the
endpoints, state-changing endpoints need the admin key (constant-time compare
in C; here: missing, wrong and right keys, both headers, the env var), and
/metrics follows Prometheus conventions with latency histograms, build info
and uptime, keeping upstream's names. Only the master binary is needed."""
import json
import os
import re
import sys
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "mooncake"))
from mc_fixtures import SAN_RE, Master  # noqa: E402


@pytest.fixture
def master(tmp_path, monkeypatch):
    started = []

    def start(flags=(), env=None):
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        m = Master(tmp_path, extra=["--metrics_host", "127.0.0.1"] + list(flags))
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()
        assert not SAN_RE.search(m.stderr()), m.stderr()[-4000:]


def req(m, path, method="GET", headers=None):
    r = urllib.request.Request("http://%s%s" % (m.admin, path), method=method,
                               headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, resp.read().decode(), resp.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def test_root_and_api_list_endpoints(master):
    m = master()
    st, body, h = req(m, "/")
    assert st == 200 and h["Content-Type"].startswith("text/plain")
    for path in ("/metrics", "/api/v1/remove_all", "/api/v1/drain_jobs", "/api/v1/status"):
        assert path in body
    assert "POST  /api/v1/remove_all" in body and "[needs the admin key]" in body
    st, body, h = req(m, "/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert st == 200 and h["Content-Type"].startswith("text/html") and "<canvas" in body
    st, body, _ = req(m, "/dashboard/app.js")
    assert st == 200 and "api/v1/status" in body
    st, body, _ = req(m, "/api")
    api = json.loads(body)
    by = {(e["path"], e["method"]): e for e in api["endpoints"]}
    assert by[("/api/v1/remove_all", "POST")]["mutating"] is True
    assert by[("/metrics", "GET")]["mutating"] is False
    assert api["loopback"] is True and api["admin_key_configured"] is False
    assert req(m, "/api/v1/drain_jobs", "DELETE")[0] == 405


def test_admin_key_required_when_configured(master):
    m = master(["--admin_api_key", "s3cret-key"])
    assert req(m, "/api/v1/remove_all", "POST")[0] == 401
    st, body, _ = req(m, "/api/v1/remove_all", "POST", {"Authorization": "Bearer wrong"})
    assert st == 401 and "wrong admin key" in body
    assert req(m, "/api/v1/remove_all", "POST", {"Authorization": "Bearer s3cret-ke"})[0] == 401
    st, body, _ = req(m, "/api/v1/remove_all", "POST", {"Authorization": "Bearer s3cret-key"})
    assert st == 200 and json.loads(body) == {"removed_count": 0}
    assert req(m, "/api/v1/remove_all", "POST", {"X-API-Key": "s3cret-key"})[0] == 200
    assert req(m, "/api/v1/drain_jobs?segment=nope", "POST")[0] == 401
    assert req(m, "/api/v1/drain_jobs?segment=nope", "POST", {"X-API-Key": "s3cret-key"})[0] == 404
    assert req(m, "/api/v1/drain_jobs/cancel?job_id=1", "POST")[0] == 401
    assert req(m, "/metrics")[0] == 200  # reads need no key
    assert req(m, "/api/v1/drain_jobs")[0] == 200
    assert re.search(r"POST /api/v1/remove_all -> 401", m.stderr())  # one line, with the peer


def test_admin_key_from_env(master):
    m = master(env={"MC_ADMIN_API_KEY": "from-env"})
    assert req(m, "/api/v1/remove_all", "POST")[0] == 401
    assert req(m, "/api/v1/remove_all", "POST", {"Authorization": "Bearer from-env"})[0] == 200


def test_no_key_on_loopback_is_served(master):
    m = master()
    assert req(m, "/api/v1/remove_all", "POST")[0] == 200


def parse(text):
    types, values = {}, {}
    for line in text.splitlines():
        mt = re.match(r"# TYPE (\S+) (\S+)", line)
        if mt:
            types[mt.group(1)] = mt.group(2)
        elif line and not line.startswith("#"):
            name, _, v = line.rpartition(" ")
            values[name] = float(v)
    return types, values


def test_metric_names_follow_prometheus(master):
    m = master()
    st, text, h = req(m, "/metrics")
    assert st == 200 and "version=0.0.4" in h["Content-Type"]
    types, values = parse(text)
    upstream_kept = {"master_key_count", "master_soft_pin_key_count", "master_segment_count",
                     "master_evicted_key_count", "master_evicted_size_bytes",
                     "master_put_start_discard_cnt", "master_put_start_release_cnt"}
    for name, t in types.items():
        if name in upstream_kept:
            continue
        if t == "counter":
            assert name.endswith("_total"), name
        if t == "gauge":
            assert not name.endswith("_count"), name
    for name in ("master_keys", "master_soft_pinned_keys", "master_segments",
                 "master_evicted_keys_total", "master_evicted_bytes_total",
                 "master_put_start_discards_total", "master_put_start_releases_total"):
        assert name in types, name
    assert upstream_kept <= set(types)
    assert types["master_rpc_duration_seconds"] == "histogram"
    assert [k for k in values if k.startswith("master_build_info{")]  # labels: test_ops_version.py
    assert values["master_uptime_seconds"] >= 0 and values["master_start_time_seconds"] > 1.6e9
    for method in ("put_start", "put_end", "get_replica_list", "batch_get_replica_list",
                   "batch_put_start", "exist_key", "remove", "mount_segment", "ping"):
        assert 'master_rpc_duration_seconds_bucket{method="%s",le="+Inf"}' % method in values
        assert 'master_rpc_duration_seconds_count{method="%s"}' % method in values


def test_latency_histogram_counts_requests(master):
    """A raw PING over the RPC port lands in the ping histogram (buckets cumulative)."""
    sys.path.insert(0, os.path.join(HERE, "..", "master"))
    import mp_wire
    m = master()
    n = 25
    c = mp_wire.Conn(m.rpc)
    try:
        for i in range(n):
            c.call(mp_wire.PING, mp_wire.s_uuid((7, i + 1)))
    finally:
        c.close()
    _, values = parse(req(m, "/metrics")[1])
    assert values['master_rpc_duration_seconds_count{method="ping"}'] == n
    assert values['master_ping_requests_total'] == n
    buckets = [(k, v) for k, v in values.items()
               if k.startswith('master_rpc_duration_seconds_bucket{method="ping"')]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] == n and len(buckets) == 24
    assert values['master_rpc_duration_seconds_sum{method="ping"}'] > 0

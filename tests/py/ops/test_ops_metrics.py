"""Store clients' own /metrics (setup's enable_client_http_server, and
mooncake_client --enable_http_server), and docs/grafana/mooncake.json: every
metric its panels query exists on a live master and a live client."""
import json
import os
import re
import subprocess
import sys
import urllib.request

from ops_pool import SAN_RE, cli_env

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def scrape_names(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    names, series = set(), []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series.append(line)
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names, series


def test_setup_enable_client_http_server(pool):
    p = pool()
    env = cli_env({"MC_TEST_RPC": p.master.rpc, "MC_TEST_META": p.master.meta,
                   "MC_CLIENT_HTTP_HOST": "127.0.0.1"})
    r = subprocess.run([sys.executable, os.path.join(HERE, "client_metrics_case.py")], env=env,
                       capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "OK" in r.stdout, out[-6000:]
    assert not SAN_RE.search(out), out[-6000:]


def http_port(client):
    for line in client.lines:
        m = re.search(r"http listening on \S+:(\d+)", line)
        if m:
            return int(m.group(1))
    raise AssertionError("no http line in %r" % client.lines)


def test_grafana_dashboard_metrics_exist(pool, tmp_path):
    p = pool(client_flags=["--enable_http_server", "--http_port", "0"])
    (tmp_path / "v").write_bytes(b"g" * 5000)
    p.cli("put", "graf", str(tmp_path / "v"))
    p.cli("get", "graf", "-o", str(tmp_path / "o"))
    mnames, mseries = scrape_names("http://%s/metrics" % p.master.admin)
    cnames, _ = scrape_names("http://127.0.0.1:%d/metrics" % http_port(p.client))
    assert "mooncake_client_calls_total" in cnames
    with open(os.path.join(ROOT, "docs", "grafana", "mooncake.json")) as f:
        dash = json.load(f)
    exprs = [t["expr"] for pn in dash["panels"] for t in pn["targets"]]
    assert len(exprs) >= 20
    queried = set()
    for e in exprs:
        queried |= set(re.findall(r"\b((?:master|mooncake_client)_[a-z0-9_]+)", e))
        for method in re.findall(r'method=~"([^"]+)"', e):
            for m in method.split("|"):
                assert any('method="%s"' % m in s for s in mseries), m
    missing = sorted(n for n in queried if n not in mnames | cnames)
    assert not missing, "queried by the dashboard, exported by nobody: %s" % missing
    assert any(n.startswith("mooncake_client_") for n in queried)
    for q in (v.get("query", "") for v in dash["templating"]["list"]):
        for n in re.findall(r"\b((?:master|mooncake_client)_[a-z0-9_]+)", q):
            assert n in mnames | cnames, n

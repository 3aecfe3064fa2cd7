"""The master's web dashboard in headless Chromium (Debian's `chromium`)
against a live master holding data: the rendered segment and client rows, the
key count, and the value the keys chart plotted. Not part of `make test`
(chromium is ~300 MB): `make test-browser` installs it and runs this file;
without chromium every test here is skipped. MC_DASH_SCREENSHOTS=DIR also
writes screenshots there (docs/img holds the committed ones)."""
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest


def chromium():
    for exe in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(exe)
        if p:
            return p
    pytest.skip("chromium not installed (make test-browser installs it)")


def browse(url, *extra, budget_ms=6000, timeout=120):
    argv = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
            "--virtual-time-budget=%d" % budget_ms] + list(extra) + [url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


class Dom(HTMLParser):
    """Collects, per element id, its attributes and text; rows of each table."""

    def __init__(self):
        super().__init__()
        self.by_id, self.rows, self.stack, self.table = {}, {}, [], None
        self.row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.table = a.get("id")
            self.rows[self.table] = []
        if tag == "tr" and self.table and "data-key" in a:
            self.row = []
            self.rows[self.table].append(self.row)
        if tag == "td" and self.row is not None:
            self.row.append("")
        if "id" in a:
            self.by_id[a["id"]] = {"attrs": a, "text": ""}
        self.stack.append((tag, a.get("id")))

    def handle_endtag(self, tag):
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break
        if tag == "tr":
            self.row = None
        if tag == "table":
            self.table = None

    def handle_data(self, data):
        for _, i in self.stack:
            if i:
                self.by_id[i]["text"] += data
        if self.row is not None and self.row:
            self.row[-1] += data


def test_dashboard_renders_live_pool(pool, tmp_path):
    exe = chromium()
    p = pool()
    n = 7
    for i in range(n):
        (tmp_path / "v").write_bytes(os.urandom(20000 + i))
        p.cli("put", "dash/%d" % i, str(tmp_path / "v"))
    html = browse("http://%s/" % p.master.admin, "--dump-dom")
    dom = Dom()
    dom.feed(html)
    assert int(dom.by_id["keys"]["text"]) == n, html[-3000:]
    segs = dom.rows["segments"]
    assert len(segs) == 1 and segs[0][0] == p.client.name, segs
    assert segs[0][6] == "ok"
    clients = dom.rows["clients"]
    assert len(clients) == 1 and clients[0][3] == "alive", clients
    assert re.match(r"\d+(\.\d)? (ms|s)$", clients[0][1]), clients  # heartbeat age
    # the keys chart plotted the master's key count; the rate charts got a point
    assert dom.by_id["chart-keys"]["attrs"].get("data-last") == str(n), dom.by_id["chart-keys"]
    assert dom.by_id["chart-put"]["attrs"].get("data-last") is not None
    assert dom.by_id["role"]["text"] == "leader"
    assert int(dom.by_id["segments-count"]["text"]) == 1
    assert dom.by_id["error"]["attrs"].get("hidden") is not None  # no poll failed
    out = os.environ.get("MC_DASH_SCREENSHOTS")
    if out:
        os.makedirs(out, exist_ok=True)
        shot = os.path.join(out, "dashboard.png")
        browse("http://%s/" % p.master.admin, "--screenshot=%s" % shot,
               "--window-size=1400,1100", "--hide-scrollbars")
        assert os.path.getsize(shot) > 10000
    assert exe

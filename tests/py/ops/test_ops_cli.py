"""The `mooncake` CLI (python/mooncake/ctl.py) against a real master and a
standalone store client: every command in text and --json, bytes verified
through get/put, the drain job, errors that name what is at a wrong port, the
etcd view, and `mooncake top` as a live view in tmux."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from ops_pool import StandaloneClient, cli_env, run_cli

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def test_console_script_declared():
    import tomllib
    with open(os.path.join(ROOT, "python", "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts["mooncake"] == "mooncake.ctl:main"


def test_put_get_keys_rm(pool, tmp_path):
    p = pool()
    blobs = {}
    for i in range(5):
        data = os.urandom(1000 + 7919 * i)
        blobs["blk/%d" % i] = data
        f = tmp_path / ("in%d" % i)
        f.write_bytes(data)
        r = json.loads(p.cli("put", "blk/%d" % i, str(f), "--json").stdout)
        assert r == {"key": "blk/%d" % i, "bytes": len(data)}
    (tmp_path / "other").write_bytes(b"x" * 10)
    p.cli("put", "other", str(tmp_path / "other"))
    for k, data in blobs.items():
        out = tmp_path / "out"
        p.cli("get", k, "-o", str(out))
        assert out.read_bytes() == data
    assert p.cli("get", "blk/3").stdout == blobs["blk/3"]  # stdout, byte for byte
    keys = json.loads(p.cli("--json", "keys", "--prefix", "blk/").stdout)
    assert keys["keys"] == sorted(blobs) and not keys["truncated"]
    keys = json.loads(p.cli("keys", "--regex", r"^blk/[13]$", "--json").stdout)
    assert keys["keys"] == ["blk/1", "blk/3"]
    r = p.cli("keys", "--limit", "2")
    assert r.stdout.decode().splitlines()[:2] == ["blk/0", "blk/1"] and b"4 more" in r.stdout
    p.cli("rm", "other")
    assert "other" not in json.loads(p.cli("keys", "--json").stdout)["keys"]
    r = p.cli("get", "other", check=False)
    assert r.returncode == 1 and b"not in the pool" in r.stderr
    r = json.loads(p.cli("rm", "--all", "--json").stdout)
    assert r["removed_count"] >= 1  # keys just read keep their lease and stay


def test_status_and_segments(pool, tmp_path):
    p = pool()
    (tmp_path / "v").write_bytes(os.urandom(50000))
    for i in range(3):
        p.cli("put", "s%d" % i, str(tmp_path / "v"))
    st = json.loads(p.cli("status", "--json", "--interval", "0.2").stdout)
    assert st["keys"] == 3 and st["segments"] == 1 and st["clients"]["alive"] == 1
    assert st["master"]["role"] == "leader" and st["master"]["leader"] == p.master.rpc
    assert st["capacity_bytes"] == 64 << 20 and st["allocated_bytes"] >= 150000
    assert st["rates"]["interval_s"] > 0
    text = p.cli("status").stdout.decode()
    for word in ("role      leader", "keys      3", "segments  1", "clients   1 alive"):
        assert word in text, text
    segs = json.loads(p.cli("segments", "--json").stdout)
    assert [s["name"] for s in segs] == [p.client.name] and segs[0]["used_bytes"] >= 150000
    assert p.client.name in p.cli("segments").stdout.decode()


def test_drain_with_no_room_elsewhere(pool, tmp_path):
    """The only segment cannot be drained: the job FAILS with a message naming
    the reason, its objects stay readable, the segment takes replicas again."""
    p = pool()
    (tmp_path / "v").write_bytes(b"d" * 4096)
    p.cli("put", "before", str(tmp_path / "v"))
    r = p.cli("drain", p.client.name, "--wait", "20")
    out = r.stdout.decode()
    assert "FAILED" in out and "no room elsewhere" in out, out
    st, j = p.admin_json("/api/v1/drain_jobs")
    assert [x["status"] for x in j["jobs"]] == ["FAILED"], j
    assert "no room elsewhere" in j["jobs"][0]["message"], j
    assert json.loads(p.cli("segments", "--json").stdout)[0]["draining"] is False
    assert p.cli("get", "before").stdout == b"d" * 4096  # still readable
    p.cli("put", "after", str(tmp_path / "v"))  # takes replicas again


def test_drain_moves_objects(pool, tmp_path):
    """Two segments: `drain SEG --wait` moves every object off SEG (progress on
    stderr, the end on stdout), the job SUCCEEDS, every object still reads."""
    p = pool()
    other = StandaloneClient(p.tmp, p.master)
    p.procs.insert(0, other)
    vals = {}
    for i in range(8):
        vals["k%d" % i] = bytes([65 + i]) * (3000 + 1000 * i)
        (tmp_path / ("v%d" % i)).write_bytes(vals["k%d" % i])
        p.cli("put", "k%d" % i, str(tmp_path / ("v%d" % i)))
    used = {s["name"]: s["used_bytes"] for s in json.loads(p.cli("segments", "--json").stdout)}
    seg = max(used, key=lambda n: used[n])  # the one holding most of them
    r = p.cli("drain", seg, "--wait", "30")
    out = r.stdout.decode()
    assert "SUCCEEDED" in out and "moved" in out, out + r.stderr.decode()
    job = json.loads(p.cli("drain", seg, "--json").stdout)  # a new job: nothing left to move
    st, j = p.admin_json("/api/v1/drain_jobs")
    first = j["jobs"][0] if j["jobs"][0]["job_id"] != job["job_id"] else j["jobs"][1]
    assert first["status"] == "SUCCEEDED" and first["remaining_bytes"] == 0, j
    assert first["moved_objects"] >= 1 and first["moved_bytes"] >= 3000, first
    for k, v in vals.items():
        assert p.cli("get", k).stdout == v, k


def test_errors_name_the_service(pool, tmp_path):
    p = pool(client_flags=["--enable_http_server", "--http_port", "0"])
    rpc_port = p.master.rpc.rsplit(":", 1)[1]
    meta = p.master.meta.split("/")[2]
    cases = [(["--admin", "127.0.0.1:" + rpc_port], "master's RPC port"),
             (["--admin", meta], "HTTP metadata server"),
             (["--admin", p.client.addr], "mooncake_client")]
    for extra, want in cases:
        r = run_cli(["--master", p.master.rpc] + extra + ["status"], check=False)
        assert r.returncode == 1 and want in r.stderr.decode(), r.stderr
        assert b"--admin HOST:PORT" in r.stderr
    from servers import closed_port
    r = run_cli(["--master", "127.0.0.1:%d" % closed_port(), "--metrics-port",
                 str(closed_port()), "status"], check=False)
    err = r.stderr.decode()
    assert r.returncode == 1 and "cannot reach the master's admin server" in err
    assert "is mooncake_master running" in err
    r = run_cli(["--master", p.master.rpc, "--admin", p.master.admin, "--json", "status"],
                check=True)
    assert json.loads(r.stdout)["keys"] == 0


def test_config_path_and_metrics_port(pool, tmp_path):
    p = pool()
    cfg = tmp_path / "mooncake.json"
    cfg.write_text(json.dumps({"master_server_address": p.master.rpc,
                               "metadata_server": p.master.meta, "local_hostname": "127.0.0.1"}))
    port = p.master.admin.rsplit(":", 1)[1]
    r = run_cli(["--metrics-port", port, "--json", "status", "--interval", "0"],
                env_extra={"MOONCAKE_CONFIG_PATH": str(cfg)})
    assert json.loads(r.stdout)["master"]["rpc"] == p.master.rpc


def test_etcd_view(pool, tmp_path):
    from servers import EtcdCluster
    p = pool()
    etcd = EtcdCluster(tmp_path / "etcd")
    try:
        port = p.master.admin.rsplit(":", 1)[1]
        args = ["--master", etcd.conn(), "--cluster-id", "opscli", "--metrics-port", port,
                "--json", "status", "--interval", "0"]
        r = run_cli(args, check=False)
        assert r.returncode == 1 and b"no leader for cluster 'opscli'" in r.stderr
        etcd.put("mooncake-store/opscli/master_view", p.master.rpc)
        st = json.loads(run_cli(args).stdout)
        assert st["master"]["rpc"] == p.master.rpc and st["master"]["etcd"]
    finally:
        etcd.stop()


def _wait_pane(session, needle, timeout=30):
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                              text=True).stdout
        if needle(text):
            return text
        time.sleep(0.1)
    raise AssertionError("pane never showed it:\n" + text)


def test_top_live_in_tmux(pool, tmp_path):
    if not shutil.which("tmux"):
        pytest.skip("tmux not installed")
    p = pool()
    session = "mctop%d" % os.getpid()
    env = cli_env()
    cmd = [sys.executable, "-m", "mooncake.ctl", "--master", p.master.rpc, "--admin",
           p.master.admin, "top", "--interval", "0.3"]
    envs = []
    for k in ("PYTHONPATH", "LD_PRELOAD", "ASAN_OPTIONS", "MC_LOG_LEVEL"):
        if k in env:
            envs += ["-e", "%s=%s" % (k, env[k])]
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40"] + envs +
                   cmd, check=True)
    try:
        first = _wait_pane(session, lambda t: "METHOD" in t and "ping" in t)
        assert "mooncake top" in first and "keys 0" in first
        (tmp_path / "v").write_bytes(b"t" * 100)
        p.cli("put", "top-key", str(tmp_path / "v"))
        # the view refreshes in place: the key count and the put total change
        after = _wait_pane(session, lambda t: "keys 1" in t)
        assert after.count("METHOD") == 1  # one frame on screen, not a scroll of frames
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if subprocess.run(["tmux", "has-session", "-t", session],
                              capture_output=True).returncode != 0:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("top did not quit on q")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_top_json(pool):
    p = pool()
    r = p.cli("top", "--json", "--iterations", "2", "--interval", "0.2")
    frames = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert len(frames) == 2
    mount = [m for m in frames[1]["methods"] if m["method"] == "mount_segment"][0]
    assert mount["total"] == 1 and frames[1]["segments"] == 1
    assert set(frames[1]["methods"][0]) >= {"per_s", "p50_us", "p99_us", "failures_per_s"}

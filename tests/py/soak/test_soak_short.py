"""The short soak of `make test`: tests/soak/soak.py for 40 s with a fixed seed
against the sanitizer build ($MC_BIN_DIR, default build/test/bin): every daemon
under mixed load with every fault kind injected at least once. RSS growth is
not judged here (--no-rss: ASan's quarantine grows by design); `make chaos`
runs the long version on the release build and judges it."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SOAK = os.path.join(ROOT, "tests", "soak", "soak.py")
SECONDS, SEED = 40, 20261


def test_soak_short(tmp_path):
    bin_dir = os.environ.get("MC_BIN_DIR") or os.path.join(ROOT, "build", "test", "bin")
    need = ["mooncake_master", "mooncake_http_metadata_server", "mooncake_client",
            "mooncake_proxy"]
    missing = [n for n in need if not os.path.exists(os.path.join(bin_dir, n))]
    if missing or not os.path.isdir(os.path.join(os.path.dirname(bin_dir), "python", "mooncake")):
        pytest.skip("not built under %s: %s" % (bin_dir, missing or "python/mooncake"))
    out = tmp_path / "soak.json"
    logs = tmp_path / "logs"
    try:
        p = subprocess.run([sys.executable, SOAK, "--seconds", str(SECONDS), "--seed", str(SEED),
                            "--bin-dir", bin_dir, "--no-rss", "--out", str(out),
                            "--log-dir", str(logs)],
                           capture_output=True, text=True, timeout=SECONDS + 360)
    except subprocess.TimeoutExpired as e:
        pytest.fail("soak.py did not end:\n%s\n%s" % (e.stdout, e.stderr))
    text = p.stdout + p.stderr
    r = json.loads(out.read_text())
    checks = {c["check"]: c for c in r["checks"]}
    failed = [c for c in r["checks"] if not c["ok"]]
    assert "run" not in checks, text[-6000:]
    # The probes this test holds, one by one, then everything soak.py checked.
    assert checks["wrong_bytes"]["ok"], checks["wrong_bytes"]["detail"]
    for d in ("metasrv", "master", "store0", "store1", "store2", "proxy"):
        assert checks["alive:" + d]["ok"], (d, checks["alive:" + d]["detail"], text[-4000:])
        assert checks["answering:" + d]["ok"], (d, checks["answering:" + d]["detail"])
        assert checks["clean_exit:" + d]["ok"], (d, checks["clean_exit:" + d]["detail"])
    assert checks["sanitizer"]["ok"], checks["sanitizer"]["detail"]
    assert checks["faults:all_kinds"]["ok"], checks["faults:all_kinds"]["detail"]
    assert checks["workers:final_roundtrip"]["ok"], checks["workers:final_roundtrip"]["detail"]
    assert not any(c["check"].startswith("rss:") for c in r["checks"])
    assert not failed and p.returncode == 0, (failed, text[-6000:])
    assert p.stdout.strip().splitlines()[-1].endswith("%d passed, 0 failed" % len(r["checks"]))

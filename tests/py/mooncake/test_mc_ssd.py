"""The SSD tier against real processes: mooncake_master --enable_offload, a
disk owner (mooncake_client --enable_offload on a directory of this test) and
a pure client in a child python that checks every get byte for byte
(cases/case_ssd.py): eviction to disk under pressure, disk-only objects after
the owner restarts on the same path (re-registration), a corrupted record
never served, a disk quota far below the data, the owner killed during disk
reads, promotion on hit."""
import glob
import os
import signal

import pytest

from mc_fixtures import SAN_RE, Master, StandaloneClient, core_so, py_dir, run_case

SEG = "16 MB"


@pytest.fixture
def ssd_master(request, tmp_path):
    if not core_so():
        pytest.skip("mooncake._core not built under %s" % py_dir())
    extra = getattr(request, "param", ["--offload_on_evict"])
    m = Master(tmp_path, ["--enable_offload", "--client_ttl", "2"] + list(extra))
    yield m
    m.stop()
    assert not SAN_RE.search(m.stderr()), m.stderr()[-4000:]


class Owner:
    """A disk owner on `path`, started (and restarted) with the tier's env."""

    def __init__(self, tmp, master, path, monkeypatch, env=None):
        self.tmp, self.master, self.path, self.mp = tmp, master, path, monkeypatch
        self.env = {"MOONCAKE_OFFLOAD_FILE_STORAGE_PATH": path,
                    "MOONCAKE_OFFLOAD_LOCAL_BUFFER_SIZE_BYTES": str(64 << 20),
                    "MOONCAKE_OFFLOAD_BUCKET_SIZE_LIMIT_BYTES": str(4 << 20)}
        self.env.update(env or {})
        self.c = None
        self.start()

    def start(self):
        for k, v in self.env.items():
            self.mp.setenv(k, v)
        self.c = StandaloneClient(self.tmp, self.master,
                                  ["--global_segment_size", SEG, "--enable_offload=true"])

    def kill(self):
        self.c.p.send_signal(signal.SIGKILL)
        self.c.p.wait(10)

    def stop(self):
        rc = self.c.stop()
        assert not SAN_RE.search(self.c.stderr()), self.c.stderr()[-4000:]
        return rc


def _env(tmp_path, **kw):
    env = {"MC_TEST_MANIFEST": str(tmp_path / "manifest.json")}
    env.update({k: str(v) for k, v in kw.items()})
    return env


@pytest.mark.parametrize("ssd_master", [["--offload_on_evict"]], indirect=True)
def test_ssd_evict_to_disk(ssd_master, tmp_path, monkeypatch):
    """256 x 256 KiB into a 16 MiB segment: evicted objects go to disk and
    every one reads back exactly."""
    o = Owner(tmp_path, ssd_master, str(tmp_path / "disk"), monkeypatch)
    try:
        run_case(ssd_master, "case_ssd", "case_fill", timeout=120,
                 env_extra=_env(tmp_path, MC_TEST_WANT_DISK=192))
        run_case(ssd_master, "case_ssd", "case_check", env_extra=_env(tmp_path))
    finally:
        assert o.stop() == 0


@pytest.mark.parametrize("ssd_master", [[]], indirect=True)
def test_ssd_restart_recovery(ssd_master, tmp_path, monkeypatch):
    """Offload at put end; the owner is killed and restarted on the same path:
    its records are re-registered and served from disk alone."""
    o = Owner(tmp_path, ssd_master, str(tmp_path / "disk"), monkeypatch)
    run_case(ssd_master, "case_ssd", "case_fill", timeout=120,
             env_extra=_env(tmp_path, MC_TEST_N=48))
    o.kill()
    o.start()
    try:
        run_case(ssd_master, "case_ssd", "case_disk_only_served", timeout=120,
                 env_extra=_env(tmp_path, MC_TEST_N=48))
    finally:
        assert o.stop() == 0


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


@pytest.mark.parametrize("ssd_master", [[]], indirect=True)
def test_ssd_corrupt_record_not_served(ssd_master, tmp_path, monkeypatch):
    """A byte flipped in a record's value (owner stopped): the restart scan drops
    it with a log line; a byte flipped while the owner runs: the read's check
    drops it. Either way the get misses; it never returns the bad bytes."""
    disk = str(tmp_path / "disk")
    o = Owner(tmp_path, ssd_master, disk, monkeypatch)
    run_case(ssd_master, "case_ssd", "case_fill", timeout=120,
             env_extra=_env(tmp_path, MC_TEST_N=16, MC_TEST_SZ=65536))
    o.kill()
    buckets = sorted(glob.glob(os.path.join(disk, "bucket-*.dat")))
    assert buckets
    # the first value of the first bucket (a .dat file holds values only, each
    # of 4 KiB or more on a 4 KiB boundary: these 64 KiB values lie back to back)
    _flip(buckets[0], 100)
    o.start()
    try:
        assert "value checksum mismatch" in o.c.stderr()
        # while running: the second value, right after the first
        _flip(buckets[0], 65536 + 100)
        run_case(ssd_master, "case_ssd", "case_check", timeout=120,
                 env_extra=_env(tmp_path, MC_TEST_N=16, MC_TEST_SZ=65536, MC_TEST_ALLOW_MISS=1,
                                MC_TEST_MIN_OK=14, MC_TEST_DISK_ONLY=1))
        assert "dropped, not served" in o.c.stderr()
    finally:
        assert o.stop() == 0


@pytest.mark.parametrize("ssd_master", [["--offload_on_evict"]], indirect=True)
def test_ssd_disk_full(ssd_master, tmp_path, monkeypatch):
    """A 12 MiB disk quota under 64 MiB of puts: the puts succeed, the disk
    evicts whole buckets (telling the master first) and stays under quota."""
    disk = str(tmp_path / "disk")
    o = Owner(tmp_path, ssd_master, disk, monkeypatch,
              {"MOONCAKE_OFFLOAD_TOTAL_SIZE_LIMIT_BYTES": str(12 << 20),
               "MOONCAKE_OFFLOAD_BUCKET_SIZE_LIMIT_BYTES": str(1 << 20)})
    try:
        run_case(ssd_master, "case_ssd", "case_disk_full", timeout=180,
                 env_extra=_env(tmp_path))
        used = sum(os.path.getsize(p) for p in glob.glob(os.path.join(disk, "bucket-*.dat")))
        assert used <= 12 << 20, used
    finally:
        assert o.stop() == 0


@pytest.mark.parametrize("ssd_master", [[]], indirect=True)
def test_ssd_owner_killed_during_reads(ssd_master, tmp_path, monkeypatch):
    """Disk-only objects read in a loop while their owner is SIGKILLed: every get
    returns (an error) within the bound, none returns wrong bytes."""
    o = Owner(tmp_path, ssd_master, str(tmp_path / "disk"), monkeypatch)
    try:
        run_case(ssd_master, "case_ssd", "case_fill", timeout=120,
                 env_extra=_env(tmp_path, MC_TEST_N=32))
        o.kill()
        o.start()  # its memory copies are gone: the objects are on disk only
        run_case(ssd_master, "case_ssd", "case_kill_owner_during_reads", timeout=120,
                 env_extra=_env(tmp_path, MC_TEST_N=32, MC_TEST_OWNER_PID=o.c.p.pid))
        assert o.c.p.wait(10) == -9
    finally:  # a failed step must not leave the owner running
        if o.c.p.poll() is None:
            o.kill()


@pytest.mark.parametrize("ssd_master", [["--promotion_on_hit",
                                         "--promotion_admission_threshold", "2"]], indirect=True)
def test_ssd_promotion_on_hit(ssd_master, tmp_path, monkeypatch):
    o = Owner(tmp_path, ssd_master, str(tmp_path / "disk"), monkeypatch)
    run_case(ssd_master, "case_ssd", "case_fill", timeout=120,
             env_extra=_env(tmp_path, MC_TEST_N=8))
    o.kill()
    o.start()
    try:
        run_case(ssd_master, "case_ssd", "case_promotion", timeout=120,
                 env_extra=_env(tmp_path, MC_TEST_N=8))
    finally:
        assert o.stop() == 0


@pytest.mark.parametrize("ssd_master", [["--offload_on_evict", "--promotion_on_hit",
                                         "--promotion_admission_threshold", "2"]], indirect=True)
def test_ssd_promotion_under_pressure(ssd_master, tmp_path, monkeypatch):
    """Promotion while eviction holds the pool near its high watermark
    (upstream's test_promotion_on_hit scenario): the disk-only object gets a
    memory replica, later gets skip the disk, all bytes exact."""
    monkeypatch.setenv("MOONCAKE_OFFLOAD_FILE_STORAGE_PATH", str(tmp_path / "disk"))
    monkeypatch.setenv("MOONCAKE_OFFLOAD_LOCAL_BUFFER_SIZE_BYTES", str(64 << 20))
    print(run_case(ssd_master, "case_ssd", "case_promotion_under_pressure", timeout=180,
                   env_extra=_env(tmp_path, MC_TEST_N=48, MC_TEST_SZ=1 << 20,
                                  MC_TEST_PREFIX="poh")))


@pytest.mark.parametrize("ssd_master", [["--offload_on_evict"]], indirect=True)
def test_ssd_self_owner(ssd_master, tmp_path, monkeypatch):
    """One process owns the disk and reads it (upstream's tests run so): its
    disk-only objects come back exactly through get and batch_get_into (the
    staged record is in its own staging buffer: a memcpy, not "a replica
    outside our segment")."""
    monkeypatch.setenv("MOONCAKE_OFFLOAD_FILE_STORAGE_PATH", str(tmp_path / "disk"))
    monkeypatch.setenv("MOONCAKE_OFFLOAD_LOCAL_BUFFER_SIZE_BYTES", str(64 << 20))
    run_case(ssd_master, "case_ssd", "case_self_owner", timeout=180,
             env_extra=_env(tmp_path, MC_TEST_N=128, MC_TEST_SELF="ssd"))


def test_root_fs_dir_legacy(tmp_path, monkeypatch):
    """Upstream's legacy --root_fs_dir (its CI's TEST_SSD_OFFLOAD_IN_EVICT run):
    the master turns the SSD tier on, a store set up without
    enable_ssd_offload keeps its objects under ROOT/store-0 (offload at put
    end), and every object put into a pool far smaller than the data reads
    back exactly."""
    if not core_so():
        pytest.skip("mooncake._core not built under %s" % py_dir())
    root = tmp_path / "root"
    m = Master(tmp_path, ["--root_fs_dir=%s" % root, "--client_ttl", "2"])
    try:
        assert "--root_fs_dir=%s" % root in m.stderr()
        monkeypatch.setenv("MOONCAKE_OFFLOAD_LOCAL_BUFFER_SIZE_BYTES", str(64 << 20))
        run_case(m, "case_ssd", "case_self_owner", timeout=180,
                 env_extra=_env(tmp_path, MC_TEST_N=128, MC_TEST_SELF="root"))
        assert glob.glob(str(root / "store-0" / "bucket-*.dat"))
        # upstream's concurrent stress on the same keys, every get checked
        out = run_case(m, "case_ssd", "case_concurrent_same_keys", timeout=180,
                       env_extra=_env(tmp_path, MC_TEST_N=128, MC_TEST_PREFIX="conc"))
        print(out)
    finally:
        m.stop()
    assert not SAN_RE.search(m.stderr()), m.stderr()[-4000:]


def test_offload_needs_master_flag(master, tmp_path, monkeypatch):
    """A store asking for the tier from a master without --enable_offload fails
    its setup, and both sides say why."""
    monkeypatch.setenv("MOONCAKE_OFFLOAD_FILE_STORAGE_PATH", str(tmp_path / "disk"))
    with pytest.raises(RuntimeError) as e:
        StandaloneClient(tmp_path, master, ["--enable_offload=true"])
    assert "--enable_offload" in str(e.value)
    assert "without --enable_offload" in master.stderr()

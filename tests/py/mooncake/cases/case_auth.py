"""A store client in a child process whose cluster secret (if any) comes from
the environment the test gave it: case_pool_works expects a working pool,
case_setup_refused a setup that fails."""
import os

from mooncake.store import MooncakeDistributedStore
from util import META, RPC, MB, uniq


def case_pool_works():
    s = MooncakeDistributedStore()
    assert s.setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC) == 0
    key, value = uniq("auth"), os.urandom(300_000)
    assert s.put(key, value) == 0
    assert s.get(key) == value
    assert s.close() == 0


def case_setup_refused():
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC)
    assert rc != 0, "setup succeeded"
    print("setup rc", rc)


def case_put_for_admin():
    """Through a dummy of the standalone client, whose segment outlives us."""
    s = MooncakeDistributedStore()
    assert s.setup_dummy(32 * MB, 16 * MB, os.environ["MC_TEST_CLIENT"]) == 0
    assert s.put("admin-probe", b"x" * 1000) == 0
    assert s.close() == 0


def case_dummy_works():
    s = MooncakeDistributedStore()
    assert s.setup_dummy(32 * MB, 16 * MB, os.environ["MC_TEST_CLIENT"]) == 0
    key, value = uniq("dummy"), os.urandom(100_000)
    assert s.put(key, value) == 0
    assert s.get(key) == value
    assert s.close() == 0


def case_dummy_refused():
    s = MooncakeDistributedStore()
    rc = s.setup_dummy(32 * MB, 16 * MB, os.environ["MC_TEST_CLIENT"])
    assert rc != 0, "setup_dummy succeeded"


def case_config_file_names_the_secret():
    """mooncake.json's cluster_secret_file, as vLLM's connectors load it."""
    import json
    import tempfile

    from mooncake.mooncake_config import MooncakeConfig
    d = tempfile.mkdtemp()
    secret = os.path.join(d, "secret")
    with open(secret, "w") as f:
        f.write(os.environ["MC_TEST_SECRET_TEXT"] + "\n")
    os.chmod(secret, 0o600)
    cfg_path = os.path.join(d, "mooncake.json")
    with open(cfg_path, "w") as f:
        json.dump({"local_hostname": "127.0.0.1", "metadata_server": META,
                   "master_server_address": RPC, "cluster_secret_file": secret}, f)
    cfg = MooncakeConfig.from_file(cfg_path)
    assert cfg.cluster_secret_file == secret
    s = MooncakeDistributedStore()
    assert s.setup(cfg.local_hostname, cfg.metadata_server, 16 * MB, 16 * MB, "tcp", "",
                   cfg.master_server_address) == 0
    assert s.put("cfg-key", b"v" * 1000) == 0 and s.get("cfg-key") == b"v" * 1000
    assert s.close() == 0
    with open(secret, "w") as f:
        f.write("short\n")
    try:
        MooncakeConfig.from_file(cfg_path)
    except ValueError as e:
        assert "at least 16" in str(e) and "short" not in str(e), e
    else:
        raise AssertionError("a 5-byte secret was accepted")


def _config_path_naming(secret_text):
    """A mooncake.json naming a secret file holding secret_text, and
    MOONCAKE_CONFIG_PATH pointing at it (no secret in the environment)."""
    import json
    import tempfile

    d = tempfile.mkdtemp()
    secret = os.path.join(d, "secret")
    with open(secret, "w") as f:
        f.write(secret_text + "\n")
    os.chmod(secret, 0o600)
    cfg_path = os.path.join(d, "mooncake.json")
    with open(cfg_path, "w") as f:
        json.dump({"local_hostname": "127.0.0.1", "metadata_server": META,
                   "master_server_address": RPC, "protocol": "tcp",
                   "cluster_secret_file": secret}, f)
    os.environ["MOONCAKE_CONFIG_PATH"] = cfg_path


def case_config_path_setup_positional():
    """vLLM's store connector parses MOONCAKE_CONFIG_PATH's file itself
    (vllm/distributed/mooncake_store.py) and calls the positional setup with
    the fields it knows: the file's cluster_secret_file must still be used."""
    _config_path_naming(os.environ["MC_TEST_SECRET_TEXT"])
    s = MooncakeDistributedStore()
    assert s.setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC) == 0
    key, value = uniq("cfgpath"), os.urandom(200_000)
    assert s.put(key, value) == 0 and s.get(key) == value
    assert s.close() == 0


def case_config_path_engine():
    """The engine's initialize takes the same file's secret: publishing its
    segment on the master's metadata server (which needs the proof) works."""
    from mooncake.engine import TransferEngine

    _config_path_naming(os.environ["MC_TEST_SECRET_TEXT"])
    te = TransferEngine()
    assert te.initialize("127.0.0.1", META, "tcp", "") == 0


def case_config_path_short_secret():
    """A secret file that will not do: setup is refused (-600) in one line
    naming the file, never its content."""
    _config_path_naming("short")
    s = MooncakeDistributedStore()
    assert s.setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC) == -600

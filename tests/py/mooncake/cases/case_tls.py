"""Store clients over TLS (docs/security.md), in a child process: the TLS
files come from the environment the test gave it (MC_TLS_*) or, in
case_config_file_names_tls, from mooncake.json's tls_* fields."""
import json
import os
import tempfile
import time

from mooncake.store import MooncakeDistributedStore
from util import META, RPC, MB, uniq


def _put_get(s):
    """Single and batch puts read back byte for byte."""
    key, value = uniq("tls"), os.urandom(300_000)
    assert s.put(key, value) == 0
    assert s.get(key) == value
    keys = [uniq("tlsb") for _ in range(64)]
    values = [os.urandom(4096) for _ in keys]
    assert s.put_batch(keys, values) == 0
    assert s.get_batch(keys) == values


def case_pool_works():
    s = MooncakeDistributedStore()
    assert s.setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC) == 0
    _put_get(s)
    assert s.close() == 0


def case_setup_refused():
    """setup fails, and soon: a TLS mismatch is an error, never a hang."""
    t = time.monotonic()
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC)
    took = time.monotonic() - t
    assert rc != 0, "setup succeeded"
    print("setup rc %d after %.1f s" % (rc, took))


def _tls_config(key_file):
    """A mooncake.json naming the test PKI's certificate and CA, with key_file as the key."""
    path = os.path.join(tempfile.mkdtemp(), "mooncake.json")
    with open(path, "w") as f:
        json.dump({"local_hostname": "127.0.0.1", "metadata_server": META,
                   "master_server_address": RPC,
                   "tls_cert_file": os.environ["MC_TEST_TLS_CERT"], "tls_key_file": key_file,
                   "tls_ca_file": os.environ["MC_TEST_TLS_CA"]}, f)
    return path


def case_config_file_names_tls():
    """mooncake.json's tls_* fields, as vLLM's connectors load it."""
    from mooncake.mooncake_config import MooncakeConfig
    cfg = MooncakeConfig.from_file(_tls_config(os.environ["MC_TEST_TLS_KEY"]))
    assert cfg.tls_ca_file == os.environ["MC_TEST_TLS_CA"]
    s = MooncakeDistributedStore()
    assert s.setup(cfg.local_hostname, cfg.metadata_server, 16 * MB, 16 * MB, "tcp", "",
                   cfg.master_server_address) == 0
    _put_get(s)
    assert s.close() == 0


def case_config_file_bad_tls():
    """A key that is not the certificate's is a ValueError naming the file."""
    from mooncake.mooncake_config import MooncakeConfig
    try:
        MooncakeConfig.from_file(_tls_config(os.environ["MC_TEST_TLS_OTHER_KEY"]))
    except ValueError as e:
        assert "does not match" in str(e) and os.environ["MC_TEST_TLS_OTHER_KEY"] in str(e), e
    else:
        raise AssertionError("a mismatched key was accepted")

"""mooncake.mooncake_config and the size parser of setup(dict): pure Python,
imported from the source tree (no extension needed)."""
import json
import os
import sys
import warnings

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "python"))
from mooncake.mooncake_config import MooncakeConfig, parse_bool, parse_size  # noqa: E402

ENV_KEYS = ["MOONCAKE_CONFIG_PATH", "MOONCAKE_MASTER", "MOONCAKE_LOCAL_HOSTNAME",
            "MOONCAKE_TE_META_DATA_SERVER", "MOONCAKE_GLOBAL_SEGMENT_SIZE",
            "MOONCAKE_LOCAL_BUFFER_SIZE", "MOONCAKE_PROTOCOL", "MOONCAKE_DEVICE"]


@pytest.fixture
def clean_env(monkeypatch):
    for k in ENV_KEYS:
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_parse_size():
    assert parse_size("4GB") == 4 << 30
    assert parse_size("512 MB") == 512 << 20
    assert parse_size("2147483648") == 2147483648
    assert parse_size("0") == 0
    assert parse_size("1.5gb") == 3 << 29
    assert parse_size("16k") == 16384
    assert parse_size(1234) == 1234
    for bad in ("-1", "abc", "50%", -5):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert parse_bool("on") and parse_bool("enable") and not parse_bool("off")


def test_store_size_strings():
    # setup(dict) uses the C++ rules: units K/KB/M/MB/G/GB/T/TB/B, optional space
    from mooncake.mooncake_config import parse_byte_size
    assert parse_byte_size("16MB") == 16 << 20
    assert parse_byte_size("16 MB") == 16 << 20
    assert parse_byte_size("infinite") == (1 << 64) - 1
    assert parse_byte_size("50%") is None


def test_from_file_and_trailing_comma(tmp_path, clean_env):
    cfg = {"local_hostname": "10.0.0.1", "metadata_server": "P2PHANDSHAKE",
           "master_server_address": "10.0.0.2:50051", "global_segment_size": "4GB",
           "local_buffer_size": "512 MB", "protocol": "TCP", "device_name": ""}
    p = tmp_path / "mooncake.json"
    p.write_text(json.dumps(cfg))
    c = MooncakeConfig.from_file(str(p))
    assert (c.global_segment_size, c.local_buffer_size, c.protocol) == (4 << 30, 512 << 20, "tcp")
    # the published vLLM guide's config: a trailing comma before the brace
    text = '{\n  "local_hostname": "h",\n  "metadata_server": "P2PHANDSHAKE",\n' \
           '  "master_server_address": "m:50051",\n  "protocol": "tcp",\n}\n'
    p.write_text(text)
    clean_env.setenv("MOONCAKE_CONFIG_PATH", str(p))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        c = MooncakeConfig.load_from_env()
    assert c.local_hostname == "h" and c.master_server_address == "m:50051"
    assert c.global_segment_size == 3355443200 and c.local_buffer_size == 1 << 30
    assert any("line 5" in str(x.message) for x in w), [str(x.message) for x in w]
    # a comma inside a string is data, not a trailing comma
    p.write_text('{"local_hostname": "a,}", "metadata_server": "x", '
                 '"master_server_address": "m",}')
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert MooncakeConfig.from_file(str(p)).local_hostname == "a,}"
    p.write_text('{"local_hostname": "h"')
    with pytest.raises(json.JSONDecodeError):
        MooncakeConfig.from_file(str(p))
    p.write_text('{"local_hostname": "h", "metadata_server": "x"}')
    with pytest.raises(ValueError, match="master_server_address"):
        MooncakeConfig.from_file(str(p))


def test_from_env(clean_env):
    with pytest.raises(ValueError):
        MooncakeConfig.load_from_env()
    clean_env.setenv("MOONCAKE_MASTER", "127.0.0.1:50051")
    clean_env.setenv("MOONCAKE_GLOBAL_SEGMENT_SIZE", "1gb")
    c = MooncakeConfig.load_from_env()
    assert c.local_hostname == "localhost" and c.metadata_server == "P2PHANDSHAKE"
    assert c.global_segment_size == 1 << 30 and c.local_buffer_size == 1 << 30
    assert c.protocol == "tcp" and c.tenant_id == "default" and c.client_http_port == 9300


BASE = dict(local_hostname="h", metadata_server="P2PHANDSHAKE", master_server_address="m:50051")


def test_validation_as_upstream(caplog):
    # every MooncakeConfig is checked, however it is made (upstream's __post_init__)
    from mooncake.mooncake_config import _parse_segment_size
    assert MooncakeConfig(**BASE, protocol="  RDMA ").protocol == "rdma"
    assert MooncakeConfig(**BASE, protocol="Tcp").protocol == "tcp"
    for bad in ("", "   ", None, 5):
        with pytest.raises(ValueError, match="Invalid protocol"):
            MooncakeConfig(**BASE, protocol=bad)
    caplog.clear()
    with caplog.at_level("WARNING", logger="mooncake.mooncake_config"):
        assert MooncakeConfig(**BASE, protocol="Rmda").protocol == "rmda"
    assert any("Unrecognised protocol" in r.getMessage() for r in caplog.records)
    c = MooncakeConfig(**BASE, global_segment_size=0, local_buffer_size=0)
    assert (c.global_segment_size, c.local_buffer_size) == (0, 0)
    for field in ("global_segment_size", "local_buffer_size"):
        with pytest.raises(ValueError, match=field):
            MooncakeConfig(**BASE, **{field: -1})
    for field in BASE:
        for bad in ("", "  "):
            with pytest.raises(ValueError, match=field):
                MooncakeConfig(**dict(BASE, **{field: bad}))
    assert _parse_segment_size(-5) == -5  # refused by MooncakeConfig, naming the field
    assert _parse_segment_size("1e9") == 10 ** 9 and _parse_segment_size(" 3 gb ") == 3 << 30
    for bad in ("", "  ", "gb", "abc"):
        with pytest.raises(ValueError):
            _parse_segment_size(bad)


def test_validation_from_file_and_env(tmp_path, clean_env):
    p = tmp_path / "c.json"
    for field in BASE:
        p.write_text(json.dumps({k: v for k, v in BASE.items() if k != field}))
        with pytest.raises(ValueError, match="Missing required config field: " + field):
            MooncakeConfig.from_file(str(p))
    p.write_text(json.dumps(dict(BASE, protocol="")))
    with pytest.raises(ValueError, match="Invalid protocol"):
        MooncakeConfig.from_file(str(p))
    p.write_text(json.dumps(dict(BASE, global_segment_size=-4096)))
    with pytest.raises(ValueError, match="global_segment_size"):
        MooncakeConfig.from_file(str(p))
    p.write_text(json.dumps(dict(BASE, master_server_address=" ")))
    with pytest.raises(ValueError, match="master_server_address"):
        MooncakeConfig.from_file(str(p))
    with pytest.raises(ValueError, match="Neither the environment variable"):
        MooncakeConfig.load_from_env()
    clean_env.setenv("MOONCAKE_MASTER", "m:1")
    clean_env.setenv("MOONCAKE_PROTOCOL", "TCP")
    assert MooncakeConfig.load_from_env().protocol == "tcp"
    clean_env.setenv("MOONCAKE_LOCAL_BUFFER_SIZE", "-1")
    with pytest.raises(ValueError):
        MooncakeConfig.load_from_env()

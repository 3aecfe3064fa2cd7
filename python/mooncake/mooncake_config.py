"""mooncake.mooncake_config: the `mooncake.json` configuration used by vLLM's
and SGLang's connectors (upstream's MooncakeConfig).

Resolution: MOONCAKE_CONFIG_PATH set -> that JSON file; else the MOONCAKE_*
environment variables. Sizes accept ints and strings such as "4GB", "512 MB",
"1.5gb", "2147483648", "0" (powers of 1024). A file with trailing commas (as
in Mooncake's own published vLLM guide) loads, with a warning naming the line."""
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass

logger = logging.getLogger(__name__)

DEFAULT_GLOBAL_SEGMENT_SIZE = 3355443200  # 3.125 GiB
DEFAULT_LOCAL_BUFFER_SIZE = 1073741824  # 1 GiB
# Protocol names upstream's engine and store know (a hint for a warning, not a
# gate: the C core decides what it supports and refuses the rest at setup).
_KNOWN_PROTOCOLS = frozenset((
    "tcp", "rdma", "efa", "nvmeof", "nvlink", "musa", "nvlink_intra", "hip", "barex", "cxl",
    "ascend", "ub", "ubshmem", "maca", "sunrise_link", "rpc_only"))
# present and not blank, checked on every MooncakeConfig however it is made
_REQUIRED = ("local_hostname", "metadata_server", "master_server_address")

_SUFFIXES = (("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("tb", 1 << 40),
             ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40), ("b", 1))


def parse_size(value):
    """Bytes from an int or a size string; ValueError for negative or junk."""
    if isinstance(value, bool):
        raise ValueError("invalid size: %r" % (value,))
    if isinstance(value, int):
        if value < 0:
            raise ValueError("size must be non-negative: %d" % value)
        return value
    if isinstance(value, float):
        if value < 0:
            raise ValueError("size must be non-negative: %r" % value)
        return int(value)
    if not isinstance(value, str):
        raise ValueError("invalid size: %r" % (value,))
    s = value.strip().lower()
    mult = 1
    for suf, m in _SUFFIXES:
        if s.endswith(suf):
            s, mult = s[: -len(suf)].strip(), m
            break
    try:
        n = float(s)
    except ValueError:
        raise ValueError("invalid size: %r" % (value,)) from None
    if n < 0:
        raise ValueError("size must be non-negative: %r" % (value,))
    return int(n * mult)


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*$")


def _parse_segment_size(value):
    """Upstream's name for the size parser of MooncakeConfig: ints pass through
    unchanged (a negative one is refused by MooncakeConfig, naming the field),
    anything else goes through parse_size; "" and a bare unit are ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and not value.strip():
        raise ValueError("invalid size: empty string")
    return parse_size(value)


def parse_byte_size(v):
    """Upstream's C++ size parser (setup(dict)): "16MB", "16 MB", "1.5g",
    "2147483648", "infinite". Returns None when the string is not a size."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if v >= 0 else None
    s = str(v).strip()
    if s.lower() == "infinite":
        return (1 << 64) - 1
    m = _SIZE_RE.match(s)
    if not m or m.group(2).lower() not in _UNITS:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_bool(value):
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("true", "1", "yes", "on", "enable"):
        return True
    if s in ("false", "0", "no", "off", "disable", ""):
        return False
    raise ValueError("invalid boolean: %r" % (value,))


def _strip_trailing_commas(text):
    """Removes commas that directly precede '}' or ']' (outside strings).
    Returns (text, [line numbers of removed commas])."""
    out, lines, i, n, line = [], [], 0, len(text), 1
    in_str = False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
            elif c == "\n":
                line += 1
            i += 1
            continue
        if c == '"':
            in_str = True
        elif c == "\n":
            line += 1
        elif c == ",":
            m = re.match(r"\s*[}\]]", text[i + 1:])
            if m:
                lines.append(line)
                i += 1
                continue
        out.append(c)
        i += 1
    return "".join(out), lines


def load_json_lenient(text, path="<string>"):
    """json.loads, but a trailing comma is dropped with a warning naming its line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as first:
        fixed, lines = _strip_trailing_commas(text)
        if not lines:
            raise
        try:
            data = json.loads(fixed)
        except json.JSONDecodeError:
            raise first from None
        msg = "%s: trailing comma on line %s ignored" % (path, ", ".join(map(str, lines)))
        logger.warning(msg)
        warnings.warn(msg, stacklevel=3)
        return data


_secret_file_in_use = ""  # the file use_cluster_secret_file last made the secret


def use_cluster_secret_file(path):
    """Makes the file at path (if any) this process's cluster secret, the one
    every connection to the pool proves (docs/security.md): the config
    names the file, never the secret. Returns the path ("" for none)."""
    global _secret_file_in_use
    if not path:
        return ""
    from . import _core
    _core.set_cluster_secret_file(str(path))
    _secret_file_in_use = str(path)
    return str(path)


def use_tls_files(cert="", key="", ca=""):
    """Makes the PEM files this process's TLS files for the control plane
    (docs/security.md): the master RPC and the metadata server are then
    reached over TLS (an https:// metadata_server), presenting cert/key and
    checking the servers against the cluster CA. Empty fields fall back to
    MC_TLS_CERT_FILE / MC_TLS_KEY_FILE / MC_TLS_CA_FILE. Returns (cert, key,
    ca) as given; ValueError when the files do not load."""
    cert, key, ca = str(cert or ""), str(key or ""), str(ca or "")
    if cert or key or ca:
        from . import _core
        _core.set_tls_files(cert, key, ca)
    return cert, key, ca


def use_config_path_secret():
    """The `cluster_secret_file` of the mooncake.json that MOONCAKE_CONFIG_PATH
    names, made this process's secret (use_cluster_secret_file) unless a
    config already named one; returns the path in use ("" for none).

    Called by the store's positional setup() and the engine's initialize():
    connectors that parse mooncake.json themselves pass setup() only the
    fields they know (vLLM's store connector reads it with its own
    MooncakeStoreConfig, vllm/distributed/mooncake_store.py, and calls
    setup(local_hostname, metadata_server, ...)), so the field must be read
    here for it to reach the pool. A file that is missing or not JSON is left
    to its reader (nothing is raised here); a secret file that will not do
    raises ValueError as use_cluster_secret_file does."""
    if _secret_file_in_use:
        return _secret_file_in_use
    path = os.getenv("MOONCAKE_CONFIG_PATH")
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            data = load_json_lenient(f.read(), path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return ""
    if not isinstance(data, dict) or not data.get("cluster_secret_file"):
        return ""
    return use_cluster_secret_file(data["cluster_secret_file"])


@dataclass
class MooncakeConfig:
    local_hostname: str
    metadata_server: str
    global_segment_size: int = DEFAULT_GLOBAL_SEGMENT_SIZE
    local_buffer_size: int = DEFAULT_LOCAL_BUFFER_SIZE
    protocol: str = "tcp"
    device_name: str = ""
    master_server_address: str = ""
    enable_ssd_offload: bool = False
    ssd_offload_path: str = ""
    tenant_id: str = "default"
    enable_client_http_server: bool = False
    client_http_port: int = 9300
    cluster_secret_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""

    def __post_init__(self):
        """Upstream's checks, whichever way the config was made: the protocol
        a non-blank string, lower-cased and trimmed (the C core compares it
        exactly), an unknown one logged as a warning and kept; sizes >= 0;
        local_hostname, metadata_server and master_server_address non-blank."""
        if not isinstance(self.protocol, str) or not self.protocol.strip():
            raise ValueError("Invalid protocol: %r (a non-empty string such as 'tcp' or 'rdma')"
                             % (self.protocol,))
        self.protocol = self.protocol.strip().lower()
        if self.protocol not in _KNOWN_PROTOCOLS:
            logger.warning("Unrecognised protocol %r, passed on unchanged (known: %s)",
                           self.protocol, ", ".join(sorted(_KNOWN_PROTOCOLS)))
        for name in ("global_segment_size", "local_buffer_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError("Invalid %s: %r (a size in bytes, >= 0)" % (name, v))
        for name in _REQUIRED:
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise ValueError("Config field %r must be a non-empty string, got %r" % (name, v))

    @staticmethod
    def _build(get, source):
        for req in _REQUIRED:
            if get(req) is None:
                raise ValueError("%s: Missing required config field: %s" % (source, req))
        gs, lb = get("global_segment_size"), get("local_buffer_size")
        protocol = get("protocol")
        tls = use_tls_files(get("tls_cert_file"), get("tls_key_file"), get("tls_ca_file"))
        return MooncakeConfig(
            local_hostname=get("local_hostname"),
            metadata_server=get("metadata_server"),
            global_segment_size=(_parse_segment_size(gs) if gs is not None
                                 else DEFAULT_GLOBAL_SEGMENT_SIZE),
            local_buffer_size=(_parse_segment_size(lb) if lb is not None
                               else DEFAULT_LOCAL_BUFFER_SIZE),
            protocol="tcp" if protocol is None else protocol,
            device_name=str(get("device_name") or ""),
            master_server_address=get("master_server_address"),
            enable_ssd_offload=parse_bool(get("enable_ssd_offload") or False),
            ssd_offload_path=str(get("ssd_offload_path") or ""),
            tenant_id=str(get("tenant_id") or "default"),
            enable_client_http_server=parse_bool(get("enable_client_http_server") or False),
            client_http_port=int(get("client_http_port") or 9300),
            cluster_secret_file=use_cluster_secret_file(get("cluster_secret_file")),
            tls_cert_file=tls[0], tls_key_file=tls[1], tls_ca_file=tls[2],
        )

    @staticmethod
    def from_file(file_path):
        with open(file_path, encoding="utf-8") as f:
            data = load_json_lenient(f.read(), file_path)
        if not isinstance(data, dict):
            raise ValueError("%s: expected a JSON object" % file_path)
        return MooncakeConfig._build(data.get, file_path)

    @staticmethod
    def load_from_env():
        path = os.getenv("MOONCAKE_CONFIG_PATH")
        if path:
            return MooncakeConfig.from_file(path)
        if not os.getenv("MOONCAKE_MASTER"):
            raise ValueError("Neither the environment variable 'MOONCAKE_CONFIG_PATH' nor "
                             "'MOONCAKE_MASTER' is set.")
        env = {
            "local_hostname": os.getenv("MOONCAKE_LOCAL_HOSTNAME", "localhost"),
            "metadata_server": os.getenv("MOONCAKE_TE_META_DATA_SERVER", "P2PHANDSHAKE"),
            "master_server_address": os.getenv("MOONCAKE_MASTER"),
            "global_segment_size": os.getenv("MOONCAKE_GLOBAL_SEGMENT_SIZE"),
            "local_buffer_size": os.getenv("MOONCAKE_LOCAL_BUFFER_SIZE"),
            "protocol": os.getenv("MOONCAKE_PROTOCOL"),
            "device_name": os.getenv("MOONCAKE_DEVICE"),
            "enable_ssd_offload": os.getenv("MOONCAKE_OFFLOAD_ENABLED"),
            "ssd_offload_path": os.getenv("MOONCAKE_OFFLOAD_FILE_STORAGE_PATH"),
            "tenant_id": os.getenv("MOONCAKE_TENANT_ID"),
            "enable_client_http_server": os.getenv("MOONCAKE_ENABLE_CLIENT_HTTP_SERVER"),
            "client_http_port": os.getenv("MOONCAKE_CLIENT_HTTP_PORT"),
            "cluster_secret_file": os.getenv("MC_CLUSTER_SECRET_FILE"),
            "tls_cert_file": os.getenv("MC_TLS_CERT_FILE"),
            "tls_key_file": os.getenv("MC_TLS_KEY_FILE"),
            "tls_ca_file": os.getenv("MC_TLS_CA_FILE"),
        }
        return MooncakeConfig._build(env.get, "environment")


__all__ = ["MooncakeConfig", "parse_size", "_parse_segment_size", "parse_byte_size", "parse_bool", "load_json_lenient"]

"""mooncake.store: upstream's MooncakeDistributedStore API over libmooncake_store.

Return conventions follow upstream: 0 or a negative error code (upstream's
numbers, mooncake/err.h) for puts and removes; bytes read or negative for the
get_into family; get() gives b"" on a miss; is_exist gives 1/0."""
import logging

from . import _core
from .mooncake_config import (parse_byte_size, use_cluster_secret_file, use_config_path_secret,
                              use_tls_files)
from .buffer_pool import (BufferLease, BufferLeaseView, BufferPool, RegisteredBufferLease,
                          RegisteredBufferLeaseView, RegisteredBufferPool)
from .store_ext import StoreExtras, bind_to_numa_node, get_alloc_func_addr, get_free_func_addr
from .store_tensor import (TensorMethods, _deserialize_tensor, _serialize_tensor,  # noqa: F401
                           _tensor_metadata_size)
from .store_tensor_parallel import ParallelAxis, ParallelTensorMethods, ReadTarget, TensorParallelism
from .store_tasks import QueryTaskResponse, StoreTasks
from .engram import EngramStore, EngramStoreConfig
from .store_config import (ObjectDataType, ReplicaStatus, ReplicateConfig, SoftPinAction,
                           TaskStatus, TaskType)

_log = logging.getLogger("mooncake.store")

# upstream's bindings export these enums' values at module level (in this
# order: TaskStatus.PROCESSING / FAILED replace ReplicaStatus's, as there)
for _e in (ObjectDataType, ReplicaStatus, TaskType, TaskStatus):
    globals().update(_e.__members__)
del _e

BufferHandle = _core.BufferHandle


class MooncakeHostMemAllocator(_core.MooncakeHostMemAllocator):
    """Host memory for store buffers: alloc(size) -> address (0 on failure),
    free(ptr) -> 0 / -1. SGLang allocates its host KV pool with it and then
    registers it with register_buffer (docs/python.md)."""


class Descriptor:
    __slots__ = ("size", "buffer_address", "transport_endpoint")

    def __init__(self, endpoint, addr, size):
        self.transport_endpoint, self.buffer_address, self.size = endpoint, addr, size


class MemoryDescriptor:
    __slots__ = ("buffer_descriptor",)

    def __init__(self, d):
        self.buffer_descriptor = d


class LocalDiskDescriptor:
    """A LOCAL_DISK replica: held on the disk of the client whose staging
    server is at transport_endpoint ("host:port")."""

    __slots__ = ("client_id", "object_size", "transport_endpoint")

    def __init__(self, endpoint, size):
        self.client_id, self.object_size, self.transport_endpoint = "", size, endpoint


_MEMORY, _DISK, _LOCAL_DISK = 0, 1, 2  # upstream's ReplicaType


class ReplicaDescriptor:
    """Where one replica lives: a memory replica, or a LOCAL_DISK one (SSD tier)."""

    __slots__ = ("status", "_kind", "_mem", "_disk")

    def __init__(self, endpoint, addr, size, status, kind=_MEMORY):
        self.status = ReplicaStatus(status) if status in ReplicaStatus._value2member_map_ else status
        self._kind = kind
        self._mem = MemoryDescriptor(Descriptor(endpoint, addr, size)) if kind == _MEMORY else None
        self._disk = LocalDiskDescriptor(endpoint, size) if kind == _LOCAL_DISK else None

    def is_memory_replica(self):
        return self._kind == _MEMORY

    def is_disk_replica(self):
        return self._kind == _DISK

    def is_local_disk_replica(self):
        return self._kind == _LOCAL_DISK

    def get_memory_descriptor(self):
        if self._mem is None:
            raise RuntimeError("not a memory replica")
        return self._mem

    def get_local_disk_descriptor(self):
        if self._disk is None:
            raise RuntimeError("not a local disk replica")
        return self._disk

    def get_disk_descriptor(self):
        raise RuntimeError("not a disk replica")

    def __repr__(self):
        if self._disk is not None:
            return "ReplicaDescriptor(local_disk, %s, %d)" % (self._disk.transport_endpoint,
                                                              self._disk.object_size)
        d = self._mem.buffer_descriptor
        return "ReplicaDescriptor(memory, %s, 0x%x, %d)" % (d.transport_endpoint,
                                                            d.buffer_address, d.size)


_INVALID_PARAMS = -600
_SETUP_DEFAULTS = {"global_segment_size": 16 << 20, "local_buffer_size": 16 << 20,
                   "protocol": "tcp", "rdma_devices": "", "master_server_addr": "127.0.0.1:50051"}


# The keys setup(dict) reads (upstream's list), and the spellings other clients use for them
# (LMCache passes master_server_address, and device_name for the positional form's devices).
_SETUP_KEYS = frozenset(("local_hostname", "metadata_server", "global_segment_size",
                         "local_buffer_size", "protocol", "rdma_devices", "master_server_addr",
                         "ipc_socket_path", "enable_ssd_offload", "ssd_offload_path", "tenant_id",
                         "enable_client_http_server", "client_http_port", "cluster_secret_file",
                         "tls_cert_file", "tls_key_file", "tls_ca_file"))
_SETUP_ALIASES = {"master_server_address": "master_server_addr", "device_name": "rdma_devices"}


class MooncakeDistributedStore(TensorMethods, ParallelTensorMethods, StoreExtras, StoreTasks,
                               _core.MooncakeDistributedStore):
    """A store client: contributes global_segment_size bytes of DRAM to the
    pool and reads/writes objects through the master at master_server_addr."""

    def setup(self, *args, **kwargs):
        """setup(local_hostname, metadata_server, global_segment_size,
        local_buffer_size, protocol, rdma_devices, master_server_addr,
        engine=None, enable_ssd_offload=False, ssd_offload_path="",
        tenant_id="default", enable_client_http_server=False,
        client_http_port=9300) -> int, or setup(config: dict) -> int.
        The positional form also takes the cluster secret from the
        `cluster_secret_file` of the mooncake.json MOONCAKE_CONFIG_PATH names
        (mooncake_config.use_config_path_secret)."""
        if len(args) == 1 and not kwargs and isinstance(args[0], dict):
            return self._setup_dict(args[0])
        try:
            use_config_path_secret()  # mooncake.json's cluster_secret_file
        except ValueError as e:
            _log.error("setup: MOONCAKE_CONFIG_PATH: %s", e)
            return _INVALID_PARAMS
        rc = super().setup(*args, **kwargs)
        lb = args[3] if len(args) > 3 else kwargs.get("local_buffer_size", 0)
        return self._note_setup(rc, lb)

    def _setup_dict(self, cfg):
        c = {str(k): str(v) for k, v in cfg.items()}
        for k in sorted(set(c) - _SETUP_KEYS - set(_SETUP_ALIASES)):
            _log.warning("setup: unknown key %r ignored (known: %s)", k,
                         ", ".join(sorted(_SETUP_KEYS)))
        for alias, key in _SETUP_ALIASES.items():
            if alias not in c:
                continue
            if key in c and c[key] != c[alias]:
                _log.error("setup: %s=%r and %s=%r name two %s", key, c[key], alias, c[alias],
                           "masters" if key == "master_server_addr" else "different values")
                return _INVALID_PARAMS
            c.setdefault(key, c.pop(alias))
        if not c.get("local_hostname") or not c.get("metadata_server"):
            return _INVALID_PARAMS
        if not c.get("master_server_addr"):
            _log.warning("setup: no master_server_addr given: using the default %s",
                      _SETUP_DEFAULTS["master_server_addr"])
        sizes = {}
        for k in ("global_segment_size", "local_buffer_size"):
            v = parse_byte_size(c[k]) if k in c else _SETUP_DEFAULTS[k]
            if v is None or v >= 1 << 64:
                return _INVALID_PARAMS
            sizes[k] = v
        get = lambda k: c.get(k, _SETUP_DEFAULTS.get(k, ""))  # noqa: E731
        ssd = get("enable_ssd_offload").lower() in ("true", "1", "yes", "on")
        http = get("enable_client_http_server").lower() in ("true", "1", "yes", "on")
        try:
            port = int(get("client_http_port") or 9300)
        except ValueError:
            return _INVALID_PARAMS
        if c.get("cluster_secret_file"):
            try:
                use_cluster_secret_file(c["cluster_secret_file"])
            except ValueError as e:
                _log.error("setup: %s", e)
                return _INVALID_PARAMS
        if c.get("tls_cert_file") or c.get("tls_key_file") or c.get("tls_ca_file"):
            try:
                use_tls_files(c.get("tls_cert_file"), c.get("tls_key_file"),
                              c.get("tls_ca_file"))
            except ValueError as e:
                _log.error("setup: %s", e)
                return _INVALID_PARAMS
        rc = super().setup(c["local_hostname"], c["metadata_server"],
                           sizes["global_segment_size"], sizes["local_buffer_size"],
                           get("protocol"), get("rdma_devices"), get("master_server_addr"),
                           enable_client_http_server=http, client_http_port=port,
                           enable_ssd_offload=ssd, ssd_offload_path=get("ssd_offload_path"))
        return self._note_setup(rc, sizes["local_buffer_size"])

    def get_replica_desc(self, key):
        return [ReplicaDescriptor(*t) for t in self._replica_desc(key)]

    def batch_get_replica_desc(self, keys):
        out = {}
        for k in keys:
            d = self.get_replica_desc(k)
            if d:
                out[k] = d
        return out


__all__ = ["MooncakeDistributedStore", "MooncakeHostMemAllocator", "ReplicateConfig",
           "SoftPinAction", "ReplicaStatus", "ObjectDataType", "TaskType", "TaskStatus", "QueryTaskResponse",
           "ReplicaDescriptor", "BufferHandle", "parse_byte_size", "BufferPool", "BufferLease",
           "BufferLeaseView", "RegisteredBufferPool", "RegisteredBufferLease",
           "RegisteredBufferLeaseView", "bind_to_numa_node", "get_alloc_func_addr",
           "get_free_func_addr", "ParallelAxis", "TensorParallelism", "ReadTarget",
           "EngramStore", "EngramStoreConfig"]

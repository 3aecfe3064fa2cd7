"""mooncake.engine: upstream's TransferEngine API over libmooncake_te.

Session ids are "host:port" with the port from get_rpc_port(). Methods return
upstream's integers (0 ok, -1 failure; batch ids, 0 on failure)."""
import enum
import logging
from collections import namedtuple

from . import _core
from .mooncake_config import use_config_path_secret

_log = logging.getLogger("mooncake.engine")


class TransferOpcode(enum.IntEnum):
    Read = 0
    Write = 1
    READ = 0
    WRITE = 1


TransferNotify = namedtuple("TransferNotify", ["name", "msg"])


class TransferEngine(_core.TransferEngine):
    """One transfer engine: a segment of registered memory that peers read
    and write by absolute address."""

    TransferOpcode = TransferOpcode

    def initialize(self, local_hostname, metadata_server, protocol, device_name, /):
        """As upstream's; the cluster secret may also come from the
        `cluster_secret_file` of the mooncake.json MOONCAKE_CONFIG_PATH names
        (mooncake_config.use_config_path_secret); -1 when that file will not do."""
        try:
            use_config_path_secret()
        except ValueError as e:
            _log.error("initialize: MOONCAKE_CONFIG_PATH: %s", e)
            return -1
        return super().initialize(local_hostname, metadata_server, protocol, device_name)

    def initialize_ext(self, local_hostname, metadata_server, protocol, device_name,
                       metadata_type, /):
        """Upstream's explicit metadata type: "http", "etcd", "redis" or "p2p"
        map onto our metadata strings (the scheme is added when missing);
        anything else is not supported (-1)."""
        if metadata_type in ("p2p", "P2PHANDSHAKE"):
            metadata_server = "P2PHANDSHAKE"
        elif metadata_type in ("http", "etcd", "redis"):
            if "://" not in metadata_server:
                metadata_server = metadata_type + "://" + metadata_server
        else:
            return -1
        return self.initialize(local_hostname, metadata_server, protocol, device_name)

    def batch_transfer_sync(self, target_hostname, buffers, peer_buffer_addresses, lengths,
                            opcode, notify=None, transport_hint=""):
        if int(opcode) == TransferOpcode.Write:
            rc = self.batch_transfer_sync_write(target_hostname, buffers,
                                                peer_buffer_addresses, lengths)
        else:
            rc = self.batch_transfer_sync_read(target_hostname, buffers,
                                               peer_buffer_addresses, lengths)
        if rc == 0 and notify is not None:
            rc = 0 if self._notify(target_hostname, notify.name, notify.msg) == 0 else -1
        return rc

    def batch_transfer_async(self, target_hostname, buffers, peer_buffer_addresses, lengths,
                             opcode, transport_hint=""):
        if int(opcode) == TransferOpcode.Write:
            return self.batch_transfer_async_write(target_hostname, buffers,
                                                   peer_buffer_addresses, lengths)
        return self.batch_transfer_async_read(target_hostname, buffers,
                                              peer_buffer_addresses, lengths)

    def get_notifies(self, /):
        return [TransferNotify(n, m) for n, m in self._get_notifies()]

    def notify(self, target_hostname, name, msg):
        """Sends {name, msg} to the engine of target_hostname; 0 or negative."""
        return self._notify(target_hostname, name, msg)

    def get_local_topology(self, device_name=None):
        return "{}"


InnerTransferEngine = _core.TransferEngine

__all__ = ["TransferEngine", "TransferOpcode", "TransferNotify", "InnerTransferEngine"]

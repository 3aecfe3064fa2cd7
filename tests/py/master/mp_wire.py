"""A client of the master RPC in plain Python, for tests that must send what
the C client never would (hostile patterns, stalled frames, floods) to a real
mooncake_master. Frames as docs/protocol.md describes them: a 28-byte
little-endian header (magic "MCMR", version 3, method, flags 0, request id,
status, payload length, leader view), then the payload."""

import socket
import struct

MAGIC = 0x524D434D
HDR = struct.Struct("<IBBHIiIQ")
VERSION = 3
SERVICE_READY, MOUNT_SEGMENT, REMOUNT_SEGMENTS, UNMOUNT_SEGMENT, PING = 0x01, 0x02, 0x03, 0x04, 0x05
PUT_START, PUT_END, GET_REPLICAS, EXIST, REMOVE = 0x10, 0x11, 0x14, 0x15, 0x16
REMOVE_ALL, REMOVE_BY_REGEX = 0x17, 0x18
BATCH_PUT_START, BATCH_PUT_END = 0x20, 0x21
CLIENT_OK, CLIENT_NEED_REMOUNT = 1, 2


def s_str(v):
    b = v.encode() if isinstance(v, str) else v
    return struct.pack("<I", len(b)) + b


def s_uuid(u):
    return struct.pack("<QQ", *u)


def s_segment(seg_id, name, base, size, endpoint=None):
    return (s_uuid(seg_id) + s_str(name) + struct.pack("<QQ", base, size) +
            s_str(endpoint or name) + s_str("tcp") + s_str("host-test"))


def s_config(replicas=1):
    # replica_num, soft_pin_action, has_ttl, ttl, hard_pin, preferred[], same_node, has_host_id
    return struct.pack("<IBBQBIBB", replicas, 0, 0, 0, 0, 0, 0, 0)


def frame(method, req_id, payload=b"", view=0):
    return HDR.pack(MAGIC, VERSION, method, 0, req_id, 0, len(payload), view) + payload


class Conn:
    """One connection; call() sends a request and waits for its reply."""

    def __init__(self, addr, timeout=10, source=None):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_id = 1

    def close(self):
        self.sock.close()

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed by the master")
            buf += chunk
        return buf

    def send(self, method, payload=b""):
        rid = self.next_id
        self.next_id += 1
        self.sock.sendall(frame(method, rid, payload))
        return rid

    def reply(self):
        """(method, req_id, status, payload) of the next reply; .view is its view."""
        magic, _ver, method, _fl, rid, status, length, self.view = HDR.unpack(
            self._recv(HDR.size))
        assert magic == MAGIC
        return method & 0x7F, rid, status, self._recv(length) if length else b""

    def call(self, method, payload=b""):
        rid = self.send(method, payload)
        m, r, status, body = self.reply()
        assert (m, r) == (method, rid), (m, r, method, rid)
        return status, body

    def ready(self):
        status, body = self.call(SERVICE_READY, s_str("2.0.0"))
        assert status == 0, status

    def ping(self, client):
        status, body = self.call(PING, s_uuid(client))
        assert status == 0, status
        return struct.unpack("<i", body)[0]

    def mount(self, client, seg_id, name, base, size, endpoint=None):
        return self.call(MOUNT_SEGMENT, s_segment(seg_id, name, base, size, endpoint) +
                         s_uuid(client))[0]

    def put(self, client, key, size):
        status, _ = self.call(PUT_START, s_uuid(client) + s_str(key) + struct.pack("<Q", size) +
                              s_config())
        if status:
            return status
        return self.call(PUT_END, s_uuid(client) + s_str(key))[0]

    def remount(self, client, segs):
        """segs: [(seg_id, name, base, size)]"""
        payload = struct.pack("<I", len(segs)) + b"".join(s_segment(*g) for g in segs)
        return self.call(REMOUNT_SEGMENTS, payload + s_uuid(client))[0]

    def unmount(self, client, seg_id):
        return self.call(UNMOUNT_SEGMENT, s_uuid(seg_id) + s_uuid(client))[0]

    def get_replicas(self, key):
        """(status, [(addr, size, endpoint)]) of the complete replicas."""
        status, body = self.call(GET_REPLICAS, s_str(key))
        if status:
            return status, []
        n, = struct.unpack_from("<I", body, 0)
        off, reps = 4, []
        for _ in range(n):
            _rid, addr, size, elen = struct.unpack_from("<QQQI", body, off)
            off += 28
            ep = body[off:off + elen].decode()
            off += elen + 4 + 1  # status, kind
            reps.append((addr, size, ep))
        return 0, reps

    def remove(self, key, force=True):
        return self.call(REMOVE, s_str(key) + bytes([1 if force else 0]))[0]

    def batch_put(self, client, keys, size):
        """Batch put start + end of keys, size bytes each; [rc] per key."""
        ks = struct.pack("<I", len(keys)) + b"".join(s_str(k) for k in keys)
        sizes = struct.pack("<I", len(keys)) + struct.pack("<%dQ" % len(keys), *([size] * len(keys)))
        status, _ = self.call(BATCH_PUT_START, s_uuid(client) + ks + sizes + s_config())
        if status:
            return [status] * len(keys)
        status, body = self.call(BATCH_PUT_END, s_uuid(client) + ks)
        if status:
            return [status] * len(keys)
        n, = struct.unpack_from("<I", body, 0)
        return list(struct.unpack_from("<%di" % n, body, 4))

    def exist(self, key):
        status, body = self.call(EXIST, s_str(key))
        return status if status else body[0]

    def remove_by_regex(self, pattern, force=True):
        status, body = self.call(REMOVE_BY_REGEX, s_str(pattern) + bytes([1 if force else 0]))
        return status if status else struct.unpack("<q", body)[0]

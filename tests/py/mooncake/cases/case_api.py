"""Upstream's API surface beyond the byte paths (issue 17): the error contract of
batch calls, ReplicateConfig, and the methods added for upstream's bindings;
each against the session's master, data checked byte for byte."""
import ctypes

from util import MB, buf, mk_store, uniq

from mooncake.store import MooncakeDistributedStore, ReplicateConfig

BAD = -600  # INVALID_PARAMS


def case_batch_len_mismatch():
    # upstream: lists of different lengths answer INVALID_PARAMS per key, no exception
    s = mk_store()
    data = b"mismatch-payload"
    b, p = buf(len(data), data)
    assert s.register_buffer(p, len(data)) == 0
    ks = [uniq(), uniq()]
    assert s.batch_put_from(ks, [p], [len(data), len(data)]) == [BAD, BAD]
    assert s.batch_put_from(ks, [p, p], [len(data)]) == [BAD, BAD]
    assert s.batch_upsert_from(ks, [p], [len(data)] * 2) == [BAD, BAD]
    assert s.batch_put_from([], [p], [1]) == []
    assert s.batch_get_into(ks[:1], [p, p], [1]) == [BAD]
    assert s.batch_put_from_multi_buffers(ks[:1], [[p, p]], [[1]]) == [BAD]
    assert s.batch_put_from_multi_buffers(ks, [[p]], [[1]]) == [BAD, BAD]
    assert s.batch_get_into_multi_buffers(ks, [[p]], [[1]]) == [BAD, BAD]
    assert s.batch_get_into_multi_buffers(ks[:1], [[p]], [[1, 2]]) == [BAD]
    assert s.put_batch(ks[:1], [b"x", b"y"]) == BAD
    assert s.upsert_batch(ks, [b"x"]) == BAD
    # nothing was stored by the refused calls; the same calls, well formed, work
    assert s.batch_is_exist(ks) == [0, 0]
    assert s.batch_put_from(ks, [p, p], [len(data)] * 2) == [0, 0]
    out, q = buf(len(data))
    assert s.batch_get_into(ks[:1], [q], [len(data)]) == [len(data)]
    assert out.raw == data
    # wrong types still raise
    for call in (lambda: s.batch_put_from(ks, "x", [1, 1]), lambda: s.put_batch(ks, 5)):
        try:
            call()
        except TypeError:
            pass
        else:
            raise AssertionError("no TypeError")
    assert s.unregister_buffer(p) == 0
    s.remove_all(force=True)
    s.close()

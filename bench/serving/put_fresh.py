#!/usr/bin/env python3
"""put_parts of one object at a time into fresh segment space (mode "fresh": new keys, none
removed) or reused space ("reuse": each key removed after its put), per call: wall ms, CPU ms
of the whole process (all threads, the prefault thread's too), minor faults, voluntary
context switches. Any `mooncake.store` (ours via PYTHONPATH, upstream's wheel in its venv).

  python put_fresh.py MASTER METADATA_URL N SIZE fresh|reuse
"""
import ctypes, sys, time, resource, os
from mooncake.store import MooncakeDistributedStore
m, md, n, S, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
st = MooncakeDistributedStore()
assert st.setup("127.0.0.1", md, 256<<20, 128<<20, "tcp", "", m) == 0
v = os.urandom(S); hdr = bytes(64); mv = memoryview(v)
pre = "p%d-" % os.getpid()
def one(i):
    assert st.put_parts(pre + str(i), hdr, mv) == 0
for i in range(3): one(-i-1)
t=time.perf_counter(); r0=resource.getrusage(0)
for i in range(n):
    one(i)
    if mode == "reuse": st.remove(pre + str(i))
r1=resource.getrusage(0)
print("put_parts %s 1x%d per call ms wall %.3f cpu %.3f flt %.1f csw %.1f" % (mode, S, (time.perf_counter()-t)*1e3/n, (r1.ru_utime+r1.ru_stime-r0.ru_utime-r0.ru_stime)*1e3/n, (r1.ru_minflt-r0.ru_minflt)/n, (r1.ru_nvcsw-r0.ru_nvcsw)/n))
st.close()

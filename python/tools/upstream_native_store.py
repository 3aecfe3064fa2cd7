"""Stands in for upstream's native `store` module (the store.so its build puts
in <repo>/build/mooncake-integration) for the upstream tests that import it
from there (scripts/test_engram_store.py): it is our mooncake.store.

Such a test also puts upstream's Python sources (<repo>/mooncake-wheel) first
on sys.path, so `mooncake` there is upstream's source folder, not a package
with our modules. This module imports our package with that folder off the
path (and upstream's `mooncake` modules out of sys.modules meanwhile), then
puts the path back, and those of upstream's modules that ours do not replace:
the test keeps the objects it imported already, and what it takes from here
is ours. upstream_suite.sh copies it into place."""
import sys

_wheel = [p for p in sys.path if str(p).rstrip("/").endswith("mooncake-wheel")]
_theirs = {k: m for k, m in sys.modules.items() if k == "mooncake" or k.startswith("mooncake.")}
for _k in _theirs:
    del sys.modules[_k]
for _p in _wheel:
    sys.path.remove(_p)
try:
    from mooncake.store import *  # noqa: F401,F403
    from mooncake.store import __all__  # noqa: F401
finally:
    sys.path[0:0] = _wheel
    for _k, _m in _theirs.items():
        sys.modules.setdefault(_k, _m)

"""pytest fixtures for tests/py/ha: a real 3-member etcd cluster
(tests/py/servers.py) and HA masters (tests/py/mooncake's Master helper)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "mooncake"))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
from servers import etcd, etcd3, redis  # noqa: E402,F401

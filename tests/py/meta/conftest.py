"""pytest fixtures for tests/py/meta: real etcd / redis servers (tests/py/servers.py)
and the master + child-python machinery of tests/py/mooncake (mc_fixtures.py)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "mooncake"))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
from servers import etcd, etcd3, redis, redis_auth  # noqa: E402,F401
from mc_fixtures import master  # noqa: E402,F401

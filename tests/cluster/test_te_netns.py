"""Two hosts in two network namespaces of one machine move bytes over tcp
through their veths, never by the same-host shortcut (shm): the engine's
host identity includes the network namespace (docs/transfer-engine.md,
"Same host"). Before that, both namespaces shared boot id and pid namespace,
the engine chose shm, and the reader's eth0 saw none of the bytes."""
import pytest

import netns
from mc_fixtures import child_env, core_so

from cluster import te_read

MB = 1 << 20


@pytest.fixture
def net():
    why = netns.usable()
    if why:
        pytest.skip(why)
    if not core_so():
        pytest.skip("mooncake._core not built")
    n = netns.Net(2)
    yield n
    n.close()


def test_namespaces_use_tcp_over_veth(net):
    r = te_read(net, child_env, 0, 1, 8 * MB, 0)
    assert r["ok"], r  # every byte of the read checked in the child
    assert r["transport"] == "tcp", r
    # the bytes really crossed the reader's veth (plus headers and acks)
    assert r["veth_rx_bytes"] >= r["bytes"], r


def test_leftovers_of_a_dead_run_are_removed():
    """Namespaces named for a pid that is gone are ours from a crashed run:
    the next run removes them; other names are never touched."""
    why = netns.usable()
    if why:
        pytest.skip(why)
    dead = 4194303 + 1  # above pid_max's ceiling (2^22): never a live pid
    ns = "%s%d-h0" % (netns.PREFIX, dead)
    netns._run(["ip", "netns", "add", ns])
    try:
        assert ns in netns.clean_leftovers()
        assert ns not in netns._ns_names()
    finally:
        netns._run(["ip", "netns", "del", ns], check=False)

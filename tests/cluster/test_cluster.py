"""The short cluster run of `make test`: 4 namespace hosts, a 3-member etcd
on h0..h2, HA masters on h0 and h1, a store on every host, and every fault of
scenarios.py once, in a fixed order with fixed choices, on one cluster.

Each fault must leave no wrong bytes, every store working again within
RECOVER_S (3 good puts in a row) and none silent or dead; at the end every
store must stop by itself, no sanitizer report may be in any log, and not one
get of the whole run may have returned wrong bytes. The rows are printed
(pytest -s) as the chaos soak's table. Skipped when not root or without
`ip netns` (netns.usable)."""
import random

import pytest

import netns
import scenarios
from cluster import Cluster
from mc_fixtures import bin_dir, child_env, core_so

ORDER = ["kill9_host", "sigstop_store", "link_down", "partition_master", "tbf_cap",
         "etcd_member_kill", "leader_kill", "leader_partition"]
ROWS = []


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = netns.usable()
    if why:
        pytest.skip(why)
    if not core_so():
        pytest.skip("mooncake._core not built")
    import shutil
    if not shutil.which("etcd"):
        pytest.skip("etcd not installed (scripts/install-deps.sh)")
    c = Cluster(tmp_path_factory.mktemp("cluster"), bin_dir(), child_env, n_hosts=4, seed=14)
    try:
        c.start()
    except BaseException:
        c.close()
        raise
    yield c
    c.close()


def test_every_scenario_is_listed():
    assert sorted(ORDER) == sorted(scenarios.SCENARIOS)


@pytest.mark.parametrize("name", ORDER)
def test_fault(cluster, name):
    row = scenarios.run(cluster, name, random.Random(14), True)
    ROWS.append(row)
    assert not row["failures"], row
    assert row["wrong"] == 0 and row["hung"] == 0, row
    assert row["ops"] > 0, row


def test_clean_stop_and_totals(cluster):
    print("\n" + scenarios.table(ROWS))
    assert cluster.close(), "a store did not stop by itself (hung)"
    bad = [x for w in cluster.all_workers for x in w.lines if x[1] == "BAD"]
    assert not bad, bad[:5]
    assert not scenarios.sanitizer_reports(cluster)
    assert netns.clean_leftovers() == []
    assert not [n for n in netns._ns_names() if n.startswith(cluster.net.switch[:-3])]

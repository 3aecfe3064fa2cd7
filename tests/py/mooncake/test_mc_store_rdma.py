"""The store cases and the lease cache's again, with every store made by
cases/util.mk_store on the rdma transport over libfabric's software provider
(FI_PROVIDER=tcp, NIC "lo"): the same bytes, misses and errors as on tcp. Cases
that set up their own stores on "tcp" stay on it."""
import pytest

from mc_fixtures import case_names, run_case

RDMA = {"MC_TEST_PROTOCOL": "rdma", "MC_TEST_DEVICE": "lo", "FI_PROVIDER": "tcp"}


def _rdma_available():
    import ctypes.util
    return ctypes.util.find_library("fabric") is not None


pytestmark = pytest.mark.skipif(not _rdma_available(), reason="libfabric not installed")


@pytest.mark.parametrize("module,case", [("case_store", c) for c in case_names("case_store")] +
                         [("case_lease_cache", c) for c in case_names("case_lease_cache")])
def test_store_rdma(master, module, case):
    run_case(master, module, case, env_extra=RDMA)

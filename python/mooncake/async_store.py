"""mooncake.async_store: MooncakeDistributedStoreAsync, upstream's asyncio
wrapper. Any attribute `async_<name>` is a coroutine function that runs the
blocking method `<name>` in the event loop's default executor (the C calls
release the GIL, so they overlap)."""
import asyncio
import functools

from .store import MooncakeDistributedStore


class MooncakeDistributedStoreAsync(MooncakeDistributedStore):
    def __getattr__(self, name):
        if name.startswith("async_"):
            fn = getattr(self, name[len("async_"):])

            @functools.wraps(fn)
            async def run(*args, **kwargs):
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))

            return run
        raise AttributeError(name)


__all__ = ["MooncakeDistributedStoreAsync"]

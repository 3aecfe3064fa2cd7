"""mooncake-c: a drop-in for upstream Mooncake's `mooncake` package
(`mooncake.store`, `mooncake.engine`) backed by the C core of mooncake-c."""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)


def _version():
    """The one version of mooncake-c: the C core's (CMake's project version),
    or the installed distribution's when the extension cannot be loaded."""
    try:
        from ._core import VERSION
        return VERSION
    except ImportError:
        from importlib import metadata
        try:
            return metadata.version("mooncake-c")
        except metadata.PackageNotFoundError:
            return "0+unknown"


__version__ = _version()


def __getattr__(name):
    """Upstream's top-level BufferPool / RegisteredBufferPool, imported on first
    use (the rest of the package imports without the extension)."""
    if name in ("BufferPool", "RegisteredBufferPool"):
        from . import buffer_pool
        return getattr(buffer_pool, name)
    raise AttributeError("module 'mooncake' has no attribute %r" % (name,))


__all__ = ["BufferPool", "RegisteredBufferPool"]

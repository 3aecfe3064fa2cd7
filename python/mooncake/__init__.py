"""mooncake-c: a drop-in for upstream Mooncake's `mooncake` package
(`mooncake.store`, `mooncake.engine`) backed by the C core of mooncake-c."""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"

"""Console scripts of the wheel: exec the daemons bundled in mooncake/bin."""
import os
import sys


def _exec(name):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", name)
    if not os.path.exists(path):
        sys.stderr.write("%s: not bundled in this installation (%s)\n" % (name, path))
        sys.exit(127)
    os.execv(path, [path] + sys.argv[1:])


def mooncake_master():
    _exec("mooncake_master")


def mooncake_client():
    _exec("mooncake_client")


def mooncake_http_metadata_server():
    _exec("mooncake_http_metadata_server")


def transfer_engine_bench():
    _exec("transfer_engine_bench")


def mooncake_proxy():
    _exec("mooncake_proxy")

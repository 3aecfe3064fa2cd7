"""What the TLS tests share: a PKI made at test time with the `openssl` CLI
(a cluster CA, a server certificate for 127.0.0.1, a client certificate,
and a "rogue" certificate signed by another CA), a master started with TLS,
environments that give a child process TLS files, and Python TLS contexts
(the ssl module is a second implementation of the wire: OpenSSL through
CPython's own bindings, not ours)."""
import os
import re
import shutil
import ssl
import sys

import pytest

from mc_fixtures import Master

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "python", "tools"))
import tls_pki as _tls_pki  # noqa: E402 (python/tools/tls_pki.py)
from tls_pki import key_of  # noqa: E402,F401 (the tests take it from here)


def make_pki(d):
    """tls_pki.make_pki (python/tools/tls_pki.py), skipped without the openssl CLI."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl CLI is not installed")
    return _tls_pki.make_pki(d)


def tls_env(pki, cert="client", ca="ca"):
    """MC_TLS_* for a child: cert (a name in pki, or None) and ca (or None)."""
    env = {"MC_TLS_CERT_FILE": "", "MC_TLS_KEY_FILE": "", "MC_TLS_CA_FILE": ""}
    if cert:
        env["MC_TLS_CERT_FILE"] = pki[cert]
        env["MC_TLS_KEY_FILE"] = key_of(pki[cert])
    if ca:
        env["MC_TLS_CA_FILE"] = pki[ca]
    return env


def server_flags(pki, style="_"):
    """--tls_cert_file ... for a server with the server certificate and the CA."""
    names = ("--tls_cert_file", "--tls_key_file", "--tls_ca_file")
    if style == "-":
        names = tuple(n.replace("_", "-") for n in names)
    return [names[0], pki["server"], names[1], key_of(pki["server"]), names[2], pki["ca"]]


class TlsMaster(Master):
    """mooncake_master serving TLS (RPC, metadata, admin) with the server
    certificate, client certificates required (the cluster CA)."""

    def __init__(self, tmp, pki, extra=()):
        super().__init__(tmp, extra=server_flags(pki) + list(extra))

    def scan(self, line):
        super().scan(line)
        m = re.search(r"http metadata server listening on (\S+)", line)
        if m:
            self.meta = "https://%s/metadata" % m.group(1)


def client_context(pki, cert="client", ca="ca"):
    """A Python TLS client context trusting ca and presenting cert (or none)."""
    c = ssl.create_default_context(cafile=pki[ca])
    if cert:
        c.load_cert_chain(pki[cert], key_of(pki[cert]))
    return c


def lines_naming(text, port):
    """The log lines that name the peer 127.0.0.1:port."""
    return [ln for ln in text.splitlines() if "127.0.0.1:%d" % port in ln]

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
import subprocess

import pytest

from mc_fixtures import Master


def _run(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    """Writes the PEM files into d; returns {name: path} for ca, other (a
    second CA), server, client and rogue (.pem, with .key next to each)."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl CLI is not installed")
    d = str(d)
    for ca in ("ca", "other"):
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2", "-subj", "/CN=" + ca,
             cwd=d)
    for name, ca, san in (("server", "ca", "IP:127.0.0.1,DNS:localhost"),
                          ("client", "ca", "DNS:client"), ("rogue", "other", "DNS:rogue")):
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n" % san)
        _run("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
             "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext",
             cwd=d)
    return {n: os.path.join(d, n + ".pem") for n in ("ca", "other", "server", "client", "rogue")}


def key_of(pem):
    return pem[:-len(".pem")] + ".key"


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

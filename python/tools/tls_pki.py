"""A test PKI made with the `openssl` CLI: a cluster CA ("ca"), a second CA
("other"), a server certificate for 127.0.0.1 / localhost, a client
certificate and a "rogue" one signed by the other CA. Shared by the TLS tests
(tests/py/security/tls_util.py) and the wheel's check (wheel_check.py), so it
needs nothing but the standard library."""
import os
import subprocess

NAMES = ("ca", "other", "server", "client", "rogue")
_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")


def _run(d, *args):
    r = subprocess.run(["openssl"] + list(args), cwd=d, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (args[0], r.stderr[-1000:]))


def make_pki(d):
    """Writes the PEM files into d; returns {name: path} for NAMES (.pem, with
    .key next to each: key_of). RuntimeError with openssl's words on failure."""
    d = str(d)
    for ca in ("ca", "other"):
        _run(d, "req", "-x509", *_EC, "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
             "-subj", "/CN=" + ca)
    for name, ca, san in (("server", "ca", "IP:127.0.0.1,DNS:localhost"),
                          ("client", "ca", "DNS:client"), ("rogue", "other", "DNS:rogue")):
        _run(d, "req", *_EC, "-keyout", name + ".key", "-out", name + ".csr", "-subj",
             "/CN=" + name)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n" % san)
        _run(d, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
             "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext")
    return {n: os.path.join(d, n + ".pem") for n in NAMES}


def key_of(pem):
    return pem[:-len(".pem")] + ".key"

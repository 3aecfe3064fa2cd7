"""The cluster secret and TLS files from Python (docs/security.md), for the
parts of the package that speak HTTP themselves (the `mooncake` CLI's admin
requests).
The exchange is the C core's (src/net/net_auth.h, src/net/net_http.h):
HMAC-SHA256 under SHA-256("mooncake-c cluster secret" | secret), with
Python's hashlib and hmac."""
import hashlib
import hmac
import os
import ssl
import urllib.error
import urllib.request

HELLO, PROOF = "X-Mooncake-Auth-Hello", "X-Mooncake-Auth-Proof"
NONCE, MAC = "X-Mooncake-Auth-Nonce", "X-Mooncake-Auth-Mac"


def tls_context():
    """A TLS client context of the process's TLS files (MC_TLS_CA_FILE, and
    MC_TLS_CERT_FILE / MC_TLS_KEY_FILE for mutual TLS), or None without any:
    the pool's HTTP listeners then serve https (docs/security.md)."""
    ca, cert = os.environ.get("MC_TLS_CA_FILE"), os.environ.get("MC_TLS_CERT_FILE")
    if not ca and not cert:
        return None
    ctx = ssl.create_default_context(cafile=ca or None)
    if cert:
        ctx.load_cert_chain(cert, os.environ.get("MC_TLS_KEY_FILE") or None)
    return ctx


def open_url(req, timeout):
    """urllib.request.urlopen with the process's TLS files, if any."""
    return urllib.request.urlopen(req, timeout=timeout, context=tls_context())


class AuthError(Exception):
    """The server did not prove the secret, or refused ours."""


def cluster_key(secret_file=None):
    """The process's cluster key: from secret_file, MC_CLUSTER_SECRET or
    MC_CLUSTER_SECRET_FILE (as the C core reads them), or None."""
    secret = None
    path = secret_file or (None if os.environ.get("MC_CLUSTER_SECRET")
                           else os.environ.get("MC_CLUSTER_SECRET_FILE"))
    if path:
        with open(path, "rb") as f:
            secret = f.read()
        if secret.endswith(b"\n"):
            secret = secret[:-1]
        if secret.endswith(b"\r"):
            secret = secret[:-1]
    elif os.environ.get("MC_CLUSTER_SECRET"):
        secret = os.environ["MC_CLUSTER_SECRET"].encode()
    if secret is None:
        return None
    if not 16 <= len(secret) <= 4096:
        raise AuthError("the cluster secret must hold 16 to 4096 bytes")
    return hashlib.sha256(b"mooncake-c cluster secret" + secret).digest()


def mac(key, role, service, a, b):
    s = service.encode()
    return hmac.new(key, b"mooncake-c/auth/1" + role + bytes([len(s)]) + s + a + b,
                    hashlib.sha256).digest()


def _proved(key, service, nc, headers):
    try:
        ns, m = bytes.fromhex(headers.get(NONCE, "")), bytes.fromhex(headers.get(MAC, ""))
    except ValueError:
        return None
    if len(ns) != 32 or not hmac.compare_digest(m, mac(key, b"S", service, nc, ns)):
        return None
    return ns


def urlopen(req, timeout, key, service):
    """urllib.request.urlopen(req) proving key to the server (service as the
    C server names its proofs: "admin", "meta", "dummy") and checking the
    server's proof on the answer. HTTPError as urlopen raises it; AuthError
    when the server does not prove the same secret."""
    nc = os.urandom(32)
    req.add_header(HELLO, "1:" + nc.hex())
    try:
        r = open_url(req, timeout)
    except urllib.error.HTTPError as e:
        if e.code != 401 or NONCE not in e.headers:
            raise
        ns = _proved(key, service, nc, e.headers)
        if ns is None:
            raise AuthError("%s proved another cluster secret (the secrets differ)"
                            % req.full_url)
        req.add_header(PROOF, mac(key, b"C", service, ns, nc).hex())
        r = open_url(req, timeout)
    if _proved(key, service, nc, r.headers) is None:
        r.close()
        raise AuthError("%s did not prove the cluster secret (it has none, or another)"
                        % req.full_url)
    return r

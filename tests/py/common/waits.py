"""Readiness checks shared by the process tests and the Python benches: poll a
condition instead of sleeping for a guessed time, and read a process's
resident memory."""
import os
import ssl
import time
import urllib.request


def admin_urlopen(addr, path, timeout):
    """urlopen of an admin port's path: https with this process's MC_TLS_*
    files when MC_TLS_CA_FILE is set (a pool run with TLS, docs/security.md),
    else http."""
    ca = os.environ.get("MC_TLS_CA_FILE")
    if not ca:
        return urllib.request.urlopen("http://%s%s" % (addr, path), timeout=timeout)
    ctx = ssl.create_default_context(cafile=ca)
    if os.environ.get("MC_TLS_CERT_FILE"):
        ctx.load_cert_chain(os.environ["MC_TLS_CERT_FILE"], os.environ.get("MC_TLS_KEY_FILE"))
    return urllib.request.urlopen("https://%s%s" % (addr, path), timeout=timeout, context=ctx)


def until(pred, timeout=10.0, step=0.02):
    """Polls pred() until it is truthy or timeout seconds pass; returns its
    last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    v = pred()
    while not v and time.monotonic() < deadline:
        time.sleep(step)
        v = pred()
    return v


def wait_for(pred, timeout, what, step=0.05):
    """until(), raising AssertionError naming what on timeout."""
    v = until(pred, timeout, step)
    if not v:
        raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
    return v


def rss_kib(pid):
    """VmRSS of pid in KiB (0 when it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def admin_metrics(addr, timeout=3):
    """The integer samples of http://addr/metrics as {name{labels}: value};
    {} when the admin port does not answer."""
    try:
        with admin_urlopen(addr, "/metrics", timeout) as r:
            body = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition(" ")
            try:
                out[k] = int(v)
            except ValueError:
                pass
    return out

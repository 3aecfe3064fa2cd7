"""`mooncake`: the operator's command line for a Mooncake pool.

    mooncake [--master ADDR] [--admin HOST:PORT] [--json] COMMAND ...

    status                       masters, role, leader, clients, segments, usage, keys,
                                 hit/miss and eviction rates
    segments                     every mounted segment with its usage
    keys [--prefix P | --regex R] [--limit N]
    get KEY [-o FILE]            the object's bytes (stdout or FILE)
    put KEY FILE                 FILE's bytes as KEY
    rm KEY | rm --all            remove one key (store API) or every key (admin API)
    drain SEGMENT [--wait S]     move every object off SEGMENT (drain job); --wait follows it
    top [--interval S]           a live view of request rates and latencies

Pure Python over the master's admin HTTP (status, segments, keys, rm --all, drain,
top) and the store API (get, put, rm KEY: mooncake.store, a client that mounts no
segment). --json prints one JSON document (top: one per refresh) instead of text.

Where the master is (first that applies):
  --master HOST:PORT | etcd://H1:2379;H2:2379   the RPC address, as clients write it
  MOONCAKE_CONFIG_PATH                          its master_server_address (and metadata_server)
  MOONCAKE_MASTER                               an RPC address
  127.0.0.1:50051
With etcd:// the leader is read from etcd (mooncake-store/<cluster>/master_view, the
cluster from --cluster-id or MC_STORE_CLUSTER_ID, default mooncake_cluster).
The admin port is not part of that address: --admin HOST:PORT (or
MOONCAKE_ADMIN_ADDRESS), else the master's host with --metrics-port (MOONCAKE_METRICS_PORT,
default 9003, the master's --metrics_port default). State-changing admin calls
send --api-key (MC_ADMIN_API_KEY) as "Authorization: Bearer KEY", and prove the cluster
secret (MC_CLUSTER_SECRET or MC_CLUSTER_SECRET_FILE) when the pool has one.
"""

import argparse
import base64
import http.client
import json
import os
import re
import select
import shutil
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from . import _auth

DEFAULT_MASTER = "127.0.0.1:50051"
DEFAULT_METRICS_PORT = 9003


class CliError(Exception):
    """An error to print as one line (plus a hint) and exit 1."""


# ---------------------------------------------------------------- addresses

def _split_hostport(addr, what):
    addr = addr.strip()
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = addr.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError("%s '%s' is not HOST:PORT" % (what, addr))
    return host, int(port)


def _load_config():
    path = os.environ.get("MOONCAKE_CONFIG_PATH")
    if not path:
        return {}
    try:
        from mooncake.mooncake_config import load_json_lenient
        with open(path) as f:
            return load_json_lenient(f.read(), path)
    except ImportError:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CliError("MOONCAKE_CONFIG_PATH=%s: %s" % (path, e))


def etcd_leader(endpoints, cluster, timeout):
    """The leader's RPC address from etcd's view key, through the v3 JSON gateway."""
    key = "mooncake-store/%s/master_view" % cluster
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    errors = []
    for ep in [e for e in re.split(r"[;,]", endpoints) if e]:
        ep = ep if "://" in ep else "http://" + ep
        try:
            req = urllib.request.Request(ep.rstrip("/") + "/v3/kv/range", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=timeout) as r:
                kvs = json.loads(r.read()).get("kvs") or []
        except (OSError, ValueError, urllib.error.URLError) as e:
            errors.append("%s: %s" % (ep, getattr(e, "reason", e)))
            continue
        if not kvs:
            raise CliError("etcd %s has no leader for cluster '%s' (key %s is absent): no "
                           "master is elected; check the masters' --cluster_id" % (ep, cluster, key))
        return base64.b64decode(kvs[0]["value"]).decode()
    raise CliError("no etcd endpoint of '%s' answered (%s)" % (endpoints, "; ".join(errors)))


class Target:
    """Where the master is: .rpc (host:port), .admin (host, port), .metadata (URL)."""

    def __init__(self, args):
        cfg = _load_config()
        self.cluster = args.cluster_id or os.environ.get("MC_STORE_CLUSTER_ID") or \
            "mooncake_cluster"
        self.master = args.master or cfg.get("master_server_address") or \
            os.environ.get("MOONCAKE_MASTER") or DEFAULT_MASTER
        self.metadata = args.metadata or cfg.get("metadata_server") or None
        self.local_hostname = args.local_hostname or None
        self.timeout = args.timeout
        self.etcd = None
        rpc = self.master
        if rpc.startswith("etcd://"):
            self.etcd = rpc[len("etcd://"):]
            rpc = etcd_leader(self.etcd, self.cluster, self.timeout)
        self.rpc = rpc
        admin = args.admin or os.environ.get("MOONCAKE_ADMIN_ADDRESS")
        if admin:
            self.admin = _split_hostport(admin, "--admin")
            self.admin_from = "--admin" if args.admin else "MOONCAKE_ADMIN_ADDRESS"
        else:
            host, _ = _split_hostport(rpc, "master address")
            port = args.metrics_port or int(os.environ.get("MOONCAKE_METRICS_PORT") or
                                            DEFAULT_METRICS_PORT)
            self.admin = (host, port)
            self.admin_from = "the master's host and --metrics-port %d" % port
        self.api_key = args.api_key or os.environ.get("MC_ADMIN_API_KEY") or None

    def admin_url(self, path):
        host, port = self.admin
        h = "[%s]" % host if ":" in host else host
        scheme = "https" if _auth.tls_context() else "http"  # MC_TLS_*: the pool serves TLS
        return "%s://%s:%d%s" % (scheme, h, port, path)


# ---------------------------------------------------------------- admin HTTP

def _speaks_tls(host, port, timeout):
    """True when host:port completes a TLS handshake (its certificate unchecked:
    this only names the service)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            with ctx.wrap_socket(s):
                return True
    except (OSError, ssl.SSLError):
        return False


def _identify(target):
    """Names the service at the admin address when it is not a master's admin server."""
    host, port = target.admin
    try:
        rpc_host, rpc_port = _split_hostport(target.rpc, "master address")
        if port == rpc_port:
            return "the master's RPC port (binary protocol, not HTTP)"
    except CliError:
        pass
    if _auth.tls_context() is None and _speaks_tls(host, port, target.timeout):
        return ("a TLS (https) server, and this CLI has no TLS files (set MC_TLS_CA_FILE, "
                "MC_TLS_CERT_FILE and MC_TLS_KEY_FILE; docs/security.md)")
    probes = [("/v1/client_config", lambda s, b: s == 200 and b"global_segment_size" in b,
               "a mooncake_client (store client) HTTP port"),
              ("/version", lambda s, b: s == 200 and b"etcdserver" in b, "etcd"),
              ("/healthcheck", lambda s, b: s == 200, "mooncake_proxy (or another router)"),
              ("/metadata?key=mooncake-cli-probe", lambda s, b: s in (200, 404) and b"not found"
               in b.lower(), "an HTTP metadata server")]
    for path, ok, name in probes:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=target.timeout)
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read(4096)
            conn.close()
            if ok(r.status, body):
                return name
        except http.client.BadStatusLine as e:
            line = str(e)
            if line.startswith("-ERR") or "redis" in line.lower():
                return "redis"
            return "a service that does not speak HTTP (%r)" % line[:40]
        except (OSError, http.client.HTTPException):
            return "a service that does not speak HTTP"
    return "an HTTP server that is not a mooncake_master admin port"


def admin(target, path, method="GET", want_json=True, key=False):
    """One admin request; raises CliError with what to do on any failure."""
    url = target.admin_url(path)
    headers = {"Accept": "application/json"}
    if key and target.api_key:
        headers["Authorization"] = "Bearer " + target.api_key
    req = urllib.request.Request(url, method=method, headers=headers,
                                 data=b"" if method == "POST" else None)
    hint = ("the admin port comes from %s; pass --admin HOST:PORT (the master's "
            "--metrics_host:--metrics_port)" % target.admin_from)
    try:
        ckey = _auth.cluster_key() if key else None
        opener = ((lambda: _auth.urlopen(req, target.timeout, ckey, "admin")) if ckey else
                  (lambda: _auth.open_url(req, target.timeout)))
        with opener() as r:
            body = r.read()
    except _auth.AuthError as e:
        raise CliError("%s %s: %s" % (method, path, e))
    except urllib.error.HTTPError as e:
        body = e.read()
        msg = body.decode(errors="replace").strip()
        try:
            msg = json.loads(body).get("error_message") or msg
        except (ValueError, AttributeError):
            pass
        if e.code == 404 and path.split("?")[0] in ("/api/v1/status", "/health"):
            raise CliError("%s answers 404 for %s: it is %s, not a mooncake_master admin port; %s"
                           % (url, path, _identify(target), hint))
        if e.code in (401, 403):
            raise CliError("%s %s refused (%d): %s" % (method, path, e.code, msg))
        if e.code == 503:
            raise CliError("%s:%d is not the leader (%s); point --master at etcd:// to follow "
                           "the leader" % (target.admin[0], target.admin[1], msg))
        raise CliError("%s %s: HTTP %d: %s" % (method, url, e.code, msg))
    except (http.client.BadStatusLine, http.client.RemoteDisconnected, ConnectionResetError):
        raise CliError("%s did not answer HTTP: it is %s; %s" % (url, _identify(target), hint))
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (http.client.BadStatusLine, ConnectionResetError,
                               http.client.RemoteDisconnected)):
            raise CliError("%s did not answer HTTP: it is %s; %s" % (url, _identify(target), hint))
        raise CliError("cannot reach the master's admin server at %s:%d (%s): is mooncake_master "
                       "running there? %s" % (target.admin[0], target.admin[1], reason, hint))
    except (socket.timeout, TimeoutError):
        raise CliError("the master's admin server at %s:%d did not answer within %.0f s; %s"
                       % (target.admin[0], target.admin[1], target.timeout, hint))
    if not want_json:
        return body
    try:
        return json.loads(body)
    except ValueError:
        raise CliError("%s answered something that is not JSON: it is %s; %s"
                       % (url, _identify(target), hint))


def parse_metrics(text):
    """Prometheus text -> {name: {labels_tuple: value}}."""
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)', line)
        if not m:
            continue
        labels = tuple(sorted(re.findall(r'([a-zA-Z_]+)="([^"]*)"', m.group(3) or "")))
        try:
            out.setdefault(m.group(1), {})[labels] = float(m.group(4))
        except ValueError:
            pass
    return out


def metric(m, name, **labels):
    want = set(labels.items())
    for lab, v in m.get(name, {}).items():
        if want <= set(lab):
            return v
    return 0.0


def metrics(target):
    return parse_metrics(admin(target, "/metrics", want_json=False).decode(errors="replace"))


def hist(m, method):
    """[(le, cumulative count)] of master_rpc_duration_seconds for method."""
    b = []
    for lab, v in m.get("master_rpc_duration_seconds_bucket", {}).items():
        d = dict(lab)
        if d.get("method") == method:
            b.append((float("inf") if d["le"] == "+Inf" else float(d["le"]), v))
    return sorted(b)


def quantile(cur, old, q):
    """q-quantile in microseconds of the requests between two histogram samples."""
    olds = dict(old)
    d = [(le, c - olds.get(le, 0)) for le, c in cur]
    total = d[-1][1] if d else 0
    if total <= 0:
        return None
    rank, lo, prev = q * total, 0.0, 0.0
    for le, c in d:
        if c >= rank:
            hi = lo * 2 if le == float("inf") else le
            f = (rank - prev) / (c - prev) if c > prev else 1.0
            return (lo + (hi - lo) * f) * 1e6
        lo, prev = le, c
    return lo * 1e6


# ---------------------------------------------------------------- output

def human(n):
    n = float(n)
    for u in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or u == "TiB":
            return ("%d %s" % (n, u)) if u == "B" else "%.2f %s" % (n, u)
        n /= 1024


def table(rows, header):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else \
        [len(h) for h in header]
    fmt = "  ".join("%%-%ds" % w for w in widths)
    lines = [fmt % tuple(header)] + [fmt % tuple(str(x) for x in r) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def emit(args, obj, text):
    if args.json:
        sys.stdout.write(json.dumps(obj, indent=None if args.cmd == "top" else 2) + "\n")
    else:
        sys.stdout.write(text + ("\n" if text and not text.endswith("\n") else ""))
    sys.stdout.flush()


# ---------------------------------------------------------------- commands

GET_NAMES = ("master_get_replica_list_requests_total", "master_batch_get_replica_list_items_total")
GET_FAIL = ("master_get_replica_list_failures_total",
            "master_batch_get_replica_list_failed_items_total")
PUT_NAMES = ("master_put_start_requests_total", "master_batch_put_start_items_total",
             "master_upsert_start_requests_total", "master_batch_upsert_start_items_total")


def _sum(m, names):
    return sum(metric(m, n) for n in names)


def cmd_status(args, t):
    st = admin(t, "/api/v1/status")
    m0 = metrics(t)
    rates = None
    if args.interval > 0:
        t0 = time.monotonic()
        time.sleep(args.interval)
        m1 = metrics(t)
        dt = time.monotonic() - t0
        rates = {"put_per_s": (_sum(m1, PUT_NAMES) - _sum(m0, PUT_NAMES)) / dt,
                 "get_per_s": (_sum(m1, GET_NAMES) - _sum(m0, GET_NAMES)) / dt,
                 "evict_per_s": (metric(m1, "master_evicted_keys_total") -
                                 metric(m0, "master_evicted_keys_total")) / dt,
                 "interval_s": round(dt, 3)}
        m0 = m1
    gets, miss = _sum(m0, GET_NAMES), _sum(m0, GET_FAIL)
    out = {"master": {"rpc": t.rpc, "admin": "%s:%d" % t.admin, "etcd": t.etcd,
                      "version": st["version"], "role": st["role"], "ha_state": st["ha_state"],
                      "leader": st.get("leader_address") or (t.rpc if not st["ha_enabled"]
                                                             else None),
                      "uptime_seconds": st["uptime_seconds"]},
           "clients": {"alive": st["clients_alive"], "known": len(st["clients"])},
           "segments": len(st["segments"]),
           "capacity_bytes": st["capacity_bytes"], "allocated_bytes": st["allocated_bytes"],
           "keys": st["keys"],
           "gets_total": int(gets), "get_misses_total": int(miss),
           "hit_ratio": (gets - miss) / gets if gets else None,
           "evicted_keys_total": st["evicted_keys_total"],
           "rates": rates}
    pct = 100.0 * st["allocated_bytes"] / st["capacity_bytes"] if st["capacity_bytes"] else 0.0
    lines = ["master    %s (admin %s:%d)%s" % (t.rpc, t.admin[0], t.admin[1],
                                                  ", via etcd " + t.etcd if t.etcd else ""),
             "version   %s, up %.0f s" % (st["version"], st["uptime_seconds"]),
             "role      %s (%s), leader %s" % (st["role"], st["ha_state"],
                                               out["master"]["leader"] or "unknown"),
             "clients   %d alive of %d known" % (st["clients_alive"], len(st["clients"])),
             "segments  %d, %s used of %s (%.1f %%)" % (len(st["segments"]),
                                                       human(st["allocated_bytes"]),
                                                       human(st["capacity_bytes"]), pct),
             "keys      %d" % st["keys"],
             "gets      %d, %d misses (hit ratio %s)" % (
                 gets, miss, "%.1f %%" % (100 * out["hit_ratio"]) if gets else "-"),
             "evicted   %d keys" % st["evicted_keys_total"]]
    if rates:
        lines.append("rates     %.1f puts/s, %.1f gets/s, %.1f evictions/s (over %.1f s)" % (
            rates["put_per_s"], rates["get_per_s"], rates["evict_per_s"], rates["interval_s"]))
    emit(args, out, "\n".join(lines))


def cmd_segments(args, t):
    st = admin(t, "/api/v1/status")
    rows = [(s["name"], s["te_endpoint"], s["client_id"], human(s["used_bytes"]),
             human(s["capacity_bytes"]), "%.1f %%" % s["usage_percent"],
             "draining" if s["draining"] else "ok") for s in st["segments"]]
    emit(args, st["segments"], table(rows, ("SEGMENT", "ENDPOINT", "CLIENT", "USED", "CAPACITY",
                                            "USAGE", "STATE")) if rows else "no segment mounted")


def _unescape_key(line):
    out, i = [], 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            n = line[i + 1]
            if n == "x" and i + 3 < len(line):
                out.append(chr(int(line[i + 2:i + 4], 16)))
                i += 4
                continue
            out.append({"n": "\n", "r": "\r", "\\": "\\"}.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def cmd_keys(args, t):
    body = admin(t, "/get_all_keys", want_json=False).decode("utf-8", errors="surrogateescape")
    keys = [_unescape_key(k) for k in body.split("\n") if k]
    if args.prefix:
        keys = [k for k in keys if k.startswith(args.prefix)]
    if args.regex:
        try:
            rx = re.compile(args.regex)
        except re.error as e:
            raise CliError("--regex %r: %s" % (args.regex, e))
        keys = [k for k in keys if rx.search(k)]
    keys.sort()
    total = len(keys)
    shown = keys[:args.limit] if args.limit else keys
    text = "\n".join(shown)
    if len(shown) < total:
        text += "\n... %d more (--limit %d; --limit 0 shows all)" % (total - len(shown),
                                                                    args.limit)
    emit(args, {"keys": shown, "matched": total, "truncated": len(shown) < total},
         text if total else "no key matches")


def _route_ip(host, port):
    """This host's address on the route to host:port (for the store's local_hostname)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((socket.gethostbyname(host), port))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def _store(t):
    """A store client that mounts nothing (0-byte segment), for get/put/rm."""
    try:
        from mooncake.store import MooncakeDistributedStore
    except ImportError as e:
        raise CliError("the store API is not available (%s): install the mooncake-c wheel "
                       "(pip install ./python)" % e)
    host, port = _split_hostport(t.rpc, "master address")
    meta = t.metadata or "http://%s:8080/metadata" % host
    local = t.local_hostname or _route_ip(host, port)
    s = MooncakeDistributedStore()
    rc = s.setup(local, meta, 0, 64 << 20, "tcp", "", t.rpc)
    if rc != 0:
        raise CliError("store setup against master %s (metadata %s) failed with %d: check "
                       "--master and --metadata (the metadata_server the pool's clients use)"
                       % (t.rpc, meta, rc))
    return s


def cmd_get(args, t):
    s = _store(t)
    try:
        data = s.get(args.key)
        if data is None or (isinstance(data, (bytes, bytearray)) and len(data) == 0 and
                            s.is_exist(args.key) != 1):
            raise CliError("key '%s' is not in the pool" % args.key)
    finally:
        s.close()
    if args.output:
        with open(args.output, "wb") as f:
            f.write(data)
        emit(args, {"key": args.key, "bytes": len(data), "file": args.output},
             "%s: %d bytes written to %s" % (args.key, len(data), args.output))
    elif args.json:
        emit(args, {"key": args.key, "bytes": len(data),
                    "value_base64": base64.b64encode(data).decode()}, "")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def cmd_put(args, t):
    try:
        with open(args.file, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CliError("cannot read %s: %s" % (args.file, e.strerror))
    s = _store(t)
    try:
        rc = s.put(args.key, data)
    finally:
        s.close()
    if rc != 0:
        raise CliError("put of '%s' (%d bytes) failed with %d%s" % (
            args.key, len(data), rc, ": no segment has room, or every segment is draining (-200)" if rc == -200 else ""))
    emit(args, {"key": args.key, "bytes": len(data)}, "%s: %d bytes stored" % (args.key,
                                                                                len(data)))


def cmd_rm(args, t):
    if args.all:
        r = admin(t, "/api/v1/remove_all", method="POST", key=True)
        emit(args, r, "removed %d objects (objects with a lease or a put in progress stay)"
             % r.get("removed_count", 0))
        return
    if not args.key:
        raise CliError("rm needs a KEY or --all")
    s = _store(t)
    try:
        rc = s.remove(args.key)
    finally:
        s.close()
    if rc != 0:
        why = {-704: "not in the pool", -706: "it has a read lease; retry in a few seconds"}
        raise CliError("remove of '%s' failed with %d%s" % (args.key, rc,
                                                              ": " + why[rc] if rc in why else ""))
    emit(args, {"key": args.key, "removed": True}, "%s removed" % args.key)


def _drain_line(job):
    return "drain job %s on %s: %s, moved %d objects (%s), %s of %s left (%.1f %%)" % (
        job["job_id"], job["segment"], job["status"], job.get("moved_objects", 0),
        human(job.get("moved_bytes", 0)), human(job["remaining_bytes"]),
        human(job["initial_bytes"]), job["progress_percent"])


def cmd_drain(args, t):
    path = "/api/v1/drain_jobs?segment=" + urllib.parse.quote(args.segment, safe="")
    job = admin(t, path, method="POST", key=True)
    deadline = time.monotonic() + args.wait
    last = None
    while job.get("status") == "RUNNING" and time.monotonic() < deadline:
        if not args.json:  # progress, one line per change, on stderr (stdout has the result)
            line = _drain_line(job)
            if line != last:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
                last = line
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        job = admin(t, "/api/v1/drain_jobs/query?job_id=" + job["job_id"])
    text = _drain_line(job)
    if job.get("message"):
        text += "\n" + job["message"]
    if job["status"] == "RUNNING":
        text += "\nno new replica is placed there; its objects are being moved to other " \
                "segments by their owner (--wait S to follow it)"
    emit(args, job, text)


TOP_METHODS = ("put_start", "put_end", "batch_put_start", "batch_put_end", "get_replica_list",
               "batch_get_replica_list", "exist_key", "batch_exist_key", "remove",
               "mount_segment", "ping")


def _top_frame(t, m0, m1, dt, st):
    rows = []
    for meth in TOP_METHODS:
        req = metric(m1, "master_%s_requests_total" % meth) - \
            metric(m0, "master_%s_requests_total" % meth)
        fail = metric(m1, "master_%s_failures_total" % meth) - \
            metric(m0, "master_%s_failures_total" % meth)
        h1, h0 = hist(m1, meth), hist(m0, meth)
        rows.append({"method": meth, "per_s": req / dt, "failures_per_s": fail / dt,
                     "p50_us": quantile(h1, h0, 0.5), "p99_us": quantile(h1, h0, 0.99),
                     "total": int(metric(m1, "master_%s_requests_total" % meth))})
    return {"time": time.time(), "interval_s": round(dt, 3), "keys": st["keys"],
            "clients_alive": st["clients_alive"], "segments": len(st["segments"]),
            "allocated_bytes": st["allocated_bytes"], "capacity_bytes": st["capacity_bytes"],
            "role": st["role"], "evict_per_s": (metric(m1, "master_evicted_keys_total") -
                                                metric(m0, "master_evicted_keys_total")) / dt,
            "methods": rows}


def _top_text(t, f):
    def us(v):
        return "-" if v is None else ("%.0f" % v if v < 10000 else "%.1fms" % (v / 1000))
    head = ("mooncake top  %s  admin %s:%d  %s  (q quits)\nkeys %d  clients %d  segments %d  "
            "used %s of %s  evictions %.1f/s\n\n" % (
                time.strftime("%H:%M:%S"), t.admin[0], t.admin[1], f["role"], f["keys"],
                f["clients_alive"], f["segments"], human(f["allocated_bytes"]),
                human(f["capacity_bytes"]), f["evict_per_s"]))
    rows = [(r["method"], "%.1f" % r["per_s"], "%.1f" % r["failures_per_s"], us(r["p50_us"]),
             us(r["p99_us"]), r["total"]) for r in f["methods"]]
    return head + table(rows, ("METHOD", "REQ/S", "FAIL/S", "P50_US", "P99_US", "TOTAL"))


def cmd_top(args, t):
    tty = sys.stdout.isatty() and not args.json
    old = None
    if tty and sys.stdin.isatty():
        import termios
        import tty as ttymod
        old = termios.tcgetattr(sys.stdin)
        ttymod.setcbreak(sys.stdin.fileno())
    try:
        m0, t0, n = metrics(t), time.monotonic(), 0
        while args.iterations == 0 or n < args.iterations:
            quit_ = False
            if old is not None:
                r, _, _ = select.select([sys.stdin], [], [], args.interval)
                quit_ = bool(r) and sys.stdin.read(1) in ("q", "Q")
            else:
                time.sleep(args.interval)
            if quit_:
                break
            m1, t1 = metrics(t), time.monotonic()
            st = admin(t, "/api/v1/status")
            f = _top_frame(t, m0, m1, max(1e-3, t1 - t0), st)
            n += 1
            if args.json:
                emit(args, f, "")
            else:
                text = _top_text(t, f)
                if tty:
                    cols = shutil.get_terminal_size().columns
                    text = "\n".join(line[:cols] for line in text.split("\n"))
                    sys.stdout.write("\x1b[H\x1b[2J" + text + "\n")
                else:
                    sys.stdout.write(text + "\n\n")
                sys.stdout.flush()
            m0, t0 = m1, t1
    except KeyboardInterrupt:
        pass
    finally:
        if old is not None:
            import termios
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, old)


# ---------------------------------------------------------------- main

def build_parser():
    p = argparse.ArgumentParser(prog="mooncake", description="Operate a Mooncake pool.",
                                epilog="The master's address: --master, MOONCAKE_CONFIG_PATH, "
                                "MOONCAKE_MASTER or 127.0.0.1:50051; its admin port: --admin or "
                                "its host with --metrics-port (default 9003).")
    p.add_argument("--master", help="master RPC address HOST:PORT, or etcd://H:P;H:P (HA)")
    p.add_argument("--admin", help="master admin HTTP address HOST:PORT (its --metrics_port)")
    p.add_argument("--metrics-port", type=int, help="admin port on the master's host (9003)")
    p.add_argument("--metadata", help="TE metadata server URL (get/put/rm KEY; default: the "
                   "config's metadata_server, else http://MASTER_HOST:8080/metadata)")
    p.add_argument("--local-hostname", help="this client's address for get/put (default: the "
                   "address that routes to the master)")
    p.add_argument("--cluster-id", help="HA cluster (MC_STORE_CLUSTER_ID, mooncake_cluster)")
    p.add_argument("--api-key", help="admin key for state-changing calls (MC_ADMIN_API_KEY)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per request (5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True
    # --json is also accepted after the command (mooncake keys --json)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON")
    add = sub.add_parser

    def sub_parser(name, **kw):
        return add(name, parents=[common], **kw)
    sub.add_parser = sub_parser
    s = sub.add_parser("status", help="the pool at a glance")
    s.add_argument("--interval", type=float, default=1.0,
                   help="seconds between the two samples rates come from (0: no rates)")
    sub.add_parser("segments", help="mounted segments and their usage")
    s = sub.add_parser("keys", help="list keys")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--prefix")
    g.add_argument("--regex", help="Python regular expression, searched anywhere in the key")
    s.add_argument("--limit", type=int, default=1000, help="at most N keys (1000; 0: all)")
    s = sub.add_parser("get", help="read an object")
    s.add_argument("key")
    s.add_argument("-o", "--output", help="write to FILE instead of stdout")
    s = sub.add_parser("put", help="store FILE's bytes as KEY")
    s.add_argument("key")
    s.add_argument("file")
    s = sub.add_parser("rm", help="remove KEY, or every key with --all")
    s.add_argument("key", nargs="?")
    s.add_argument("--all", action="store_true")
    s = sub.add_parser("drain", help="move every object off SEGMENT (no new replica there)")
    s.add_argument("segment")
    s.add_argument("--wait", type=float, default=0.0, help="wait up to S seconds for it to end")
    s = sub.add_parser("top", help="live request rates and latencies")
    s.add_argument("--interval", type=float, default=1.0, help="refresh every S seconds (1)")
    s.add_argument("--iterations", type=int, default=0, help="stop after N refreshes (0: never)")
    return p


COMMANDS = {"status": cmd_status, "segments": cmd_segments, "keys": cmd_keys, "get": cmd_get,
            "put": cmd_put, "rm": cmd_rm, "drain": cmd_drain, "top": cmd_top}


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "rm" and args.all and args.key:
            raise CliError("rm takes a KEY or --all, not both")
        COMMANDS[args.cmd](args, Target(args))
    except CliError as e:
        if args.json:
            sys.stdout.write(json.dumps({"error": str(e)}) + "\n")
        sys.stderr.write("mooncake: error: %s\n" % e)
        return 1
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Hosts as network namespaces on one machine, and the network faults we can
make between them (tests/cluster).

    net = Net(n_hosts)        builds it; net.close() removes all of it
    net.hosts[i]              .ns (namespace name), .ip ("10.203.0.<i+1>")
    net.popen(i, argv, ...)   a process inside host i (by `ip netns exec`,
                              which execs: the Popen pid is the process's)
    net.sh(i, argv)           a short command inside host i (checked)
    net.link(i, up)           eth0 of host i down / up
    net.cap(i, rate)          tbf on both ends of host i's veth; None removes
    net.partition(srcs, dsts, ports=None) / net.heal()
                              nftables drop rules on the hosts of srcs: no
                              packet between them and dsts (only to and from
                              the tcp ports given, when given)
    net.veth_bytes(i)         (rx, tx) byte counters of host i's eth0

Layout: a "switch" namespace holds a bridge with no address and one veth end
per host; the other end is eth0 inside the host's namespace, with 10.203.0.x/24
and no default route. Nothing is created in the root namespace: the addresses
exist only inside the namespaces, and no packet can leave them (no uplink, no
forwarding out). Deleting a namespace deletes its links, qdiscs and nftables
tables, so close() is: stop every process we started (by pid), delete every
namespace. close() runs at exit, on failure, and on SIGTERM/SIGINT (the
handlers raise, so every finally runs). Names are "mccl<pid>-<role>": a run
that finds namespaces of a pid that is gone removes them, and the processes
left in them, before it builds its own; other names are never touched."""

import atexit
import os
import re
import shutil
import signal
import subprocess
import time

PREFIX = "mccl"
SUBNET = "10.203.0"
_LIVE = []  # Net objects to close at exit


def usable():
    """None when namespaces can be made here, else the reason why not."""
    if os.geteuid() != 0:
        return "not root: network namespaces need CAP_SYS_ADMIN"
    for exe in ("ip", "nft", "tc"):
        if not shutil.which(exe):
            return "%s not installed (scripts/install-deps.sh)" % exe
    try:
        p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "ip netns unavailable: %s" % e
    if p.returncode != 0:
        return "ip netns unavailable: %s" % p.stderr.strip()
    return None


def _run(argv, check=True, timeout=20):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise RuntimeError("%s: rc %d: %s" % (" ".join(argv), p.returncode, p.stderr.strip()))
    return p


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _ns_names():
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.strip()]


def _kill_ns_pids(ns):
    """SIGKILL what runs in namespace ns (ours: ns carries our prefix)."""
    out = _run(["ip", "netns", "pids", ns], check=False).stdout
    for tok in out.split():
        pid = int(tok)
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def clean_leftovers():
    """Removes namespaces of earlier runs whose pid is gone (our prefix only)."""
    removed = []
    for ns in _ns_names():
        m = re.match(r"^%s(\d+)-" % PREFIX, ns)
        if not m or _alive(int(m.group(1))):
            continue
        _kill_ns_pids(ns)
        _run(["ip", "netns", "del", ns], check=False)
        removed.append(ns)
    return removed


class Host:
    def __init__(self, i, ns):
        self.i, self.ns, self.ip = i, ns, "%s.%d" % (SUBNET, i + 1)
        self.peer = "v%d" % i  # its veth end in the switch namespace


def _on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum) if signum == signal.SIGINT else \
        SystemExit(128 + signum)


class Net:
    def __init__(self, n_hosts):
        assert 2 <= n_hosts <= 200
        clean_leftovers()
        tag = "%s%d" % (PREFIX, os.getpid())
        self.switch = tag + "-sw"
        self.hosts = [Host(i, "%s-h%d" % (tag, i)) for i in range(n_hosts)]
        self.procs = []  # every Popen we started, ended by pid in close()
        self.made = []   # namespaces created, deleted in close()
        self.parted = set()  # hosts with an nftables table
        self.closed = False
        _LIVE.append(self)
        if not getattr(Net, "_hooked", False):
            atexit.register(_close_all)
            for s in (signal.SIGTERM, signal.SIGINT):
                if signal.getsignal(s) in (signal.SIG_DFL, signal.default_int_handler):
                    signal.signal(s, _on_signal)
            Net._hooked = True
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self):
        sw = self.switch
        _run(["ip", "netns", "add", sw])
        self.made.append(sw)
        _run(["ip", "-n", sw, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", sw, "link", "set", "br0", "up"])
        for h in self.hosts:
            _run(["ip", "netns", "add", h.ns])
            self.made.append(h.ns)
            _run(["ip", "-n", h.ns, "link", "set", "lo", "up"])
            # both ends are born inside their namespaces: nothing in the root one
            _run(["ip", "-n", sw, "link", "add", h.peer, "type", "veth",
                  "peer", "name", "eth0", "netns", h.ns])
            _run(["ip", "-n", sw, "link", "set", h.peer, "master", "br0"])
            _run(["ip", "-n", sw, "link", "set", h.peer, "up"])
            _run(["ip", "-n", h.ns, "addr", "add", h.ip + "/24", "dev", "eth0"])
            _run(["ip", "-n", h.ns, "link", "set", "eth0", "up"])
        # ready when every eth0 has carrier and every bridge port forwards
        deadline = time.monotonic() + 20
        while True:
            states = [self.sh(h.i, ["cat", "/sys/class/net/eth0/operstate"]).stdout.strip()
                      for h in self.hosts]
            ports = _run(["ip", "-n", sw, "-o", "link", "show", "master", "br0"]).stdout
            if states.count("up") == len(self.hosts) and \
                    ports.count("state UP") == len(self.hosts) and \
                    "forwarding" in _run(["bridge", "-n", sw, "link"]).stdout and \
                    _run(["bridge", "-n", sw, "link"]).stdout.count("forwarding") == len(self.hosts):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("links not up: %s\n%s" % (states, ports))
            time.sleep(0.05)

    def popen(self, i, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(["ip", "netns", "exec", self.hosts[i].ns] + list(argv), **kw)
        self.procs.append(p)
        return p

    def sh(self, i, argv, check=True, timeout=20):
        return _run(["ip", "netns", "exec", self.hosts[i].ns] + list(argv), check, timeout)

    def link(self, i, up):
        _run(["ip", "-n", self.hosts[i].ns, "link", "set", "eth0", "up" if up else "down"])

    def cap(self, i, rate=None):
        """tbf at `rate` (tc syntax, e.g. "20mbit") on eth0 of host i and on its
        switch port, so both directions are capped; None removes it."""
        h = self.hosts[i]
        for ns, dev in ((h.ns, "eth0"), (self.switch, h.peer)):
            if rate is None:
                _run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"],
                     check=False)
            else:
                _run(["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root",
                      "tbf", "rate", rate, "burst", "64kb", "latency", "200ms"])

    def partition(self, srcs, dsts, ports=None):
        """Drops every packet between each host of srcs and the addresses of
        dsts (only tcp to/from `ports` when given), in both directions, by an
        nftables table inside each src host."""
        addrs = ", ".join(self.hosts[d].ip for d in dsts)
        for s in srcs:
            if ports:  # the dsts' listeners: connections from s to them, both ways
                pl = ", ".join(str(p) for p in ports)
                rules = [("output", "ip daddr { %s } tcp dport { %s } drop" % (addrs, pl)),
                         ("input", "ip saddr { %s } tcp sport { %s } drop" % (addrs, pl))]
            else:
                rules = [("output", "ip daddr { %s } drop" % addrs),
                         ("input", "ip saddr { %s } drop" % addrs)]
            script = "table inet mccl_part {\n"
            for hook in ("input", "output"):
                script += "  chain %s { type filter hook %s priority 0; policy accept;\n" % (hook, hook)
                for h2, r in rules:
                    if h2 == hook:
                        script += "    %s\n" % r
                script += "  }\n"
            script += "}\n"
            self.heal_one(s)
            p = subprocess.run(["ip", "netns", "exec", self.hosts[s].ns, "nft", "-f", "-"],
                               input=script, capture_output=True, text=True, timeout=20)
            if p.returncode != 0:
                raise RuntimeError("nft on %s: %s" % (self.hosts[s].ns, p.stderr.strip()))
            self.parted.add(s)

    def heal_one(self, s):
        _run(["ip", "netns", "exec", self.hosts[s].ns, "nft", "delete", "table", "inet",
              "mccl_part"], check=False)
        self.parted.discard(s)

    def heal(self):
        for s in list(self.parted):
            self.heal_one(s)

    def veth_bytes(self, i):
        base = "/sys/class/net/eth0/statistics/"
        out = self.sh(i, ["cat", base + "rx_bytes", base + "tx_bytes"]).stdout.split()
        return int(out[0]), int(out[1])

    def close(self):
        if self.closed:
            return
        self.closed = True
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGCONT)  # a SIGSTOPped one must see the TERM
                    p.terminate()
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for ns in reversed(self.made):
            _run(["ip", "netns", "del", ns], check=False)
        self.made = []
        if self in _LIVE:
            _LIVE.remove(self)


def _close_all():
    for n in list(_LIVE):
        n.close()

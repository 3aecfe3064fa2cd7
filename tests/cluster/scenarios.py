"""Fault scenarios on a running Cluster (tests/cluster/cluster.py).

Each scenario injects one fault, holds it, removes it, and returns a row:
    scenario, ops (successful puts + gets while it ran), errors (failed puts),
    misses (gets that found nothing: normal under faults), wrong (gets whose
    bytes are not the put's: must be 0), recovery_s, hung, failures (reasons)
recovery_s: for each group of stores the fault touched, from the moment it
could work again (the fault removed; for the stores the fault did not cut
off, the moment it began) to the first put that starts a run of 3 good puts;
the largest of these. A store that does not get there in RECOVER_S, a store
process that died unasked, or one silent for HANG_S counts as hung/failed.

SCENARIOS maps a name to fn(cluster, rng, short) -> (info, checkpoints),
with checkpoints a list of (hosts, since). rng picks hosts and hold times
(chaos.py seeds it); short picks the fixed choices of the `make test` run."""

import os
import signal
import time

from cluster import CLIENT_TTL_S, ETCD_HOSTS, MASTER_HOSTS, RPC_PORT, until

RECOVER_S = 30
HANG_S = 20
SAN_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")


def _hold(rng, short, lo, hi):
    return lo if short else rng.uniform(lo, hi)


def kill9_host(c, rng, short):
    """kill -9 of every process of one host (etcd member, master, store);
    the rest carry on; then the host comes back (etcd rejoins with its data,
    the master as a standby, a new store)."""
    i = 3 if short else rng.randrange(c.n)
    t = time.monotonic()
    killed = c.kill_host(i)
    others = [j for j in range(c.n) if j != i]
    time.sleep(_hold(rng, short, 1.0, 4.0))  # the host stays down for a while
    c.leader()  # a leader serves (a standby took over if the leader was here)
    c.restart_host(i)
    return "host h%d: %s" % (i, "+".join(killed)), [(others, t), ([i], time.monotonic())]


def sigstop_store(c, rng, short):
    """SIGSTOP of one store for longer than client_ttl, then SIGCONT: the
    master drops it; resumed, it mounts again and works."""
    i = 2 if short else rng.randrange(c.n)
    w = c.workers[i]
    hold = CLIENT_TTL_S + _hold(rng, short, 2.0, 4.0)
    t = time.monotonic()
    os.kill(w.p.pid, signal.SIGSTOP)
    try:
        time.sleep(hold)  # the fault itself: stopped past its TTL
    finally:
        os.kill(w.p.pid, signal.SIGCONT)
    others = [j for j in range(c.n) if j != i]
    return "store h%d stopped %.1fs" % (i, hold), [(others, t), ([i], time.monotonic())]


def link_down(c, rng, short):
    """eth0 of one host down, then up again."""
    i = 3 if short else rng.randrange(c.n)
    hold = _hold(rng, short, 3.0, 6.0)
    t = time.monotonic()
    c.net.link(i, False)
    try:
        time.sleep(hold)
    finally:
        c.net.link(i, True)
    c.leader()
    others = [j for j in range(c.n) if j != i]
    return "h%d down %.1fs" % (i, hold), [(others, t), ([i], time.monotonic())]


def partition_master(c, rng, short):
    """nftables: half the stores lose the masters' RPC port (both masters),
    for longer than client_ttl; etcd and the TE paths stay; then healed."""
    hosts = list(range(c.n))
    if short:
        cut = [2, 3]
    else:
        rng.shuffle(hosts)
        cut = sorted(hosts[: c.n // 2])
    hold = CLIENT_TTL_S + _hold(rng, short, 2.0, 4.0)
    t = time.monotonic()
    c.net.partition(cut, list(MASTER_HOSTS), ports=[RPC_PORT])
    try:
        time.sleep(hold)
    finally:
        c.net.heal()
    rest = [j for j in range(c.n) if j not in cut]
    return "stores %s cut from masters %.1fs" % (cut, hold), \
        [(rest, t), (cut, time.monotonic())]


def tbf_cap(c, rng, short):
    """tbf on both ends of one host's veth: slow, never wrong, never stuck."""
    i = 1 if short else rng.randrange(c.n)
    rate = "20mbit" if short else rng.choice(["8mbit", "20mbit", "50mbit"])
    hold = _hold(rng, short, 4.0, 8.0)
    t = time.monotonic()
    c.net.cap(i, rate)
    w = c.workers[i]
    try:
        time.sleep(hold)
        puts = [x for x in w.lines if x[0] > t and x[1] == "OK" and x[2] == "PUT"]
    finally:
        c.net.cap(i, None)
    return "h%d at %s %.1fs: %d puts meanwhile" % (i, rate, hold, len(puts)), \
        [(list(range(c.n)), t)]


def etcd_member_kill(c, rng, short):
    """kill -9 of one etcd member (of 3); the pool carries on over the two
    left; then the member rejoins with its data dir."""
    i = 2 if short else rng.choice(ETCD_HOSTS)
    p = c.etcd[i]
    t = time.monotonic()
    p.kill()
    p.wait()
    try:
        time.sleep(_hold(rng, short, 3.0, 6.0))
        lead = c.leader()
    finally:
        c.start_etcd(i, "existing")
    c.wait_etcd(ETCD_HOSTS)
    return "etcd e%d killed; leader h%d" % (i, lead), [(list(range(c.n)), t)]


def leader_kill(c, rng, short):
    """kill -9 of the leading master: the standby takes over (its lease must
    run out first), the stores follow it; the killed one returns as standby."""
    lead = c.leader()
    t = time.monotonic()
    c.masters[lead].kill()
    c.masters[lead].wait()
    new = c.leader(timeout=30)
    c.start_master(lead)
    if new == lead:
        raise AssertionError("a killed master still leads")
    return "leader h%d killed, h%d leads" % (lead, new), [(list(range(c.n)), t)]


def leader_partition(c, rng, short):
    """nftables: the leader's host cut off from every other host. Its lease
    cannot be refreshed, so it stops serving; the majority side elects the
    other master; healed, the old leader stays a standby."""
    lead = c.leader()
    others = [j for j in range(c.n) if j != lead]
    t = time.monotonic()
    c.net.partition([lead], others)
    try:
        other = next(m for m in MASTER_HOSTS if m != lead)
        if not until(lambda: c.role(other) == "leader", 30, 0.1):
            raise AssertionError("no new leader while h%d was isolated" % lead)
        time.sleep(_hold(rng, short, 1.0, 4.0))
        if c.role(lead) == "leader":  # its own /role: it must know it lost the lease
            raise AssertionError("the isolated master still says leader")
    finally:
        c.net.heal()
    new = c.leader()
    return "leader h%d isolated, h%d leads" % (lead, new), \
        [(others, t), ([lead], time.monotonic())]


SCENARIOS = {
    "kill9_host": kill9_host,
    "sigstop_store": sigstop_store,
    "link_down": link_down,
    "partition_master": partition_master,
    "tbf_cap": tbf_cap,
    "etcd_member_kill": etcd_member_kill,
    "leader_kill": leader_kill,
    "leader_partition": leader_partition,
}


def _recovery(w, since):
    """Seconds from since to the first put of w that starts 3 good puts in a
    row, or None."""
    puts = [x for x in list(w.lines) if x[2] == "PUT" and x[0] > since]
    for j in range(len(puts) - 2):
        if all(p[1] == "OK" for p in puts[j:j + 3]):
            return puts[j][0] - since
    return None


def run(c, name, rng, short):
    """Runs scenario name and returns its row (failures empty when it held)."""
    t0 = time.monotonic()
    row = {"scenario": name, "ops": 0, "errors": 0, "misses": 0, "wrong": 0,
           "recovery_s": None, "hung": 0, "failures": [], "info": ""}
    try:
        row["info"], checks = SCENARIOS[name](c, rng, short)
    except AssertionError as e:
        row["failures"].append(str(e))
        checks = [(list(range(c.n)), time.monotonic())]
    worst = 0.0
    for hosts, since in checks:
        for h in hosts:
            w = c.workers[h]
            until(lambda: _recovery(w, since) is not None or w.p.poll() is not None,
                  RECOVER_S, 0.1)
            r = _recovery(w, since)
            if w.p.poll() is not None:
                row["failures"].append("store h%d exited (rc %s): %s" % (
                    h, w.p.returncode, w.stderr()[-1500:]))
                row["hung"] += 1
            elif r is None:
                row["failures"].append("store h%d: no 3 good puts in %ss after the fault"
                                       % (h, RECOVER_S))
                row["hung"] += 1
            else:
                worst = max(worst, r)
    now = time.monotonic()
    for h, w in c.workers.items():
        if w.p.poll() is None and now - w.last > HANG_S:
            row["failures"].append("store h%d silent for %.0fs" % (h, now - w.last))
            row["hung"] += 1
    row["recovery_s"] = round(worst, 2)
    for w in _all_workers(c):
        for t, a, b, _ in list(w.lines):
            if not t0 <= t <= now:
                continue
            if a == "OK":
                row["ops"] += 1
            elif a == "ERR":
                row["errors"] += 1
            elif a == "MISS":
                row["misses"] += 1
            elif a == "BAD":
                row["wrong"] += 1
    if row["wrong"]:
        row["failures"].append("%d gets returned wrong bytes" % row["wrong"])
    return row


def _all_workers(c):
    """Every worker incarnation the cluster ran (restarted ones too)."""
    return list(c.all_workers)


def sanitizer_reports(c):
    """Lines of ASan/UBSan reports in the store and master logs."""
    bad = []
    for root, _, files in os.walk(c.tmp):
        for f in files:
            if f.endswith((".err", ".log")) and (f.startswith("worker") or f.startswith("master")):
                with open(os.path.join(root, f), "rb") as fh:
                    text = fh.read().decode(errors="replace")
                if any(m in text for m in SAN_MARKS):
                    bad.append(f)
    return bad


def table(rows):
    """The rows as a fixed-width text table."""
    head = ("scenario", "ops", "errors", "misses", "wrong bytes", "recovery s", "hung", "detail")
    lines = [head]
    for r in rows:
        lines.append((r["scenario"], str(r["ops"]), str(r["errors"]), str(r["misses"]),
                      str(r["wrong"]), "%.2f" % r["recovery_s"], str(r["hung"]), r["info"]))
    w = [max(len(x[k]) for x in lines) for k in range(len(head))]
    return "\n".join("  ".join(x[k].ljust(w[k]) for k in range(len(head))).rstrip()
                     for x in lines)

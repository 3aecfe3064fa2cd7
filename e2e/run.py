"""Runner of the vLLM end-to-end scenarios (`make e2e`).

    build/e2e/venv/bin/python e2e/run.py [--only A,B] [--list] [--secret]

Imports e2e/scenarios/*.py in name order; the scenario's letter is the part
of its file name before the first "_" (a_offload -> A, a0_torch_buffers ->
A0). Each module has `run(ctx) -> dict | None` and raises AssertionError with
a clear message on failure. Each scenario gets the shared `Ctx` with its own
log directory build/e2e/logs/<module>/; every process it started is killed
when it ends, pass or fail. The plain baseline vLLM instance (ctx.baseline)
lives for the whole run. Prints PASS/FAIL per scenario with the reason and
the measurements it returned, then `N passed, N failed`; exit 1 on a failure.
Run it after e2e/setup.sh (the venv, our package, the model).

--secret runs every scenario under a cluster secret (docs/security.md): a
random secret in a 0600 file that every daemon gets with
--cluster_secret_file and every vLLM process with MC_CLUSTER_SECRET_FILE and
the `cluster_secret_file` field of its mooncake.json (harness.py); the
runner's own clients (A0) take it from MC_CLUSTER_SECRET_FILE. First the
check SECRET: a master under the secret refuses a client without it.
"""

import argparse
import glob
import secrets
import shutil
import tempfile
import importlib.util
import json
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))

from harness import BUILD, SECRET_ENV, Ctx  # noqa: E402


def scenario_files():
    for path in sorted(glob.glob(os.path.join(HERE, "scenarios", "*.py"))):
        name = os.path.basename(path)[:-3]
        if name.startswith("_"):
            continue
        yield name.split("_", 1)[0].upper(), name, path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated scenario letters, e.g. A,B")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--secret", action="store_true",
                    help="run under a cluster secret (a random one in a 0600 file)")
    args = ap.parse_args()
    only = {s.strip().upper() for s in args.only.split(",")} if args.only else None

    todo = [s for s in scenario_files() if only is None or s[0] in only]
    if args.list:
        for letter, name, _ in todo:
            print(letter, name)
        return 0

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_sigterm)
    secret_dir = secret_file = None
    for k in SECRET_ENV:  # a pool's secret is what --secret sets, never the caller's
        os.environ.pop(k, None)
    if args.secret:
        secret_dir = tempfile.mkdtemp(prefix="mc-e2e-secret-")
        secret_file = write_secret(secret_dir)
        os.environ["MC_CLUSTER_SECRET_FILE"] = secret_file  # this process's own clients (A0)
        todo.insert(0, ("SECRET", "secret_refused", None))
    ctx = Ctx("run", secret_file=secret_file)
    results = []
    t_run = time.monotonic()
    try:
        for letter, name, path in todo:
            ctx.set_scenario(name)
            print(f"--- {letter} {name} (logs: {ctx.log_dir})", flush=True)
            t0 = time.monotonic()
            try:
                if path is None:
                    measured = check_secret_refusal(ctx)
                else:
                    spec = importlib.util.spec_from_file_location(f"scenario_{name}", path)
                    mod = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(mod)
                    measured = mod.run(ctx)
                ok, why = True, ""
            except AssertionError as e:
                ok, why, measured = False, str(e) or "assertion failed", None
                traceback.print_exc()
            except Exception as e:  # a crash is a failure too, with its traceback
                ok, why, measured = False, f"{type(e).__name__}: {e}", None
                traceback.print_exc()
            finally:
                ctx.close(keep_baseline=True)
            dt = time.monotonic() - t0
            verdict = "PASS" if ok else "FAIL"
            line = f"{verdict} {letter} {name} ({dt:.0f} s)"
            if not ok:
                line += f": {why}"
            print(line, flush=True)
            if measured:
                print(f"    measured {letter}: " + json.dumps(measured, sort_keys=True), flush=True)
            results.append((letter, name, ok, why, measured))
    finally:
        ctx.close()
        if secret_dir:
            shutil.rmtree(secret_dir, ignore_errors=True)

    passed = sum(1 for r in results if r[2])
    failed = len(results) - passed
    summary = {
        "secret": bool(args.secret),
        "seconds": round(time.monotonic() - t_run),
        "results": [
            {"scenario": r[0], "module": r[1], "pass": r[2], "why": r[3], "measured": r[4]}
            for r in results
        ],
    }
    with open(os.path.join(BUILD, "results.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and results else 1


def write_secret(directory):
    """A random 64-hex-digit secret in directory/cluster-secret, mode 0600."""
    path = os.path.join(directory, "cluster-secret")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path


# What the refused client runs: a store set up against the master with no
# secret anywhere (no env, no config field); prints setup's return code.
_ANON_CLIENT = """
import sys
from mooncake.store import MooncakeDistributedStore
s = MooncakeDistributedStore()
print("setup rc", s.setup("127.0.0.1", "P2PHANDSHAKE", 16 << 20, 16 << 20, "tcp", "", sys.argv[1]))
"""


def check_secret_refusal(ctx):
    """Under --secret: a master with the secret refuses a client without it
    (setup fails with AUTH_REQUIRED, -1020) and says so in one log line."""
    import subprocess

    master = ctx.start_master(name="master_secret")
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    r = subprocess.run([ctx.python, "-c", _ANON_CLIENT, master.rpc_addr], env=env,
                       capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    rc = [ln for ln in r.stdout.splitlines() if ln.startswith("setup rc ")]
    assert rc and int(rc[0].split()[-1]) == -1020, (
        f"a client without the secret was not refused with AUTH_REQUIRED (-1020): {out[-2000:]}"
    )
    deadline = time.monotonic() + 10
    while "no proof of the cluster secret" not in open(master.log_path).read():
        assert time.monotonic() < deadline, f"no refusal line in {master.log_path}"
        time.sleep(0.1)
    line = next(ln for ln in open(master.log_path) if "no proof of the cluster secret" in ln)
    return {"anonymous_setup_rc": -1020, "master_log": line.strip()}


if __name__ == "__main__":
    sys.exit(main())

"""Runner of the vLLM end-to-end scenarios (`make e2e`).

    build/e2e/venv/bin/python e2e/run.py [--only A,B] [--list]

Imports e2e/scenarios/*.py in name order; the scenario's letter is the part
of its file name before the first "_" (a_offload -> A, a0_torch_buffers ->
A0). Each module has `run(ctx) -> dict | None` and raises AssertionError with
a clear message on failure. Each scenario gets the shared `Ctx` with its own
log directory build/e2e/logs/<module>/; every process it started is killed
when it ends, pass or fail. The plain baseline vLLM instance (ctx.baseline)
lives for the whole run. Prints PASS/FAIL per scenario with the reason and
the measurements it returned, then `N passed, N failed`; exit 1 on a failure.
Run it after e2e/setup.sh (the venv, our package, the model).
"""

import argparse
import glob
import importlib.util
import json
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))

from harness import BUILD, Ctx  # noqa: E402


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
    ctx = Ctx("run")
    results = []
    t_run = time.monotonic()
    try:
        for letter, name, path in todo:
            ctx.set_scenario(name)
            print(f"--- {letter} {name} (logs: {ctx.log_dir})", flush=True)
            t0 = time.monotonic()
            try:
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

    passed = sum(1 for r in results if r[2])
    failed = len(results) - passed
    summary = {
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


if __name__ == "__main__":
    sys.exit(main())

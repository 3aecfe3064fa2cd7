"""PNG plots for bench/compare/run.py: throughput and p99 by value size, one line per system.

    build/bench/venv/bin/python bench/compare/plot.py [build/bench/compare.json]

Two files next to the JSON: compare_throughput.png (GB/s) and compare_p99.png (p99 per call),
each with one panel per operation (put, get) and per shape (batch 1 x 1 thread, batch 32 x
4 threads or the largest shape the run had); Mooncake systems use their zero-copy form
(put_from / get_into), Redis its only one (SET/MSET, GET/MGET)."""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"ours-shm": "tab:blue", "ours-tcp": "tab:cyan", "upstream": "tab:orange",
          "redis": "tab:red"}


def shapes(report):
    have = {(c["batch"], c["conc"]) for c in report["cells"]}
    small = (1, 1) if (1, 1) in have else min(have)
    return [small, max(have)] if max(have) != small else [small]


def series(report, system, op, batch, conc, metric):
    form = "plain" if system == "redis" else "zc"
    pts = sorted((c["size"], c.get(metric, 0)) for c in report["cells"]
                 if c["system"] == system and c["op"] == op and c["form"] == form and
                 c["batch"] == batch and c["conc"] == conc and not c.get("error"))
    return [p[0] for p in pts], [p[1] for p in pts]


def plot(report, outdir):
    files = []
    shp = shapes(report)
    for metric, ylabel, name in (("gbps", "GB/s (values)", "throughput"),
                                 ("p99_us", "p99 per call (us)", "p99")):
        fig, axes = plt.subplots(2, len(shp), figsize=(5.5 * len(shp), 7.5), squeeze=False)
        for i, op in enumerate(("put", "get")):
            for j, (b, c) in enumerate(shp):
                ax = axes[i][j]
                for s in report["systems"]:
                    x, y = series(report, s, op, b, c, metric)
                    if x:
                        ax.plot(x, y, marker="o", label=s, color=COLORS.get(s))
                ax.set_xscale("log", base=2)
                ax.set_xticks([4096, 65536, 1 << 20, 4 << 20], ["4K", "64K", "1M", "4M"])
                ax.set_yscale("log")
                ax.set_title("%s, batch %d, %d thread%s" % (op, b, c, "s" if c > 1 else ""))
                ax.set_xlabel("value size")
                ax.set_ylabel(ylabel)
                ax.grid(True, alpha=0.3)
                ax.legend(fontsize=8)
        fig.suptitle("bench-compare %s (%s run, %d CPUs): %s" % (
            report["date"], "quick" if report["quick"] else "full", report["machine"]["cpus"],
            name))
        fig.tight_layout()
        path = os.path.join(outdir, "compare_%s.png" % name)
        fig.savefig(path, dpi=80)
        plt.close(fig)
        files.append(path)
    return files


if __name__ == "__main__":
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join("build", "bench", "compare.json")
    with open(src) as f:
        rep = json.load(f)
    for p in plot(rep, os.path.dirname(src)):
        print(p)

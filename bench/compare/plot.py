"""PNG plots for bench/compare/run.py: throughput and p99 by value size, one line per system.

    build/bench/venv/bin/python bench/compare/plot.py [build/bench/compare.json] [--markdown]

With --markdown it prints the tables of docs/benchmarks.md (targets, best figure per
operation and size, KV-cache trace, transfer engines) instead of plotting.

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


def human(n):
    return "%d KiB" % (n >> 10) if n < 1 << 20 else "%d MiB" % (n >> 20)


NAMES = {("put", "plain"): "put", ("put", "zc"): "put_from", ("get", "plain"): "get",
         ("get", "zc"): "get_into", ("exists", "plain"): "is_exist"}


def markdown(report):
    out = []
    systems = report["systems"]
    out.append("| target | op | size | ours | other | ratio | like-for-like range | need | |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for t in report["targets"]:
        unit = "GB/s" if "GB/s" in t["target"] else "keys/s"
        for r in t.get("rows", []):
            fmt = "%.2f" if unit == "GB/s" else "%.0f"
            l4l = ("%.2f–%.2f×" % (r["like_for_like_min"], r["like_for_like_max"])
                   if r["like_for_like_min"] is not None else "")
            out.append("| %s | %s | %s | %s | %s | **%.2f×** | %s | ≥ %.1f× | %s |" % (
                t["target"].split(",")[0], r["op"], human(r["size"]), fmt % r["ours"] + " " + unit,
                fmt % r["other"] + " " + unit, r["ratio"], l4l, t["need"],
                "met" if r["met"] else "**missed**"))
    out.append("")
    out.append("Best figure per operation and value size (over form, batch 1/32 and 1/4 threads; "
               "GB/s, keys/s at 4 KiB; the form that gave it in brackets):")
    out.append("")
    out.append("| op | size | " + " | ".join(systems) + " |")
    out.append("|---|---|" + "---|" * len(systems))
    sizes = sorted({c["size"] for c in report["cells"]})
    for op in ("put", "get", "exists"):
        for size in sizes:
            row = []
            for s in systems:
                cs = [c for c in report["cells"] if c["system"] == s and c["op"] == op and
                      c["size"] == size and not c.get("errors") and "gbps" in c]
                if not cs:
                    row.append("")
                    continue
                b = max(cs, key=lambda c: c["ops_per_s"])
                val = ("%.0f/s" % b["ops_per_s"] if size <= 4096 or op == "exists"
                       else "%.2f" % b["gbps"])
                row.append("%s (%s b%d c%d)" % (val, NAMES[(op, b["form"])], b["batch"],
                                                b["conc"]))
            if any(row):
                out.append("| %s | %s | %s |" % (op, human(size), " | ".join(row)))
    if report.get("trace"):
        out.append("")
        out.append("| KV-cache trace | block | requests | prefix hit rate | load p50 | load p99 "
                   "| decode GB/s | blocks found at decode |")
        out.append("|---|---|---|---|---|---|---|---|")
        for t in report["trace"]:
            p, d = t["prefill"], t["decode"]
            if "error" in p or "error" in d:
                continue
            out.append("| %s | %s | %d | %.1f%% | %.1f ms | %.1f ms | %.2f | %.1f%% |" % (
                t["system"], human(t["block_size"]), t["requests"], 100 * p["hit_rate"],
                d["p50_us"] / 1000, d["p99_us"] / 1000, d["gbps"], 100 * d["hit_rate"]))
    if report.get("te"):
        out.append("")
        out.append("| transfer_engine_bench (tcp) | block | write GB/s | read GB/s | "
                   "× memcpy (w / r) | memcpy, loopback GB/s |")
        out.append("|---|---|---|---|---|---|")
        te = {(t["system"], t["block_size"], t["operation"]): t for t in report["te"]}
        for (who, block) in sorted({(t["system"], t["block_size"]) for t in report["te"]},
                                   key=lambda k: (k[1], k[0] != "ours")):
            w, r = te.get((who, block, "write")), te.get((who, block, "read"))
            if not w or not r:
                continue
            out.append("| %s | %s | %.2f | %.2f | %.2f / %.2f | %.1f, %.1f |" % (
                who, human(block), w["gbps"], r["gbps"], w["ratio_to_memcpy"],
                r["ratio_to_memcpy"], w["memcpy_gbps"], w["loopback_gbps"]))
    return "\n".join(out)


if __name__ == "__main__":
    args = [x for x in sys.argv[1:] if not x.startswith("--")]
    src = args[0] if args else os.path.join("build", "bench", "compare.json")
    with open(src) as f:
        rep = json.load(f)
    if "--markdown" in sys.argv:
        print(markdown(rep))
    else:
        for p in plot(rep, os.path.dirname(src)):
            print(p)

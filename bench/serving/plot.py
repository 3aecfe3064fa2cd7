"""Plot and tables for bench/serving/run.py.

    build/serving/venv/bin/python bench/serving/plot.py [build/serving/serving.json] [--markdown]

serving_ttft.png: one panel per vLLM phase (tiny, wide), TTFT medians of recompute, pool hit
and local hit per system, every round's sample as a dot; a third panel with the LMCache
driver's medians per figure when the run had them. --markdown prints the tables of
docs/benchmarks.md's "Serving" section instead."""
import json
import os
import sys

COLORS = {"ours": "tab:blue", "upstream": "tab:orange", "lmcache": "tab:red"}
KINDS = (("recompute_s", "recompute"), ("pool_hit_s", "pool hit"), ("local_hit_s", "local hit"))


def plot(report, outdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vphases = [p for p in report["phases"] if p["phase"] != "driver" and p.get("medians")]
    dphase = next((p for p in report["phases"] if p["phase"] == "driver" and p.get("medians")),
                  None)
    n = len(vphases) + (1 if dphase else 0)
    if not n:
        return []
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 4.8), squeeze=False)
    for ax, ph in zip(axes[0], vphases):
        systems = list(ph["medians"])
        w = 0.8 / max(1, len(systems))
        for i, name in enumerate(systems):
            m = ph["medians"][name]
            xs = [j + (i - (len(systems) - 1) / 2) * w for j in range(len(KINDS))]
            ax.bar(xs, [m[k] for k, _ in KINDS], w, label=name, color=COLORS.get(name))
            for j, (k, _) in enumerate(KINDS):
                ys = [t for x in ph["samples"] if x["system"] == name and x["hit_ok"]
                      for t in (x["pool_hits_s"] if k == "pool_hit_s" else [x[k]])]
                ax.plot([xs[j]] * len(ys), ys, "k.", ms=3)
        ax.set_xticks(range(len(KINDS)), [label for _, label in KINDS])
        ax.set_yscale("log")
        ax.set_ylabel("TTFT (s), median; dots: rounds")
        ax.set_title("vLLM %s model: %d tokens, %.0f MiB loaded per hit\nload %.1f-%.1f" % (
            ph["phase"], ph["prompt_tokens"], ph["kv_bytes_per_hit"] / (1 << 20),
            ph["load_avg_start"], ph["load_avg_end"]), fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    if dphase:
        ax = axes[0][-1]
        keys = sorted(set().union(*[set(v) for v in dphase["medians"].values()]))
        systems = list(dphase["medians"])
        w = 0.8 / max(1, len(systems))
        for i, name in enumerate(systems):
            xs = [j + (i - (len(systems) - 1) / 2) * w for j in range(len(keys))]
            ax.bar(xs, [dphase["medians"][name].get(k, 0) for k in keys], w, label=name,
                   color=COLORS.get(name))
        ax.set_xticks(range(len(keys)), keys, rotation=60, ha="right", fontsize=6)
        ax.set_yscale("log")
        ax.set_ylabel("ms (median over rounds)")
        ax.set_title("LMCache MooncakestoreConnector", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle("bench-serving %s (%s run, %d CPUs)" % (
        report["date"], "quick" if report["quick"] else "full", report["cpus"]))
    fig.tight_layout()
    path = os.path.join(outdir, "serving_ttft.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return [path]


def markdown(report):
    out = ["| target | ours | other | ratio | need | |", "|---|---|---|---|---|---|"]
    for t in report["targets"]:
        if "ratio" not in t:
            out.append("| %s | | | | ≥ %.1f× | %s |" % (t["target"], t["need"], t["status"]))
            continue
        if "ours_s" in t:
            a, b = "%.3f s" % t["ours_s"], "%.3f s" % t["other_s"]
        else:
            a, b = "%.2f ms" % t["ours_ms"], "%.2f ms" % t["other_ms"]
        out.append("| %s | %s | %s | **%.2f×** | ≥ %.1f× | %s |" % (
            t["target"], a, b, t["ratio"], t["need"],
            "met" if t["status"] == "met" else "**missed**"))
    for ph in report["phases"]:
        if ph["phase"] == "driver" or not ph.get("medians"):
            continue
        out.append("")
        out.append("vLLM, %s model: %d-token prompt, %d tokens (%.0f MiB of KV) loaded on a hit; "
                   "medians of %s rounds; load average %.1f at the start, %.1f at the end; "
                   "memcpy %.1f GB/s (the hit's KV at memcpy speed: %.3f s)" % (
                       ph["phase"], ph["prompt_tokens"], ph["loaded_tokens"],
                       ph["kv_bytes_per_hit"] / (1 << 20),
                       "/".join(str(m["n"]) for m in ph["medians"].values()),
                       ph["load_avg_start"], ph["load_avg_end"], ph["memcpy_gbps"],
                       ph["memcpy_floor_s"]))
        out.append("")
        out.append("| system | recompute TTFT | pool-hit TTFT | local-hit TTFT | hit − local |")
        out.append("|---|---|---|---|---|")
        for name, m in ph["medians"].items():
            out.append("| %s | %.3f s | %.3f s | %.3f s | %.3f s |" % (
                name, m["recompute_s"], m["pool_hit_s"], m["local_hit_s"],
                m["hit_minus_local_s"]))
        prof = {n: ops for n, ops in ph.get("connector_profile", {}).items() if ops}
        if prof:
            out.append("")
            out.append("vLLM's own timing of its connector's operations over the phase (its "
                       "\"KV Transfer metrics\" log lines; mean ms per call, calls):")
            out.append("")
            out.append("| system | operations |")
            out.append("|---|---|")
            for n, ops in prof.items():
                out.append("| %s | %s |" % (n, ", ".join(
                    "%s %.1f ms ×%d" % (op, o["avg_ms"], o["count"])
                    for op, o in sorted(ops.items()))))
    d = next((p for p in report["phases"] if p["phase"] == "driver"), None)
    if d and d.get("medians"):
        out.append("")
        out.append("LMCache's MooncakestoreConnector (bench/serving/lmcache_driver.py), medians "
                   "over %d rounds; load average %.1f at the start, %.1f at the end" % (
                       d["rounds"], d["load_avg_start"], d["load_avg_end"]))
        out.append("")
        names = list(d["medians"])
        both = {"ours", "upstream"} <= set(names)
        out.append("| figure (ms) | " + " | ".join(names) + (" | upstream / ours |" if both else " |"))
        out.append("|---|" + "---|" * (len(names) + both))
        med = d["medians"]
        for k in sorted(set().union(*[set(v) for v in med.values()])):
            cells = ["%.2f" % med[n][k] if k in med[n] else "" for n in names]
            if both:
                cells.append("%.2f×" % (med["upstream"][k] / med["ours"][k])
                             if k in med["ours"] and k in med["upstream"] else "")
            out.append("| %s | %s |" % (k, " | ".join(cells)))
        for n, c in d.get("byte_checks", {}).items():
            out.append("")
            out.append("%s: %d chunks read back and compared byte for byte, %d wrong or missing." % (
                n, c["checked"], c["bad"]))
    return "\n".join(out)


if __name__ == "__main__":
    args = [x for x in sys.argv[1:] if not x.startswith("--")]
    src = args[0] if args else os.path.join("build", "serving", "serving.json")
    with open(src) as f:
        rep = json.load(f)
    if "--markdown" in sys.argv:
        print(markdown(rep))
    else:
        for p in plot(rep, os.path.dirname(src)):
            print(p)

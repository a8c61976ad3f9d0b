#!/usr/bin/env python3
"""Markdown tables of scripts/bench-train.sh from its runs directory (standard library only).

Run names are `<framework>-<data>-<model>-t<threads>-r<repeat>`; for each, `<name>.time` is
/usr/bin/time -v's output and `<name>.load` the load average at its start. uie runs keep their
output directory `<name>/` (`best/meta.json`, `best/history.json` with per-epoch timings); torch
runs print one JSON object as the last line of `<name>.log`.

usage: train_table.py RUNS_DIR
"""

import json
import os
import re
import statistics
import sys
from collections import defaultdict

STAGES = ["data", "upload", "forward", "backward", "optimizer", "clustering", "eval", "checkpoint"]
LABELS = {
    "uie": "uie-train (dfdx)",
    "uiebase": "uie-train baseline (BASELINE_BIN)",
    "torch": "PyTorch, Adam as it comes",
    "torchfused": "PyTorch, Adam fused=True",
}
DATA = {"census": "A: census", "movielens": "B: MovieLens"}


def time_v(path):
    text = open(path).read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", text).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", text).group(1))
    return {"rss_mib": rss / 1024.0, "cpu_s": user + system}


def uie_run(d):
    meta = json.load(open(os.path.join(d, "best", "meta.json")))["metrics"]
    history = json.load(open(os.path.join(d, "best", "history.json")))
    stages = {s: sum(h.get("timings", {}).get(s, 0.0) for h in history) for s in STAGES}
    aucs = {k.split(".", 1)[1]: v for k, v in meta.items() if k.startswith("test_auc.")}
    return {
        "samples_per_second": meta["samples_per_second"],
        "epochs": len(history),
        "stages": stages,
        "test_auc": aucs,
        "vmhwm_mib": meta.get("peak_rss_mib"),
    }


def torch_run(log):
    lines = [line for line in open(log).read().splitlines() if line.startswith("{")]
    r = json.loads(lines[-1])
    stages = {s: r["stages"].get(s) for s in STAGES}
    return {
        "samples_per_second": r["samples_per_second"],
        "epochs": r["epochs"],
        "stages": stages,
        "test_auc": r["test_auc"],
        "vmhwm_mib": r["peak_rss_mib"],
    }


def load(runs):
    groups = defaultdict(list)
    for name in sorted(os.listdir(runs)):
        m = re.fullmatch(r"(uie|uiebase|torch|torchfused)-(census|movielens)-(\w+)-t(\d+)-r(\d+)\.time", name)
        if not m:
            continue
        fw, data, model, t, _ = m.groups()
        base = os.path.join(runs, name[: -len(".time")])
        if "Maximum resident set size" not in open(base + ".time").read():
            continue  # still running (or killed): /usr/bin/time writes its report at the end
        r = uie_run(base) if fw.startswith("uie") else torch_run(base + ".log")
        r.update(time_v(base + ".time"))
        r["load"] = float(open(base + ".load").read().split()[1])
        groups[(data, model, fw, int(t))].append(r)
    return groups


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def main():
    runs = sys.argv[1]
    groups = load(runs)
    order = sorted(groups, key=lambda k: (k[0], k[1], list(LABELS).index(k[2]), k[3]))

    print("### Throughput and peak memory\n")
    print(
        "Median over repeats (min–max in brackets). `samples/s`: training rows per second of the"
        " optimisation steps (batch gathering, forward, backward, optimizer, UIE memory updates;"
        " not validation or checkpoints). `CPU s`: user + system time of the whole process."
        " `peak RSS`: /usr/bin/time -v's maximum resident set size.\n"
    )
    print("| protocol | model | framework | threads | epochs | samples/s | CPU s | test AUC (per task) | peak RSS MiB | load at start |")
    print("|---|---|---|---:|---:|---:|---:|---|---:|---|")
    for key in order:
        data, model, fw, t = key
        rs = groups[key]
        sps = [r["samples_per_second"] for r in rs]
        aucs = rs[0]["test_auc"]
        auc_text = ", ".join(f"{k} {v:.4f}" for k, v in aucs.items() if v is not None)
        loads = [r["load"] for r in rs]
        print(
            f"| {DATA[data]} | {model} | {LABELS[fw]} | {t} | {rs[0]['epochs']} | "
            f"{fmt(med(sps))} [{fmt(min(sps))}–{fmt(max(sps))}] | {fmt(med([r['cpu_s'] for r in rs]), 1)} | "
            f"{auc_text} | {fmt(med([r['rss_mib'] for r in rs]), 1)} | {min(loads):.1f}–{max(loads):.1f} |"
        )

    print("\n### Where the time goes\n")
    print(
        "Seconds summed over the run's epochs (median over repeats) and the share of their total."
        " uie-train: `data` = shuffle + batch gathering, `upload` = host weights → dfdx tensors,"
        " `forward` = forward + losses with the tape, `backward` = backward + gradients to the host,"
        " `optimizer` = Adam, `clustering` = UIE stream clustering, `P` updates and centre"
        " initialisation, `eval` = validation, `checkpoint` = writing best/ and last/. PyTorch:"
        " the same stages where they exist (`–` where they do not).\n"
    )
    print("| protocol | model | framework | threads | " + " | ".join(STAGES) + " | total s |")
    print("|---|---|---|---:|" + "---:|" * (len(STAGES) + 1))
    for key in order:
        data, model, fw, t = key
        rs = groups[key]
        secs = {s: med([r["stages"].get(s) for r in rs]) for s in STAGES}
        total = sum(v for v in secs.values() if v is not None)
        cells = [
            "–" if v is None else f"{v:.2f} ({100 * v / total:.0f} %)" for v in (secs[s] for s in STAGES)
        ]
        print(f"| {DATA[data]} | {model} | {LABELS[fw]} | {t} | " + " | ".join(cells) + f" | {total:.2f} |")

    print("\n### PyTorch against uie-train on Protocol A (census PLE)\n")
    print("Ratio of median samples/s, PyTorch / uie-train (above 1: PyTorch is faster).\n")
    print("| threads | uie-train samples/s | PyTorch samples/s | ratio | PyTorch fused Adam samples/s | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    threads = sorted({k[3] for k in groups if k[0] == "census"})
    for t in threads:
        base = med([r["samples_per_second"] for r in groups.get(("census", "ple", "uie", t), [])])
        cells = [fmt(base)]
        for fw in ("torch", "torchfused"):
            v = med([r["samples_per_second"] for r in groups.get(("census", "ple", fw, t), [])])
            ratio = f"{v / base:.2f}" if v and base else "–"
            cells += [fmt(v), ratio]
        print(f"| {t} | " + " | ".join(cells) + " |")


    if any(k[2] == "uiebase" for k in groups):
        print("\n### This tree against the baseline binary\n")
        print("Ratio of median samples/s and of median CPU seconds, this tree / baseline.\n")
        print("| protocol | model | threads | baseline samples/s | samples/s | ratio | baseline CPU s | CPU s | ratio | baseline peak RSS MiB | peak RSS MiB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key in order:
            data, model, fw, t = key
            if fw != "uie" or (data, model, "uiebase", t) not in groups:
                continue
            new, old = groups[key], groups[(data, model, "uiebase", t)]
            s_new = med([r["samples_per_second"] for r in new])
            s_old = med([r["samples_per_second"] for r in old])
            c_new = med([r["cpu_s"] for r in new])
            c_old = med([r["cpu_s"] for r in old])
            print(
                f"| {DATA[data]} | {model} | {t} | {fmt(s_old)} | {fmt(s_new)} | {s_new / s_old:.2f} | "
                f"{fmt(c_old, 1)} | {fmt(c_new, 1)} | {c_new / c_old:.2f} | "
                f"{fmt(med([r['rss_mib'] for r in old]), 1)} | {fmt(med([r['rss_mib'] for r in new]), 1)} |"
            )


if __name__ == "__main__":
    main()

"""The ONNX Runtime side of the inference and scaling benchmarks.

Two commands:

  compare --model M --inputs DIR --tract BIN [--batches 1,16,256] [--threads 1,2] [--rounds 3]
          [--seconds 1.0] [--min-calls 100] [--warmup 20] [--json OUT] [--baseline BIN2]
      Starts the tract harness (`BIN serve`, src/bin/bench_inference.rs) on the same model
      and inputs, then for each round and batch size times, in turn, tract with the runtime's
      default options, plain tract (the runtime's rewrites and register clearing off), and ONNX Runtime with each intra-op
      thread count, each for a chunk of at least SECONDS and MIN_CALLS calls after WARMUP untimed
      calls. The order of the sides rotates from one round to the next, so load on the machine
      affects every side alike. The samples of all rounds are pooled per case; the command prints
      markdown tables of p50, p99 (µs) and throughput (rows/s) and the ratios, and writes the
      summary to OUT as JSON. With --baseline, a second harness (another build of the same
      benchmark binary, e.g. from an earlier commit) runs its default options as one more side of
      the same rounds, and a table compares its p50 with this build's.

  cases --model M --feeds F [F ...] [--threads 1] [--seconds 1.0] [--min-calls 10] [--warmup 3]
      Times ONNX Runtime on each feeds file (one session) and prints one JSON object with the
      session load time and p50, p99, mean (µs) and rows/s per feeds file (the scaling benchmark).

A timed call is one `InferenceSession.run` of every output on one batch. Sessions use the CPU
provider, all graph optimisations, sequential execution, one inter-op thread and the given
intra-op thread count; a new session is made for each chunk and dropped after it, so an idle
ONNX Runtime thread pool never competes with the tract side. Percentiles are numpy's (linear
between the closest ranks), the rule the Rust side uses too. Feeds files map input names to
{"dtype": "int64"|"float32", "shape": [...], "data": [...]}.
"""
import argparse
import gc
import json
import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort


def load_feeds(path):
    with open(path) as f:
        doc = json.load(f)
    return {
        name: np.asarray(t["data"], dtype=t["dtype"]).reshape(t["shape"])
        for name, t in doc.items()
    }


def rows_of(feeds):
    return int(next(iter(feeds.values())).shape[0])


def session(model, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def time_calls(fn, warmup, seconds, min_calls):
    for _ in range(warmup):
        fn()
    samples, spent = [], 0
    min_ns = int(seconds * 1e9)
    while spent < min_ns or len(samples) < max(min_calls, 1):
        a = time.perf_counter_ns()
        fn()
        d = time.perf_counter_ns() - a
        spent += d
        samples.append(d)
    return samples


def summarise(samples, rows):
    s = np.asarray(samples, dtype=np.float64)
    mean = float(s.mean())
    return {
        "calls": int(s.size),
        "p50_us": float(np.percentile(s, 50)) / 1e3,
        "p99_us": float(np.percentile(s, 99)) / 1e3,
        "mean_us": mean / 1e3,
        "rows_per_s": rows / (mean / 1e9),
    }


def ort_chunk(model, threads, feeds, warmup, seconds, min_calls):
    s = session(model, threads)
    samples = time_calls(lambda: s.run(None, feeds), warmup, seconds, min_calls)
    del s
    gc.collect()
    return samples


def cmd_cases(a):
    t0 = time.perf_counter()
    s = session(a.model, a.threads)
    load_s = time.perf_counter() - t0
    cases = []
    for path in a.feeds:
        feeds = load_feeds(path)
        samples = time_calls(lambda: s.run(None, feeds), a.warmup, a.seconds, a.min_calls)
        cases.append({"feeds": path, "batch": rows_of(feeds), **summarise(samples, rows_of(feeds))})
    print(json.dumps({"onnxruntime": ort.__version__, "threads": a.threads, "load_s": load_s,
                      "cases": cases}))


def cmd_compare(a):
    batches = [int(x) for x in a.batches.split(",")]
    threads = [int(x) for x in a.threads.split(",")]
    feeds = {n: load_feeds(f"{a.inputs}/inputs_{n}.json") for n in batches}

    def start(binary):
        harness = subprocess.Popen(
            [binary, "serve", "--model", a.model, "--inputs", a.inputs, "--batches", a.batches],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = json.loads(harness.stdout.readline() or "{}")
        if not hello.get("ready"):
            sys.exit(f"the tract harness {binary} did not start: {harness.wait()}")
        return harness, hello

    tract, ready = start(a.tract)
    harnesses = [tract]
    baseline = None
    if a.baseline:
        baseline, _ = start(a.baseline)
        harnesses.append(baseline)

    def tract_chunk(variant, n, harness=tract):
        harness.stdin.write(f"{variant} {n} {a.seconds} {a.min_calls} {a.warmup}\n")
        harness.stdin.flush()
        line = harness.stdout.readline()
        if not line:
            sys.exit(f"the tract harness stopped: {harness.wait()}")
        return json.loads(line)["samples_ns"]

    sides = ["tract", "tract-nofuse"] + (["baseline"] if baseline else [])
    sides += [f"ort-{t}" for t in threads]
    pooled = {(side, n): [] for side in sides for n in batches}
    for r in range(a.rounds):
        for n in batches:
            k = r % len(sides)
            for side in sides[k:] + sides[:k]:
                if side == "tract":
                    samples = tract_chunk("default", n)
                elif side == "tract-nofuse":
                    samples = tract_chunk("nofuse", n)
                elif side == "baseline":
                    samples = tract_chunk("default", n, baseline)
                else:
                    t = int(side.split("-")[1])
                    samples = ort_chunk(a.model, t, feeds[n], a.warmup, a.seconds, a.min_calls)
                pooled[(side, n)] += samples
            print(f"round {r + 1}/{a.rounds}, batch {n}: done", file=sys.stderr, flush=True)
    for harness in harnesses:
        harness.stdin.close()
        if harness.wait() != 0:
            sys.exit(f"the tract harness failed: {harness.returncode}")

    summary = {f"{side}/{n}": summarise(pooled[(side, n)], n) for side in sides for n in batches}
    report = {
        "onnxruntime": ort.__version__,
        "fused_retrievals": ready["fused_retrievals"],
        "rewrites": ready.get("rewrites"),
        "rounds": a.rounds, "seconds_per_chunk": a.seconds, "min_calls_per_chunk": a.min_calls,
        "warmup_per_chunk": a.warmup, "summary": summary,
    }
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump(report, f, indent=1)
        os.replace(a.json + ".tmp", a.json)

    print(f"\nonnxruntime {ort.__version__}; tract one thread (default options: "
          f"{ready.get('rewrites', '?')}); {a.rounds} rounds × "
          f"≥ {a.seconds} s and ≥ {a.min_calls} calls per case and round after {a.warmup} "
          f"warm-up calls; times in µs\n")
    print("| batch | ORT threads | tract p50 | tract p99 | tract rows/s | ORT p50 | ORT p99 "
          "| ORT rows/s | ORT p50 / tract p50 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in batches:
        tr = summary[f"tract/{n}"]
        for t in threads:
            o = summary[f"ort-{t}/{n}"]
            print(f"| {n} | {t} | {tr['p50_us']:.1f} | {tr['p99_us']:.1f} | {tr['rows_per_s']:.0f} "
                  f"| {o['p50_us']:.1f} | {o['p99_us']:.1f} | {o['rows_per_s']:.0f} "
                  f"| {o['p50_us'] / tr['p50_us']:.2f}× |")
    print("\n| batch | tract default p50 | plain tract (runtime additions off) p50 | off / default |")
    print("|---:|---:|---:|---:|")
    for n in batches:
        d, o = summary[f"tract/{n}"], summary[f"tract-nofuse/{n}"]
        print(f"| {n} | {d['p50_us']:.1f} | {o['p50_us']:.1f} | {o['p50_us'] / d['p50_us']:.2f}× |")
    if baseline:
        print(f"\n| batch | tract default p50 | baseline ({a.baseline}) default p50 "
              "| baseline / this build |")
        print("|---:|---:|---:|---:|")
        for n in batches:
            d, b = summary[f"tract/{n}"], summary[f"baseline/{n}"]
            print(f"| {n} | {d['p50_us']:.1f} | {b['p50_us']:.1f} "
                  f"| {b['p50_us'] / d['p50_us']:.2f}× |")
    print()
    t1 = threads[0]
    for n in batches:
        ratio = summary[f"ort-{t1}/{n}"]["p50_us"] / summary[f"tract/{n}"]["p50_us"]
        want, text = (1.25, "at least 1.25× faster than") if n == 1 else (1.0, "no slower than")
        verdict = "met" if ratio >= want else "NOT met"
        print(f"target at batch {n}: tract p50 {text} ONNX Runtime ({t1} thread): "
              f"ORT/tract = {ratio:.2f}× → {verdict}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--model", required=True)
    c.add_argument("--inputs", required=True)
    c.add_argument("--tract", required=True)
    c.add_argument("--batches", default="1,16,256")
    c.add_argument("--threads", default="1,2")
    c.add_argument("--rounds", type=int, default=3)
    c.add_argument("--seconds", type=float, default=1.0)
    c.add_argument("--min-calls", type=int, default=100)
    c.add_argument("--warmup", type=int, default=20)
    c.add_argument("--json")
    c.add_argument("--baseline")
    k = sub.add_parser("cases")
    k.add_argument("--model", required=True)
    k.add_argument("--feeds", nargs="+", required=True)
    k.add_argument("--threads", type=int, default=1)
    k.add_argument("--seconds", type=float, default=1.0)
    k.add_argument("--min-calls", type=int, default=10)
    k.add_argument("--warmup", type=int, default=3)
    a = p.parse_args()
    cmd_compare(a) if a.cmd == "compare" else cmd_cases(a)


if __name__ == "__main__":
    main()

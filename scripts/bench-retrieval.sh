#!/usr/bin/env bash
# Rewrite benchmark: the compiled MovieLens full-UIE model in uie-runtime (tract, optimised, one
# thread) with every runtime rewrite (retrieval, attention, gate mixes, embedding lookups: "fused"), with
# all but the lookups ("no lookups") and with none ("standard"), against ONNX Runtime (one,
# then two intra-op threads) on the same file and the same inputs, in the same run; batch 1, 16
# and 256.
#
# 1. `cargo bench -p uie-bench --bench retrieval` (criterion): compiles the checkpoint
#    ($UIE_BENCH_CHECKPOINT, default out/protocol-b/full-uie-s2/best; trained briefly when absent),
#    writes target/bench-retrieval/{model.onnx,inputs_<n>.json} and times the three tract
#    variants;
# 2. times ONNX Runtime (the test venv, or $UIE_PYTHON) on those files: warm-up, then the mean
#    over repeated runs of at least 3 s per case;
# 3. prints a markdown table of mean times per call and ratios (> 1 means the fused runtime is
#    faster);
# 4. times the three tract variants again interleaved (one call of each per round, medians:
#    `cargo run --release -p uie-bench --bin rewrites`), the comparison to trust on a loaded
#    machine.
#
# Usage: scripts/bench-retrieval.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${UIE_PYTHON:-.venv/bin/python}"
cargo bench -p uie-bench --bench retrieval -- --noplot movielens_uie

"$PY" - <<'PYEOF'
import json, os, time
import numpy as np
import onnxruntime as ort

out = "target/bench-retrieval"
crit = "target/criterion/movielens_uie"
batches = [1, 16, 256]

def criterion_mean_us(label, n):
    with open(f"{crit}/{label}/{n}/new/estimates.json") as f:
        return json.load(f)["mean"]["point_estimate"] / 1000.0

def ort_mean_us(threads, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(f"{out}/model.onnx", so, providers=["CPUExecutionProvider"])
    for _ in range(50):
        s.run(None, feeds)
    total, runs, t0 = 0.0, 0, time.perf_counter()
    while time.perf_counter() - t0 < 3.0 or runs < 100:
        a = time.perf_counter()
        s.run(None, feeds)
        total += time.perf_counter() - a
        runs += 1
    return total / runs * 1e6

rows = []
for n in batches:
    with open(f"{out}/inputs_{n}.json") as f:
        doc = json.load(f)
    feeds = {k: np.asarray(v["data"], dtype=v["dtype"]).reshape(v["shape"]) for k, v in doc.items()}
    fused = criterion_mean_us("fused", n)
    nolk = criterion_mean_us("no_lookups", n)
    std = criterion_mean_us("standard", n)
    o1 = ort_mean_us(1, feeds)
    o2 = ort_mean_us(2, feeds)
    rows.append((n, fused, nolk, std, o1, o2))

print()
print(f"onnxruntime {ort.__version__}; times are mean µs per call (one batch)")
print()
print("| batch | tract fused | tract no lookups | tract standard | ORT 1 thread | ORT 2 threads "
      "| no lookups / fused | standard / fused | ORT 1t / fused | ORT 2t / fused |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n, fu, nl, st, o1, o2 in rows:
    print(f"| {n} | {fu:.1f} | {nl:.1f} | {st:.1f} | {o1:.1f} | {o2:.1f} "
          f"| {nl/fu:.2f}× | {st/fu:.2f}× | {o1/fu:.2f}× | {o2/fu:.2f}× |")
PYEOF

cargo run --release -p uie-bench --bin rewrites

#!/usr/bin/env bash
# Fused attention and gate mixes: the compiled MovieLens model in uie-runtime (tract,
# optimised, one thread), at batch 1, 16 and 256.
#
# 1. Interleaved engine options: the default options, without the fused PLE gate mixes, without
#    the fused attention, and without any runtime rewrite (median over rounds of alternating
#    blocks, and the median of the per-round ratios; crates/uie-bench/src/bin/compare_options.rs).
# 2. Interleaved against ONNX Runtime (one intra-op thread, sequential, all optimisations) on the
#    same file and inputs: each round times tract (default options, a fresh process) and then ORT
#    for every batch size; the table gives the medians over rounds and the median per-round ratio
#    (> 1 means tract is faster).
#
# Needs target/bench-retrieval/ from scripts/bench-retrieval.sh (run first when absent). Prints
# the load before and after.
#
# Usage: scripts/bench-attention.sh [option rounds (21)] [ORT rounds (9)]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f target/bench-retrieval/model.onnx ]; then
    scripts/bench-retrieval.sh
fi
cargo build --release -q -p uie-bench --bin compare_options
echo "load before: $(uptime)"
target/release/compare_options "${1:-21}"
PY="${UIE_PYTHON:-.venv/bin/python}"
ROUNDS="${2:-9}" "$PY" - <<'PYEOF'
import json, os, subprocess, time
import numpy as np
import onnxruntime as ort

out = "target/bench-retrieval"
batches = [1, 16, 256]
so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
s = ort.InferenceSession(f"{out}/model.onnx", so, providers=["CPUExecutionProvider"])
feeds = {}
for n in batches:
    with open(f"{out}/inputs_{n}.json") as f:
        doc = json.load(f)
    feeds[n] = {k: np.asarray(v["data"], dtype=v["dtype"]).reshape(v["shape"]) for k, v in doc.items()}

def ort_us(n):
    reps = max(10, min(400, 4000 // n))
    for _ in range(reps // 4 + 1):
        s.run(None, feeds[n])
    best = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            s.run(None, feeds[n])
        best.append((time.perf_counter() - t0) / reps * 1e6)
    return float(np.median(best))

rounds = int(os.environ["ROUNDS"])
tract, onnx = {n: [] for n in batches}, {n: [] for n in batches}
for r in range(rounds):
    got = subprocess.run(["target/release/compare_options", "3", "default"],
                         check=True, capture_output=True, text=True).stdout
    for line in got.splitlines():
        _, n, us = line.split()
        tract[int(n)].append(float(us))
    for n in batches:
        onnx[n].append(ort_us(n))

print()
print(f"onnxruntime {ort.__version__}, {rounds} interleaved rounds; median µs per call")
print()
print("| batch | tract default | ORT 1 thread | ORT / tract (median per round) |")
print("|---:|---:|---:|---:|")
for n in batches:
    ratio = float(np.median([o / t for o, t in zip(onnx[n], tract[n])]))
    print(f"| {n} | {np.median(tract[n]):.1f} | {np.median(onnx[n]):.1f} | {ratio:.2f}× |")
PYEOF
echo "load after: $(uptime)"

#!/usr/bin/env bash
# Inference benchmark: the compiled MovieLens model in uie-runtime (tract, through the
# public API with the runtime's default options, one thread) against ONNX Runtime (Python, the same
# file and the same inputs, 1 then 2 intra-op threads), batch 1, 16 and 256, both sides in one run.
#
# 1. `bench_inference prepare` compiles $UIE_BENCH_CHECKPOINT (default
#    out/protocol-b/full-uie-s2/best; trained briefly when absent) to target/bench-inference/model.onnx
#    and writes real MovieLens test inputs target/bench-inference/inputs_<n>.json;
# 2. crates/uie-bench/python/bench_ort.py compare drives both sides: per round and batch size it
#    times tract (default options, and every runtime rewrite off) and ONNX Runtime (each thread
#    count) in turn, rotating the order each round, ≥ UIE_BENCH_SECONDS (1) and
#    ≥ UIE_BENCH_MIN_CALLS (100) calls per chunk after UIE_BENCH_WARMUP (20) warm-up calls,
#    UIE_BENCH_ROUNDS (3) rounds; samples are pooled per case (so ≥ 3 s and ≥ 300 calls per case
#    by default);
# 3. prints markdown tables of p50 / p99 latency (µs), rows/s and ORT/tract ratios, and whether the
#    latency targets are met (against ONNX Runtime on one thread: tract is single-threaded);
#    writes the summary to target/bench-inference/results.json.
#
# With UIE_BENCH_BASELINE=BIN (a bench_inference binary built from another commit), that build's
# default options run as one more side of the same rounds: the before/after check of a change.
#
# Usage: scripts/bench-inference.sh   (Python: the test venv, or $UIE_PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${UIE_PYTHON:-.venv/bin/python}"
[[ -x "$PY" ]] || bash scripts/setup-venv.sh
OUT=target/bench-inference
BATCHES="${UIE_BENCH_BATCHES:-1,16,256}"

cargo build --release -p uie-bench --bin bench_inference
BIN=target/release/bench_inference
CK_ARGS=()
[[ -n "${UIE_BENCH_CHECKPOINT:-}" ]] && CK_ARGS=(--checkpoint "$UIE_BENCH_CHECKPOINT")
BASE_ARGS=()
[[ -n "${UIE_BENCH_BASELINE:-}" ]] && BASE_ARGS=(--baseline "$UIE_BENCH_BASELINE")
"$BIN" prepare "${CK_ARGS[@]}" --out "$OUT" --batches "$BATCHES"

echo "load before: $(uptime)"
"$PY" crates/uie-bench/python/bench_ort.py compare --model "$OUT/model.onnx" --inputs "$OUT" --tract "$BIN" \
    --batches "$BATCHES" --threads 1,2 --rounds "${UIE_BENCH_ROUNDS:-3}" \
    --seconds "${UIE_BENCH_SECONDS:-1}" --min-calls "${UIE_BENCH_MIN_CALLS:-100}" \
    --warmup "${UIE_BENCH_WARMUP:-20}" --json "$OUT/results.json" "${BASE_ARGS[@]}"
echo "load after: $(uptime)"

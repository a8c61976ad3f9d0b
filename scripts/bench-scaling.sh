#!/usr/bin/env bash
# Scaling benchmark: p50 latency of the compiled model in uie-runtime (tract, default
# options, one thread) and ONNX Runtime (one intra-op thread, same file and inputs) as one size
# varies at a time, from the MovieLens full-UIE config with seeded random weights and rows
# (latency depends on shapes, not values): centres N (256 … 65,536), history length L (0 … 500),
# users in P (1e3 … 1e7, external data) and batch size (1 … 1024). See
# crates/uie-bench/src/bin/bench_scaling.rs.
#
# Writes docs/figures/bench-scaling-{centres,history,batch,users}.{csv,png}. Models are compiled
# into target/bench-scaling/ and deleted after each point; the users sweep runs last (its largest
# model is 1.6 GB of external data).
#
# Usage: scripts/bench-scaling.sh [SWEEP ...]   (default: centres history batch users)
# Env: UIE_BENCH_SECONDS (minimum timed seconds per case, default 1), UIE_BENCH_MIN_CALLS (10),
#      UIE_PYTHON (default: the test venv).
set -euo pipefail
cd "$(dirname "$0")/.."

[[ -x "${UIE_PYTHON:-.venv/bin/python}" ]] || bash scripts/setup-venv.sh
SWEEPS=("$@")
[[ ${#SWEEPS[@]} -gt 0 ]] || SWEEPS=(centres history batch users)

cargo build --release -p uie-bench --bin bench_scaling
BIN=target/release/bench_scaling
for sweep in "${SWEEPS[@]}"; do
    echo "== $sweep; load: $(uptime)"
    "$BIN" run --sweep "$sweep" --work target/bench-scaling --figures docs/figures \
        --seconds "${UIE_BENCH_SECONDS:-1}" --min-calls "${UIE_BENCH_MIN_CALLS:-10}"
    column -s, -t < "docs/figures/bench-scaling-$sweep.csv"
done
echo "load after: $(uptime)"

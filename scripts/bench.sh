#!/usr/bin/env bash
# Every benchmark in one run, each side by side with what it is compared against:
#   bench-inference.sh  uie-runtime (tract) against ONNX Runtime, batch 1/16/256 (p50, p99, rows/s)
#   bench-scaling.sh    latency against centres N, history length L, users in P and batch size
#   bench-retrieval.sh  the fused centre retrieval against the standard ops and ONNX Runtime
#   cargo bench -p uie-bench --bench predict     the runtime's hot paths (criterion)
#   bench-compile.sh    compile time and peak memory; then `cargo bench -p uie-bench --bench compile`
#   bench-train.sh      training speed and memory, and the same PLE in PyTorch
# Run it on an idle machine; every step prints the load (uptime) it ran under.
#
# Usage: scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo; echo "######## $1  ($(date -u +%FT%TZ); load: $(uptime | sed 's/.*load average: //'))"; }

step "inference: uie-runtime against ONNX Runtime"
bash scripts/bench-inference.sh
step "runtime hot paths (criterion)"
cargo bench -p uie-bench --bench predict -- --noplot
step "fused retrieval"
bash scripts/bench-retrieval.sh
step "compile: time and peak memory"
bash scripts/bench-compile.sh
step "compiler hot path (criterion)"
cargo bench -p uie-bench --bench compile -- --noplot
step "training: uie-train and PyTorch"
bash scripts/bench-train.sh
step "scaling"
bash scripts/bench-scaling.sh
step "done"

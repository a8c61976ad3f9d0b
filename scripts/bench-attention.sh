#!/usr/bin/env bash
# Issue 8, fused attention: interleaved timing of the compiled MovieLens model in uie-runtime
# (tract, optimised, one thread) with the default options, without the fused PLE gate mixes,
# without the fused attention, and without any runtime rewrite, at batch 1, 16 and 256 (median over rounds of alternating blocks,
# and the median per-round ratio). Needs target/bench-retrieval/ from scripts/bench-retrieval.sh
# (run it first when absent). Records the load before and after.
#
# Usage: scripts/bench-attention.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f target/bench-retrieval/model.onnx ]; then
    scripts/bench-retrieval.sh
fi
cargo build --release -q -p uie-e2e --example compare_options
echo "load before: $(uptime)"
target/release/examples/compare_options "${1:-21}"
echo "load after: $(uptime)"

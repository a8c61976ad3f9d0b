#!/usr/bin/env bash
# The main job on the bundled data: build, train the flagship (PLE + full UIE: UPE, UCBE, UCSE) on
# MovieLens ml-latest-small (Protocol B), compile the best checkpoint to one ONNX file, verify it
# against the trainer's forward pass in tract, and print where it is.
#   usage: scripts/run.sh [CONFIG]   (default models/movielens-uie.toml; models/census-ple.toml
#          runs the PLE spine on Census-Income instead)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
config="${1:-models/movielens-uie.toml}"
name="$(basename "$config" .toml)"
out="${UIE_OUT:-out/$name}"
cargo build --release --locked --bin uie-train --bin uie-compile
./target/release/uie-train train --config "$config" --out "$out"
./target/release/uie-train eval --checkpoint "$out/best"
./target/release/uie-compile build "$out/best" -o "$out/model.onnx"
./target/release/uie-compile verify "$out/model.onnx" --checkpoint "$out/best"
./target/release/uie-compile inspect "$out/model.onnx" --summary
case "$out" in /*) shown="$out" ;; *) shown="$root/$out" ;; esac
echo "model: $shown/model.onnx"
echo "plots: $shown/plots/"

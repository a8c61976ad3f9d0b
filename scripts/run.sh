#!/usr/bin/env bash
# The main job on the bundled data: build, train PLE on Census-Income (Protocol A), compile the
# best checkpoint to ONNX, verify it against the trainer's forward pass, print where it is.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${UIE_OUT:-out/census}"
cargo build --release --locked --bin uie-train --bin uie-compile
./target/release/uie-train train --config models/census-ple.toml --out "$out"
./target/release/uie-compile build "$out/best" -o "$out/model.onnx"
./target/release/uie-compile verify "$out/model.onnx" --checkpoint "$out/best"
./target/release/uie-compile inspect "$out/model.onnx"
echo "model: $root/$out/model.onnx"

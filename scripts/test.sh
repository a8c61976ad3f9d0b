#!/usr/bin/env bash
# Sets up everything the tests need and runs all of them: formatting, lints, unit tests, the
# end-to-end parity tests (dfdx, tract plain and optimised, ONNX Runtime from a venv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup-venv.sh
export UIE_PYTHON="$root/.venv/bin/python"
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets --locked -- -D warnings
cargo test --release --workspace --locked --exclude uie-e2e
# The end-to-end tests print what they measured (largest differences, checker reports): show it.
cargo test --release --locked -p uie-e2e -- --show-output

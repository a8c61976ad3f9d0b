#!/usr/bin/env bash
# Protocol A of docs/evaluation.md: PLE, CGC and MMoE on Census-Income, 3 seeds each, test AUC per
# task as mean ± std. Writes docs/protocol-a.md (the table, the command, the commit, the machine).
#   usage: scripts/protocol-a.sh [OUT_DIR]   (default out/protocol-a)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-out/protocol-a}"
cargo build --release --locked --bin uie-train
mkdir -p "$out"
for model in ple cgc mmoe; do
  for seed in 1 2 3; do
    ./target/release/uie-train train --config "models/census-$model.toml" --seed "$seed" \
      --out "$out/$model-s$seed" --quiet > "$out/$model-s$seed.log" 2>&1 ||
      { cat "$out/$model-s$seed.log"; exit 1; }
  done
done
python3 scripts/protocol_a_table.py "$out" > docs/protocol-a.md
cat docs/protocol-a.md

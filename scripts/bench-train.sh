#!/usr/bin/env bash
# Training speed and memory: uie-train on Protocol A (census PLE) and Protocol B
# (MovieLens PLE and full UIE), and the same census PLE in PyTorch (CPU, PyPI wheel, same rows,
# same initial weights, same threads). Per run: samples/s of the optimisation steps, where the time
# goes (from the trainer's per-epoch timings in best/history.json), peak RSS (/usr/bin/time -v).
# The uie and torch runs alternate, thread count by thread count, repeat by repeat; the tables
# report the median over repeats. Writes OUT_DIR/report.md and prints it.
#
#   usage: scripts/bench-train.sh [OUT_DIR]              (default out/bench-train)
#   env:   THREADS="1 2"   thread counts (RAYON_NUM_THREADS for dfdx's gemm, torch.set_num_threads)
#          REPEATS=3       repeats of every run
#          EPOCHS_A=4      epochs of the census runs (both frameworks; early stopping may end sooner)
#          EPOCHS_B=3      epochs of the MovieLens runs (full UIE: 1 warm-up + 2 full)
#          PROTOCOL_B=1    0 skips the MovieLens runs
#          BASELINE_BIN=   another uie-train binary (e.g. built from an earlier commit) whose runs
#                          alternate with this tree's as "uie-train baseline" (before/after)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-out/bench-train}"
threads="${THREADS:-1 2}"
repeats="${REPEATS:-3}"
epochs_a="${EPOCHS_A:-4}"
epochs_b="${EPOCHS_B:-3}"
protocol_b="${PROTOCOL_B:-1}"

cargo build --release --locked -p uie-train --bin uie-train
scripts/setup-bench-venv.sh
py="$root/.venv-bench/bin/python"
bin="$root/target/release/uie-train"
census="models/census-ple.toml"
baseline="${BASELINE_BIN:-}"
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
  echo "BASELINE_BIN=$baseline is not an executable" >&2
  exit 1
fi
mkdir -p "$out"

# The census rows exactly as the trainer reads them, and its initial weights (seed 1).
"$bin" export --config "$census" --seed 1 --out "$out/export-census" > "$out/export-census.log"

# run NAME THREADS CMD...: runs CMD under /usr/bin/time -v into OUT/runs/NAME.{log,time}.
run() {
  local name="$1" t="$2"
  shift 2
  echo "run $name (threads $t, load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)" > "$out/runs/$name.load"
  RAYON_NUM_THREADS="$t" OMP_NUM_THREADS="$t" MKL_NUM_THREADS="$t" \
    /usr/bin/time -v -o "$out/runs/$name.time" "$@" > "$out/runs/$name.log" 2>&1 ||
    { cat "$out/runs/$name.log"; exit 1; }
}

rm -rf "$out/runs"
mkdir -p "$out/runs"
for r in $(seq 1 "$repeats"); do
  for t in $threads; do
    run "uie-census-ple-t$t-r$r" "$t" "$bin" train --config "$census" --seed 1 \
      --epochs "$epochs_a" --out "$out/runs/uie-census-ple-t$t-r$r" --quiet
    if [ -n "$baseline" ]; then
      run "uiebase-census-ple-t$t-r$r" "$t" "$baseline" train --config "$census" --seed 1 \
        --epochs "$epochs_a" --out "$out/runs/uiebase-census-ple-t$t-r$r" --quiet
    fi
    run "torch-census-ple-t$t-r$r" "$t" "$py" crates/uie-bench/python/train/ple_torch.py \
      --export "$out/export-census" --config "$census" --threads "$t" --epochs "$epochs_a" --seed 1
    run "torchfused-census-ple-t$t-r$r" "$t" "$py" crates/uie-bench/python/train/ple_torch.py \
      --export "$out/export-census" --config "$census" --threads "$t" --epochs "$epochs_a" --seed 1 \
      --adam fused
    if [ "$protocol_b" = 1 ]; then
      for model in ple uie; do
        run "uie-movielens-$model-t$t-r$r" "$t" "$bin" train --config "models/movielens-$model.toml" \
          --seed 1 --epochs "$epochs_b" --out "$out/runs/uie-movielens-$model-t$t-r$r" --quiet
        if [ -n "$baseline" ]; then
          run "uiebase-movielens-$model-t$t-r$r" "$t" "$baseline" train \
            --config "models/movielens-$model.toml" --seed 1 --epochs "$epochs_b" \
            --out "$out/runs/uiebase-movielens-$model-t$t-r$r" --quiet
        fi
      done
    fi
  done
done

commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD 2>/dev/null; then commit="$commit (with uncommitted changes)"; fi
cpu="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
torch_version="$("$py" -c 'import torch; print(torch.__version__)')"
{
  echo "- Command: \`scripts/bench-train.sh\` (THREADS=\"$threads\" REPEATS=$repeats EPOCHS_A=$epochs_a EPOCHS_B=$epochs_b PROTOCOL_B=$protocol_b${baseline:+ BASELINE_BIN=$baseline})."
  echo "- Commit: \`$commit\`; machine: $(nproc) cores, $cpu, $(free -g | awk '/^Mem:/ {print $2}') GiB; date: $(date -u +%Y-%m-%d)."
  echo "- PyTorch: $torch_version from PyPI (CPU only used); uie-train: dfdx 0.13 (gemm matmuls on rayon, the rest single-threaded)."
  echo
  "$py" crates/uie-bench/python/train/train_table.py "$out/runs"
} > "$out/report.md"
cat "$out/report.md"

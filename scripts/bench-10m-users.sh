#!/usr/bin/env bash
# Big-memory benchmark of ONNX external data (not part of the default test run: ~6 GB, minutes).
#
# 1. writes a UIE checkpoint (UCBE on) whose personalised memory `memory.personal` has
#    UIE_BENCH_USERS (default 10,000,000) rows × 32 f32 = 1.28 GB, plus the `user_id` embedding
#    table of the same row count × 8 (random weights);
# 2. compiles it with `uie-compile build --external-data` under /usr/bin/time -v (wall time and
#    maximum resident set size);
# 3. loads the model from its path and runs a few rows in tract (plain and optimised) and in ONNX
#    Runtime (the test venv), checks they agree (uie-model.md §7) and prints load and run times
#    (that step is also under /usr/bin/time -v).
#
# Usage: scripts/bench-10m-users.sh [WORK_DIR]   (default: a fresh temp dir, removed at the end
# unless UIE_BENCH_KEEP=1). Env: UIE_BENCH_USERS, UIE_BENCH_KEEP.
set -euo pipefail
cd "$(dirname "$0")/.."

USERS="${UIE_BENCH_USERS:-10000000}"
OWN_DIR=0
if [[ $# -ge 1 ]]; then
    DIR="$1"
    mkdir -p "$DIR"
else
    DIR="$(mktemp -d "${TMPDIR:-/tmp}/uie-bench-XXXXXX")"
    OWN_DIR=1
fi
DIR="$(cd "$DIR" && pwd)"
cleanup() {
    if [[ "$OWN_DIR" == 1 && "${UIE_BENCH_KEEP:-0}" != 1 ]]; then rm -rf "$DIR"; fi
}
trap cleanup EXIT

[[ -x .venv/bin/python ]] || bash scripts/setup-venv.sh
[[ -x /usr/bin/time ]] || { echo "needs GNU time at /usr/bin/time" >&2; exit 1; }

echo "== building (release)"
cargo build --release -p uie-compile
# The test binary, run directly so the timed step never includes a build.
BENCH_BIN="$(cargo test --release -p uie-e2e --test bench_10m_users --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -n 1)"
[[ -x "$BENCH_BIN" ]] || { echo "could not find the bench_10m_users test binary" >&2; exit 1; }

echo "== writing the checkpoint ($USERS users) to $DIR/ckpt"
UIE_BENCH_DIR="$DIR" UIE_BENCH_USERS="$USERS" "$BENCH_BIN" --ignored --exact \
    bench_write_checkpoint --nocapture
du -sh "$DIR/ckpt"

echo "== compiling with external data"
CMD=(target/release/uie-compile build "$DIR/ckpt" -o "$DIR/model.onnx" --external-data)
echo "\$ ${CMD[*]}"
/usr/bin/time -v "${CMD[@]}" 2> "$DIR/compile-time.txt" || { cat "$DIR/compile-time.txt" >&2; exit 1; }
grep -E "Elapsed \(wall clock\)|Maximum resident set size" "$DIR/compile-time.txt"
ls -l "$DIR/model.onnx" "$DIR"/model.onnx.*.data
target/release/uie-compile inspect --summary "$DIR/model.onnx" | grep -E "^(initializers|external data|memory tables)|  memory\.|embed.user_id "

echo "== loading and running in tract and ONNX Runtime"
UIE_BENCH_DIR="$DIR" UIE_BENCH_USERS="$USERS" /usr/bin/time -v "$BENCH_BIN" --ignored --exact \
    bench_run_models --nocapture 2> "$DIR/run-time.txt" || { cat "$DIR/run-time.txt" >&2; exit 1; }
grep -E "Elapsed \(wall clock\)|Maximum resident set size" "$DIR/run-time.txt"

#!/usr/bin/env bash
# Compile benchmark: wall time and peak memory of the real `uie-compile build` for the
# full-UIE MovieLens model (models/movielens-uie.toml: UPE, UCBE, UCSE) with `user_id` hashed into
# 1 thousand, 1 million and 10 million buckets, so UCBE's personalised memory `memory.personal`
# (P) has one row of 32 f32 per user. Not part of the default test run (10 M users: ~6 GB of
# memory, minutes).
#
# For each size it
# 1. writes a checkpoint with seeded random weights (`bench_compile write-checkpoint`,
#    crates/uie-bench/src/bin/bench_compile.rs), which also reports the largest table;
# 2. runs `uie-compile build CKPT -o model.onnx --external-data` (and, below 2 GiB, inline
#    without it) UIE_BENCH_REPS times (default 3) under /usr/bin/time -v: median wall time, the
#    largest "Maximum resident set size", and the bytes written (model.onnx + its data file);
# 3. as the reference for "time close to writing those bytes", writes the same number of bytes
#    with `dd if=/dev/zero ... conv=fsync` into the same directory (the compiler also fsyncs),
#    UIE_BENCH_REPS times, median;
# 4. with UIE_BENCH_RUN=1, loads the largest model in tract and ONNX Runtime and checks they
#    agree (`bench_compile run-models`).
# It prints a markdown table: users | largest table | output bytes | compile time | write-only
# time | time ratio | peak RSS | RSS / largest table.
#
# Usage: scripts/bench-compile.sh [WORK_DIR]   (default: a fresh temp dir, removed at the end
# unless UIE_BENCH_KEEP=1). Env: UIE_BENCH_SIZES (default "1000 1000000 10000000"),
# UIE_BENCH_REPS (default 3), UIE_BENCH_RUN, UIE_BENCH_KEEP, UIE_COMPILE (the binary to time,
# default target/release/uie-compile), UIE_COMPILE_BASELINE (another build of uie-compile, e.g. of
# an earlier commit: timed the same way, its rows marked "baseline", and its output checked to be
# byte-identical to UIE_COMPILE's).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES="${UIE_BENCH_SIZES:-1000 1000000 10000000}"
REPS="${UIE_BENCH_REPS:-3}"
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

[[ -x /usr/bin/time ]] || { echo "needs GNU time at /usr/bin/time (Debian: apt-get install time)" >&2; exit 1; }

echo "== building (release)" >&2
cargo build --release -p uie-compile >&2
cargo build --release -p uie-bench --bin bench_compile >&2
COMPILE="${UIE_COMPILE:-target/release/uie-compile}"
BASELINE="${UIE_COMPILE_BASELINE:-}"
# Built above and run directly, so no timed step includes a build.
BENCH_BIN=target/release/bench_compile

median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
secs() {  # "Elapsed (wall clock) time" of a /usr/bin/time -v report, in seconds
    sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$1" |
        awk -F: '{s=0; for (i=1; i<=NF; i++) s=s*60+$i; print s}'
}
rss_kb() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GB" >&2
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); load at start: $(uptime | sed 's/.*load average: //')" >&2

ROWS=()
for USERS in $SIZES; do
    W="$DIR/u$USERS"
    rm -rf "$W"
    mkdir -p "$W"
    echo "== $USERS users: writing the checkpoint" >&2
    LOG="$("$BENCH_BIN" write-checkpoint --dir "$W" --users "$USERS" 2>&1)" ||
        { echo "$LOG" >&2; exit 1; }
    read -r LARGEST_NAME LARGEST_BYTES < <(echo "$LOG" | sed -n 's/^largest-table //p')
    echo "   largest table $LARGEST_NAME: $LARGEST_BYTES bytes; checkpoint $(du -sb "$W/ckpt" | cut -f1) bytes" >&2
    MODES=(external)
    # Inline only while the model stays under the 2 GiB protobuf limit (past it the compiler
    # switches to external data by itself).
    if (( LARGEST_BYTES * 2 < 2000000000 )); then MODES+=(inline); fi
    for MODE in "${MODES[@]}"; do
      for WHICH in new ${BASELINE:+baseline}; do
        BIN="$COMPILE"
        [[ "$WHICH" == baseline ]] && BIN="$BASELINE"
        O="$W/$WHICH-$MODE"
        mkdir -p "$O"
        FLAGS=()
        [[ "$MODE" == external ]] && FLAGS=(--external-data)
        CMD=("$BIN" build "$W/ckpt" -o "$O/model.onnx" "${FLAGS[@]}")
        echo "\$ ${CMD[*]}" >&2
        TIMES=()
        PEAK=0
        for ((r = 0; r < REPS; r++)); do
            rm -f "$O/model.onnx" "$O"/model.onnx*.data
            /usr/bin/time -v "${CMD[@]}" > /dev/null 2> "$W/time.txt" || { cat "$W/time.txt" >&2; exit 1; }
            TIMES+=("$(secs "$W/time.txt")")
            K="$(rss_kb "$W/time.txt")"
            (( K > PEAK )) && PEAK=$K
        done
        # The data file (external mode) is named by its content hash: model.onnx.<16 hex>.data (older
        # compilers: model.onnx.data).
        DATA="$(ls "$O"/model.onnx*.data 2>/dev/null | head -n 1 || true)"
        OUT=$(( $(stat -c %s "$O/model.onnx") + $( [[ -n "$DATA" ]] && stat -c %s "$DATA" || echo 0) ))
        T_COMPILE="$(printf '%s\n' "${TIMES[@]}" | median)"
        echo "   compile times: ${TIMES[*]} s; peak RSS $PEAK kB; output $OUT bytes" >&2
        if [[ "$WHICH" == baseline ]]; then
            # Inline: the whole file must match. External: the data bytes must match (the model
            # file differs only if the baseline predates content-named data files, by the location).
            NEW_DATA="$(ls "$W/new-$MODE"/model.onnx*.data 2>/dev/null | head -n 1 || true)"
            if [[ -n "$NEW_DATA" ]]; then
                cmp -s "$NEW_DATA" "$DATA" ||
                    { echo "data file differs between $COMPILE and $BASELINE ($USERS users, $MODE)" >&2; exit 1; }
            else
                cmp -s "$W/new-$MODE/model.onnx" "$O/model.onnx" ||
                    { echo "model.onnx differs between $COMPILE and $BASELINE ($USERS users, $MODE)" >&2; exit 1; }
            fi
            echo "   same bytes as $COMPILE" >&2
        fi
        DTIMES=()
        for ((r = 0; r < REPS; r++)); do
            rm -f "$W/dd.bin"
            /usr/bin/time -f %e -o "$W/dd-time.txt" \
                dd if=/dev/zero of="$W/dd.bin" bs=4M count="$OUT" iflag=count_bytes conv=fsync status=none
            DTIMES+=("$(cat "$W/dd-time.txt")")
        done
        rm -f "$W/dd.bin"
        T_WRITE="$(printf '%s\n' "${DTIMES[@]}" | median)"
        echo "   write-only times: ${DTIMES[*]} s" >&2
        LABEL="$MODE"
        [[ "$WHICH" == baseline ]] && LABEL="$MODE, baseline"
        ROWS+=("$(awk -v u="$USERS" -v m="$LABEL" -v ln="$LARGEST_NAME" -v lb="$LARGEST_BYTES" \
            -v ob="$OUT" -v tc="$T_COMPILE" -v tw="$T_WRITE" -v kb="$PEAK" 'BEGIN {
            tr = (tw > 0) ? sprintf("%.1f×", tc / tw) : "n/a";
            printf "| %d | %s | %s (`%s`) | %d | %.2f s | %.2f s | %s | %.1f MB | %.2f× |",
                u, m, lb, ln, ob, tc, tw, tr, kb * 1024 / 1e6, kb * 1024 / lb }')")
        [[ "$WHICH" == baseline ]] && rm -rf "$O"
      done
      rm -rf "$W/new-$MODE"
    done
    if [[ "${UIE_BENCH_RUN:-0}" == 1 ]]; then
        echo "== $USERS users: loading and running the external-data model in tract and ONNX Runtime" >&2
        "$COMPILE" build "$W/ckpt" -o "$W/model.onnx" --external-data > /dev/null
        "$BENCH_BIN" run-models --dir "$W" --users "$USERS" >&2
    fi
    rm -rf "$W"
done

echo "load at end: $(uptime | sed 's/.*load average: //')" >&2
echo
echo "| users | mode | largest table (bytes) | output bytes | compile time | write-only time | time ratio | peak RSS | RSS / largest table |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"

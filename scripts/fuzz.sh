#!/usr/bin/env bash
# Fuzzes the three cargo-fuzz targets of `fuzz/` (docs/fuzzing.md): model_load, request_decode,
# checkpoint_read, one after the other, each for SECONDS (default 600), under `nice -n 10`.
#
# Needs a nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz if missing.
# Each target starts from its committed seeds (`fuzz/seeds/<t>/`) and regression fixtures
# (`fixtures/fuzz-regressions/<t>/`); new inputs go to `fuzz/corpus/<t>/` and crashes to
# `fuzz/artifacts/<t>/` (both git-ignored); the libFuzzer log (with -print_final_stats) goes to
# `fuzz/logs/<t>.log`. A crash stops the script with libFuzzer's exit status.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

SECS="${1:-600}"
shift || true
TARGETS=("$@")
if [[ ${#TARGETS[@]} -eq 0 ]]; then
    TARGETS=(model_load request_decode checkpoint_read)
fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# Release with debug assertions and overflow checks, AddressSanitizer (cargo-fuzz defaults);
# 16 codegen units keep the build of tract affordable on a small machine.
BUILD=(--codegen-units 16)
cd fuzz
nice -n 10 cargo +nightly fuzz build "${BUILD[@]}"
mkdir -p logs
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t"
    echo "== $t: ${SECS}s ($(date -u +%FT%TZ), load: $(cut -d' ' -f1-3 /proc/loadavg))"
    nice -n 10 cargo +nightly fuzz run "${BUILD[@]}" "$t" "corpus/$t" "seeds/$t" \
        "../fixtures/fuzz-regressions/$t" -- \
        -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
        2>&1 | tee "logs/$t.log"
    echo "== $t: corpus $(find "corpus/$t" -type f | wc -l) files"
done

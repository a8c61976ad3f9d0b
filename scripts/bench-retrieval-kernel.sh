#!/usr/bin/env bash
# The fused retrieval kernel alone: the kernel of commit b2cc2a5 (one row at a time, an
# axpy over the transposed table, then a streaming top-K) against the current one (packed panels,
# 4-row register blocks, chunk-skipping top-K), interleaved in one process on the same random
# tables and queries, at the model's shapes (UPE N = 256, d = 32, K = 3; UCSE N = 256, d = 8,
# K = 8) and batch 1, 16 and 256. It also checks that both give the same indices, values and sums.
#
# Both kernels are plain Rust files (no tract types): the script copies them into a scratch crate
# under target/bench-retrieval-kernel and builds it with rustc's release defaults (no
# target-cpu flags, like the workspace).
#
# Usage: scripts/bench-retrieval-kernel.sh [BASE_COMMIT]
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${1:-b2cc2a5}"
DIR=target/bench-retrieval-kernel
mkdir -p "$DIR/src"
git show "$BASE:crates/uie-runtime/src/fused/kernel.rs" | sed '/^#\[cfg(test)\]/,$d' > "$DIR/src/old.rs"
sed '/^#\[cfg(test)\]/,$d' crates/uie-runtime/src/fused/kernel.rs > "$DIR/src/new.rs"
cat > "$DIR/Cargo.toml" <<'TOML'
[package]
name = "bench-retrieval-kernel"
version = "0.0.0"
edition = "2021"
publish = false
[workspace]
[dependencies]
thiserror = "1"
[profile.release]
debug = false
TOML
cat > "$DIR/src/main.rs" <<'RS'
#![allow(dead_code)]
mod new;
mod old;
use std::hint::black_box;
use std::time::Instant;
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    println!("| module | batch | old (µs) | new (µs) | old / new |");
    println!("|---|---:|---:|---:|---:|");
    for (name, n, d, k) in [("UPE", 256usize, 32usize, 3usize), ("UCSE", 256, 8, 8)] {
        let rows: Vec<f32> = (0..n * d).map(|_| next()).collect();
        let to = old::CentreTable::from_rows(n, d, rows.clone())?;
        let tn = new::CentreTable::from_rows(n, d, rows)?;
        let wo = old::Wants { values: true, indices: true, keep: true, weights: true, sum: true, gathered: true };
        let wn = new::Wants { values: true, indices: true, keep: true, weights: true, sum: true, gathered: true };
        for b in [1usize, 16, 256] {
            let q: Vec<f32> = (0..b * d).map(|_| next()).collect();
            let a = old::retrieve(&to, k, &q, wo)?;
            let c = new::retrieve(&tn, k, &q, wn)?;
            assert_eq!(a.indices, c.indices);
            assert_eq!(a.values, c.values);
            assert_eq!(a.sum, c.sum);
            assert_eq!(a.gathered, c.gathered);
            let reps = (4096 / b).max(4);
            let (mut ot, mut nt) = (Vec::new(), Vec::new());
            for _ in 0..200 {
                let t = Instant::now();
                for _ in 0..reps {
                    black_box(old::retrieve(&to, k, black_box(&q), wo)?);
                }
                ot.push(t.elapsed().as_secs_f64() * 1e6 / reps as f64);
                let t = Instant::now();
                for _ in 0..reps {
                    black_box(new::retrieve(&tn, k, black_box(&q), wn)?);
                }
                nt.push(t.elapsed().as_secs_f64() * 1e6 / reps as f64);
            }
            let (o, nw) = (median(&mut ot), median(&mut nt));
            println!("| {name} N={n} d={d} K={k} | {b} | {o:.2} | {nw:.2} | {:.2}× |", o / nw);
        }
    }
    Ok(())
}
RS
cargo build --release --offline --quiet --manifest-path "$DIR/Cargo.toml" --target-dir "$DIR/target"
"$DIR/target/release/bench-retrieval-kernel"

//! Interleaved timing of the runtime's rewrites on the compiled MovieLens model: the engine with
//! every rewrite ("fused"), with all but the lookup rewrite ("no lookups") and with none
//! ("standard"), optimised, one thread, at batch 1, 16 and 256. The variants run in turn,
//! one call each per round, so load changes on a shared machine hit all of them alike; the
//! median and the ratios of medians are printed.
//!
//! Reads the files `scripts/bench-retrieval.sh` writes (`target/bench-retrieval/model.onnx` and
//! `inputs_<n>.json`).
//!
//! Usage: `cargo run --release -p uie-bench --bin rewrites [rounds at batch 1]`

use std::path::Path;
use std::time::Instant;

use uie_bench::latency::{read_batch_values, run_inputs};
use uie_runtime::engine::{Engine, EngineOptions};
use uie_runtime::RewriteName;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-retrieval");
    let rounds1: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(4000);
    let model = root.join("model.onnx");
    let variants = [
        ("fused", true, true),
        ("no lookups", true, false),
        ("standard", false, false),
    ];
    let engines = variants
        .iter()
        .map(|&(_, fuse, fuse_lookups)| {
            Engine::load_path(
                &model,
                // "standard" runs none of the runtime's rewrites.
                EngineOptions {
                    optimize: true,
                    clear_upper_state: fuse,
                    ..EngineOptions::default()
                }
                .with_rewrites(fuse)
                .with_rewrite(RewriteName::Lookup, fuse_lookups),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    println!("| batch | rounds | fused (µs) | no lookups (µs) | standard (µs) | no lookups / fused | standard / fused |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in [1usize, 16, 256] {
        let values = read_batch_values(&root, n)?;
        let inputs = run_inputs(&values);
        let rounds = (rounds1 / n).max(40);
        for e in &engines {
            for _ in 0..rounds.min(50) {
                e.run(&inputs)?;
            }
        }
        let mut times = vec![Vec::with_capacity(rounds); engines.len()];
        for _ in 0..rounds {
            for (e, t) in engines.iter().zip(times.iter_mut()) {
                let t0 = Instant::now();
                std::hint::black_box(e.run(&inputs)?);
                t.push(t0.elapsed().as_secs_f64() * 1e6);
            }
        }
        let m: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
        println!(
            "| {n} | {rounds} | {:.1} | {:.1} | {:.1} | {:.2}× | {:.2}× |",
            m[0],
            m[1],
            m[2],
            m[1] / m[0],
            m[2] / m[0]
        );
    }
    Ok(())
}

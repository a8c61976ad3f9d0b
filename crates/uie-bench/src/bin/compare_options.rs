//! Interleaved timing of `uie-runtime` engine options on the compiled MovieLens model: the
//! default options (every runtime rewrite), without the linear merge, without the fused gate
//! mixes, without the fused attention, without the upper-state clearing, and without any of them
//! (optimised, one thread), at batch 1, 16 and 256. Variants run in alternating blocks within
//! each round, so machine load drifts hit all of them alike; the table gives the median per-call
//! time over rounds and the median of the per-round ratios.
//!
//! Reads the files `scripts/bench-retrieval.sh` writes (`target/bench-retrieval/model.onnx` and
//! `inputs_<n>.json`).
//!
//! Usage: `cargo run --release -p uie-bench --bin compare_options [rounds] [default]` (or
//! `scripts/bench-attention.sh`); with `default`, only the default options are timed and one
//! line `batch <n> <µs>` per batch size is printed (the script interleaves these runs with ONNX
//! Runtime).

use std::path::Path;
use std::time::Instant;

use uie_bench::latency::{read_batch_values, run_inputs};
use uie_runtime::engine::{Engine, EngineOptions};
use uie_runtime::RewriteName;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(21);
    let default_only = std::env::args().nth(2).as_deref() == Some("default");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-retrieval");
    let model = root.join("model.onnx");
    let all = EngineOptions::default();
    let variants = [
        ("default", all),
        (
            "no linear merge",
            all.with_rewrite(RewriteName::Merge, false),
        ),
        ("no gate fusion", all.with_rewrite(RewriteName::Gate, false)),
        (
            "no attention fusion",
            all.with_rewrite(RewriteName::Attention, false),
        ),
        (
            "no upper-state clearing",
            EngineOptions {
                clear_upper_state: false,
                ..all
            },
        ),
        (
            "no rewrite",
            EngineOptions {
                clear_upper_state: false,
                ..all
            }
            .with_rewrites(false),
        ),
    ];
    let engines: Vec<(&str, Engine)> = variants
        .iter()
        .take(if default_only { 1 } else { variants.len() })
        .map(|(label, opts)| Ok((*label, Engine::load_path(&model, *opts)?)))
        .collect::<anyhow::Result<_>>()?;
    if !default_only {
        println!("model {}, {rounds} rounds", model.display());
        println!(
            "\n| batch | {} | {} |\n|---:|{}{}",
            engines
                .iter()
                .map(|(l, _)| format!("{l} µs"))
                .collect::<Vec<_>>()
                .join(" | "),
            engines[1..]
                .iter()
                .map(|(l, _)| format!("{l} / default"))
                .collect::<Vec<_>>()
                .join(" | "),
            "---:|".repeat(engines.len()),
            "---:|".repeat(engines.len() - 1),
        );
    }
    for n in [1usize, 16, 256] {
        let values = read_batch_values(&root, n)?;
        let inputs = run_inputs(&values);
        let reps = (4000 / n).clamp(10, 400);
        for (_, e) in &engines {
            for _ in 0..reps / 4 + 1 {
                e.run(&inputs)?;
            }
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); engines.len()];
        for round in 0..rounds {
            for k in 0..engines.len() {
                // Rotate the order each round.
                let i = (k + round) % engines.len();
                let t0 = Instant::now();
                for _ in 0..reps {
                    engines[i].1.run(&inputs)?;
                }
                times[i].push(t0.elapsed().as_secs_f64() * 1e6 / reps as f64);
            }
        }
        let ratios: Vec<f64> = (1..engines.len())
            .map(|i| median(times[i].iter().zip(&times[0]).map(|(a, b)| a / b).collect()))
            .collect();
        if default_only {
            println!("batch {n} {:.2}", median(times[0].clone()));
            continue;
        }
        println!(
            "| {n} | {} | {} |",
            times
                .iter()
                .map(|t| format!("{:.1}", median(t.clone())))
                .collect::<Vec<_>>()
                .join(" | "),
            ratios
                .iter()
                .map(|r| format!("{r:.2}×"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    Ok(())
}

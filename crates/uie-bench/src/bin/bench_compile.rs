//! The compile benchmark's helper binary behind `scripts/bench-compile.sh` (at 10 million users it
//! needs several GB of memory and minutes). Two steps the script drives around the timed
//! `uie-compile build` runs:
//!
//! - `write-checkpoint --dir DIR --users U`: writes `DIR/ckpt`, the full-UIE MovieLens model of
//!   `models/movielens-uie.toml` (UPE, UCBE and UCSE on) with `user_id` hashed into `U` buckets,
//!   so its personalised memory `memory.personal` (UCBE's `P`, the largest table) has one row of
//!   32 f32 per user; seeded random weights. Prints the largest table's name and byte size on a
//!   line `largest-table <name> <bytes>` for the script.
//! - `run-models --dir DIR --users U`: loads `DIR/model.onnx` from its path in tract (plain and
//!   optimised) and ONNX Runtime (`python/ort_timed.py`, the test venv's Python), runs a few rows
//!   (user ids in range, negative and huge; a history), checks they agree by `docs/model.md` §7
//!   and prints load and run times.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use uie_bench::ort::ort_timed;
use uie_compile::verify::{batch_inputs, run_engine};
use uie_model::parity::within_tolerance;
use uie_model::{Config, History, RawBatch};
use uie_runtime::{Engine, EngineOptions};

const ROWS: usize = 16;

#[derive(Parser)]
#[command(about = "steps of the compile benchmark (scripts/bench-compile.sh)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write `<dir>/ckpt` with seeded random weights; print `largest-table <name> <bytes>`.
    WriteCheckpoint(Target),
    /// Run `<dir>/model.onnx` in tract and ONNX Runtime and check they agree.
    RunModels(Target),
}

/// The benchmark directory and the number of `user_id` buckets.
#[derive(Args)]
struct Target {
    /// The benchmark directory (holds `ckpt/` and `model.onnx`).
    #[arg(long)]
    dir: PathBuf,
    /// Buckets of `user_id`: rows of the personalised memory.
    #[arg(long, default_value_t = 10_000_000)]
    users: usize,
}

/// `models/movielens-uie.toml` with `user_id` in `users` buckets.
fn config(users: usize) -> Result<Config> {
    let mut config = Config::load(&uie_e2e::repo_root().join("models/movielens-uie.toml"))
        .context("models/movielens-uie.toml")?;
    let field = config
        .features
        .categorical
        .iter_mut()
        .find(|f| f.name == "user_id")
        .context("a user_id field")?;
    field.buckets = users;
    config.validate().context("valid config")?;
    Ok(config)
}

/// `n` rows for `config`: every categorical id drawn from a pool of in-range, negative, huge and
/// extreme values; a history of varying length.
fn rows(config: &Config, n: usize) -> RawBatch {
    let pool = |buckets: i64, i: usize| -> i64 {
        let p = [
            0,
            buckets / 2,
            buckets - 1,
            buckets,
            -1,
            -buckets - 3,
            (1i64 << 40) + 17,
            i64::MAX,
            i64::MIN,
            123_456_789,
        ];
        p[i % p.len()]
    };
    let categorical: BTreeMap<String, Vec<i64>> = config
        .features
        .categorical
        .iter()
        .enumerate()
        .map(|(k, f)| {
            let ids = (0..n).map(|i| pool(f.buckets as i64, i + k)).collect();
            (f.name.clone(), ids)
        })
        .collect();
    let d = config.features.dense.len();
    let history = config.features.sequence.as_ref().map(|s| {
        let width = s.max_len;
        History {
            width,
            items: (0..n * width).map(|i| i as i64 * 7919 - 500).collect(),
            len: (0..n).map(|i| (i * 7 % (width + 1)) as i64).collect(),
        }
    });
    RawBatch {
        n,
        categorical,
        dense: (0..n * d).map(|i| i as f32 * 0.35 - 2.0).collect(),
        history,
    }
}

fn write_checkpoint(target: &Target) -> Result<()> {
    let t = Instant::now();
    let ck = uie_testkit::checkpoints::random_checkpoint(
        config(target.users)?,
        11,
        0.5,
        "uie-bench bench_compile",
    );
    let generated = t.elapsed();
    let (name, bytes) = ck
        .weights
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.iter().product::<usize>() * 4))
        .max_by_key(|(_, b)| *b)
        .context("weights")?;
    ck.write(&target.dir.join("ckpt")).context("checkpoint")?;
    println!(
        "checkpoint: {} users: generated in {:.1?}, written in {:.1?}",
        target.users,
        generated,
        t.elapsed() - generated
    );
    println!("largest-table {name} {bytes}");
    Ok(())
}

fn run_models(target: &Target) -> Result<()> {
    let model = target.dir.join("model.onnx");
    let config = config(target.users)?;
    let batch = rows(&config, ROWS);
    let inputs = batch_inputs(&config, &batch).context("inputs")?;
    let mut results = Vec::new();
    for optimize in [false, true] {
        let t = Instant::now();
        let engine = Engine::load_path(
            &model,
            EngineOptions {
                optimize,
                ..EngineOptions::default()
            },
        )
        .context("tract loads")?;
        let load = t.elapsed();
        let t = Instant::now();
        let outs = run_engine(&engine, &inputs, "tract").context("tract runs")?;
        let run = t.elapsed();
        drop(engine);
        let label = if optimize {
            "tract-optimized"
        } else {
            "tract-plain"
        };
        println!("{label}: load {load:.2?}, run {ROWS} rows {run:.2?}");
        let probs = outs
            .first()
            .and_then(|(_, t)| t.as_f32())
            .context("f32 probs")?
            .to_vec();
        results.push((label, probs));
    }
    let ort = ort_timed(&model, &inputs)?;
    println!(
        "onnxruntime: load {:.1}ms, run {ROWS} rows {:.2}ms",
        ort.load_s * 1e3,
        ort.run_s * 1e3
    );
    for (label, probs) in &results {
        if probs.len() != ort.probs.len() {
            bail!(
                "{label}: {} probs, ONNX Runtime {}",
                probs.len(),
                ort.probs.len()
            );
        }
        let worst = probs
            .iter()
            .zip(&ort.probs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let bad = probs
            .iter()
            .zip(&ort.probs)
            .filter(|(a, b)| !within_tolerance(**a, **b))
            .count();
        println!("{label} vs onnxruntime: max |diff| {worst:e}, {bad} outside the §7 rule");
        if bad != 0 {
            bail!("{label} disagrees with ONNX Runtime");
        }
    }
    println!("probs[0..4] = {:?}", &ort.probs[..4.min(ort.probs.len())]);
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::WriteCheckpoint(target) => write_checkpoint(&target),
        Cmd::RunModels(target) => run_models(&target),
    }
}

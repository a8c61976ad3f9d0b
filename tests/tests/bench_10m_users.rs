//! The big-memory benchmark behind `scripts/bench-10m-users.sh` (ignored by the default test run:
//! it needs about 6 GB of memory and minutes). Two steps the script drives around a timed
//! `uie-compile build --external-data`:
//!
//! - `bench_write_checkpoint`: writes `$UIE_BENCH_DIR/ckpt`, a UCBE model whose personalised
//!   memory `memory.personal` has `$UIE_BENCH_USERS` rows (default 10,000,000) × 32 f32
//!   (1.28 GB; plus `embed.user_id`, rows × 8 f32, 0.32 GB), random weights;
//! - `bench_run_models`: loads `$UIE_BENCH_DIR/model.onnx` from its path in tract (plain and
//!   optimised) and ONNX Runtime, runs a few rows, checks they agree by `uie-model.md` §7 and
//!   prints load and run times.

mod users_model;

use std::path::PathBuf;
use std::time::Instant;

use uie_compile::verify::{batch_inputs, run_engine};
use uie_model::parity::within_tolerance;
use uie_runtime::{Engine, EngineOptions};

const ROWS: usize = 16;

fn bench_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("UIE_BENCH_DIR").expect("set UIE_BENCH_DIR"))
}

fn users() -> usize {
    std::env::var("UIE_BENCH_USERS")
        .ok()
        .map(|s| s.parse().expect("UIE_BENCH_USERS is a number"))
        .unwrap_or(10_000_000)
}

#[test]
#[ignore = "big-memory benchmark: run scripts/bench-10m-users.sh"]
fn bench_write_checkpoint() {
    let t = Instant::now();
    let ck = users_model::checkpoint(users(), 11);
    let generated = t.elapsed();
    ck.write(&bench_dir().join("ckpt")).expect("checkpoint");
    println!(
        "checkpoint: {} users x {}: generated in {:.1?}, written in {:.1?}",
        users(),
        users_model::AUX_DIM,
        generated,
        t.elapsed() - generated
    );
}

#[test]
#[ignore = "big-memory benchmark: run scripts/bench-10m-users.sh"]
fn bench_run_models() {
    let model = bench_dir().join("model.onnx");
    let config = users_model::config(users());
    let batch = users_model::rows(users(), ROWS);
    let inputs = batch_inputs(&config, &batch).expect("inputs");
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
        .expect("tract loads");
        let load = t.elapsed();
        let t = Instant::now();
        let outs = run_engine(&engine, &inputs, "tract").expect("tract runs");
        let run = t.elapsed();
        drop(engine);
        let label = if optimize {
            "tract-optimized"
        } else {
            "tract-plain"
        };
        println!("{label}: load {load:.2?}, run {ROWS} rows {run:.2?}");
        let probs = outs[0].1.as_f32().expect("f32").to_vec();
        results.push((label, probs));
    }
    let ort = users_model::ort_timed(&model, &inputs);
    println!(
        "onnxruntime: load {:.1}ms, run {ROWS} rows {:.2}ms",
        ort.load_s * 1e3,
        ort.run_s * 1e3
    );
    for (label, probs) in &results {
        assert_eq!(probs.len(), ort.probs.len());
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
        assert_eq!(bad, 0, "{label} disagrees with ONNX Runtime");
    }
    println!("probs[0..4] = {:?}", &ort.probs[..4.min(ort.probs.len())]);
}

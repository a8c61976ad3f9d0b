//! The compile benchmark behind `scripts/bench-compile.sh` (ignored by the default test run: at
//! 10 million users it needs several GB of memory and minutes). Two steps the script drives around
//! the timed `uie-compile build` runs:
//!
//! - `bench_write_checkpoint`: writes `$UIE_BENCH_DIR/ckpt`, the full-UIE MovieLens model of
//!   `models/movielens-uie.toml` (UPE, UCBE and UCSE on) with `user_id` hashed into
//!   `$UIE_BENCH_USERS` buckets, so its personalised memory `memory.personal` (UCBE's `P`, the
//!   largest table) has one row of 32 f32 per user; seeded random weights. Prints the largest
//!   table's name and byte size on a line `largest-table <name> <bytes>` for the script.
//! - `bench_run_models`: loads `$UIE_BENCH_DIR/model.onnx` from its path in tract (plain and
//!   optimised) and ONNX Runtime, runs a few rows (user ids in range, negative and huge; a
//!   history), checks they agree by `uie-model.md` §7 and prints load and run times.

mod users_model;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use uie_compile::verify::{batch_inputs, run_engine};
use uie_model::parity::within_tolerance;
use uie_model::{Config, History, RawBatch};
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

/// `models/movielens-uie.toml` with `user_id` in `users` buckets.
fn config(users: usize) -> Config {
    let mut config = Config::load(&uie_e2e::repo_root().join("models/movielens-uie.toml"))
        .expect("models/movielens-uie.toml");
    let field = config
        .features
        .categorical
        .iter_mut()
        .find(|f| f.name == "user_id")
        .expect("a user_id field");
    field.buckets = users;
    config.validate().expect("valid config");
    config
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

#[test]
#[ignore = "big-memory benchmark: run scripts/bench-compile.sh"]
fn bench_write_checkpoint() {
    let t = Instant::now();
    let ck = uie_testkit::checkpoints::random_checkpoint(
        config(users()),
        11,
        0.5,
        "uie-e2e bench_compile",
    );
    let generated = t.elapsed();
    let (name, bytes) = ck
        .weights
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.iter().product::<usize>() * 4))
        .max_by_key(|(_, b)| *b)
        .expect("weights");
    ck.write(&bench_dir().join("ckpt")).expect("checkpoint");
    println!(
        "checkpoint: {} users: generated in {:.1?}, written in {:.1?}",
        users(),
        generated,
        t.elapsed() - generated
    );
    println!("largest-table {name} {bytes}");
}

#[test]
#[ignore = "big-memory benchmark: run scripts/bench-compile.sh"]
fn bench_run_models() {
    let model = bench_dir().join("model.onnx");
    let config = config(users());
    let batch = rows(&config, ROWS);
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

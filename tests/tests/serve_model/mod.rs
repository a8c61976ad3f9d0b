//! A small PLE + UIE model with a behaviour sequence (every UIE module on) and seeded random
//! weights, compiled to ONNX, plus request rows: shared by the serving tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use uie_model::{Checkpoint, Config, GraphSchema, RawBatch, Tensor};
use uie_runtime::Batch;
use uie_testkit::checkpoints::random_checkpoint;
use uie_testkit::configs::config;
use uie_testkit::Rng;

/// History width `L` of the requests.
pub const L: usize = 5;

/// The config: `fixtures/configs/tiny-uie.toml`, shared with the compiler tests.
pub const CONFIG: &str = uie_testkit::configs::TINY_UIE;

/// A checkpoint with seeded random weights.
pub fn checkpoint(seed: u64) -> Checkpoint {
    random_checkpoint(config(CONFIG), seed, 0.8, "uie-e2e serve_model")
}

/// Writes the checkpoint of `seed` to `<dir>/ckpt` and compiles it to `<dir>/<file>`.
pub fn compiled(dir: &Path, seed: u64, file: &str) -> PathBuf {
    let ckpt = dir.join(format!("ckpt-{seed}"));
    if !ckpt.exists() {
        checkpoint(seed).write(&ckpt).expect("write checkpoint");
    }
    let out = dir.join(file);
    uie_compile::pipeline::compile_to_file(&ckpt, &out).expect("compile");
    out
}

/// Graph-input tensors of `n` rows (ids small, negative and huge; `hist_len` cycling `0..=L`).
pub fn tensors(n: usize, seed: u64) -> Vec<(String, Tensor)> {
    let mut rng = Rng::new(seed);
    let ids = |rng: &mut Rng| -> Vec<i64> {
        (0..n)
            .map(|i| match i % 3 {
                0 => (rng.next_u64() % 50) as i64,
                1 => -((rng.next_u64() % 1000) as i64) - 1,
                _ => rng.next_u64() as i64,
            })
            .collect()
    };
    vec![
        ("user_id".into(), Tensor::i64(vec![n], ids(&mut rng))),
        ("movie_id".into(), Tensor::i64(vec![n], ids(&mut rng))),
        ("genre".into(), Tensor::i64(vec![n], ids(&mut rng))),
        (
            "dense".into(),
            Tensor::f32(
                vec![n, 1],
                (0..n).map(|_| rng.uniform(-3.0, 50.0)).collect(),
            ),
        ),
        (
            "hist_items".into(),
            Tensor::i64(
                vec![n, L],
                (0..n * L)
                    .map(|_| (rng.next_u64() % 40) as i64 - 5)
                    .collect(),
            ),
        ),
        (
            "hist_len".into(),
            Tensor::i64(vec![n], (0..n).map(|r| (r % (L + 1)) as i64).collect()),
        ),
    ]
}

/// The schema of the model's graph inputs.
pub fn schema() -> GraphSchema {
    GraphSchema::from_config(&Config::from_toml_str(CONFIG).expect("config"))
}

/// The same rows in the graph's shape, built from [`typed`].
pub fn batch(n: usize, seed: u64) -> RawBatch {
    typed(n, seed).build(&schema()).expect("a valid batch")
}

/// The same rows as a typed [`Batch`] of named features.
pub fn typed(n: usize, seed: u64) -> Batch {
    let t = tensors(n, seed);
    let i64s = |k: usize| t[k].1.as_i64().expect("i64").to_vec();
    Batch::new()
        .ids("user_id", i64s(0))
        .ids("movie_id", i64s(1))
        .ids("genre", i64s(2))
        .numbers("age", t[3].1.as_f32().expect("f32").to_vec())
        .history(i64s(4), i64s(5), L)
}

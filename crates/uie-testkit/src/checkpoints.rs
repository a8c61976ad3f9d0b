//! Checkpoints with seeded random weights and batches of seeded random rows: the inputs of the
//! compiler, runtime, server and end-to-end tests, and of the fuzz seed generator.

use std::collections::BTreeMap;

use uie_model::batch::History;
use uie_model::{Checkpoint, Config, Plan, RawBatch, Tensor, TensorMap};

use crate::configs;
use crate::rng::Rng;

/// A checkpoint of `config` with seeded random weights for every tensor of its plan: uniform in
/// `±scale`, except `dense.std` in `[0.5, 2)`.
pub fn random_checkpoint(config: Config, seed: u64, scale: f32, producer: &str) -> Checkpoint {
    let mut rng = Rng::new(seed);
    let mut weights = TensorMap::new();
    for spec in Plan::new(&config).tensor_specs() {
        let n: usize = spec.shape.iter().product();
        let (lo, hi) = if spec.name == "dense.std" {
            (0.5, 2.0)
        } else {
            (-scale, scale)
        };
        let v = (0..n).map(|_| rng.uniform(lo, hi)).collect();
        weights.insert(spec.name, Tensor::f32(spec.shape, v));
    }
    Checkpoint::new(config, weights, producer)
}

/// [`random_checkpoint`] with weights in `±0.8`.
pub fn checkpoint(config: Config, seed: u64) -> Checkpoint {
    random_checkpoint(config, seed, 0.8, "uie-testkit")
}

/// `n` random rows; ids cycle through small, negative, huge (≥ 2^40) and extreme values.
pub fn rows(config: &Config, n: usize, seed: u64) -> RawBatch {
    let mut rng = Rng::new(seed);
    let mut categorical = BTreeMap::new();
    for f in &config.features.categorical {
        let ids = (0..n)
            .map(|i| {
                let r = rng.next_u64() as i64;
                match i % 6 {
                    0 => r.rem_euclid(100),
                    1 => -(r.rem_euclid(1000)) - 1,
                    2 => (1i64 << 40) + r.rem_euclid(1 << 20),
                    3 => -(1i64 << 41) - r.rem_euclid(1 << 20),
                    4 => r,
                    _ => [i64::MAX, i64::MIN, i64::MIN + 1, 0][i / 6 % 4],
                }
            })
            .collect();
        categorical.insert(f.name.clone(), ids);
    }
    let dense = (0..n * config.features.dense.len())
        .map(|_| rng.uniform(-3.0, 50.0))
        .collect();
    RawBatch {
        n,
        categorical,
        dense,
        history: None,
    }
}

/// [`rows`] plus a history of width `width`: `hist_len` cycles through `0..=width` (so 0 and
/// full both occur), ids mix small, negative and huge values, padding is garbage.
pub fn rows_with_history(config: &Config, n: usize, width: usize, seed: u64) -> RawBatch {
    let mut batch = rows(config, n, seed);
    let mut rng = Rng::new(seed ^ 0x5EED);
    let items = (0..n * width)
        .map(|i| {
            let r = rng.next_u64() as i64;
            match i % 5 {
                0 => r.rem_euclid(40),
                1 => -(r.rem_euclid(100)) - 1,
                2 => (1i64 << 40) + r.rem_euclid(1000),
                3 => r,
                _ => i64::MIN + r.rem_euclid(7),
            }
        })
        .collect();
    let len = (0..n).map(|r| (r % (width + 1)) as i64).collect();
    batch.history = Some(History { width, items, len });
    batch
}

/// A centre table whose rows cluster around one direction `u` (so a query pointing away from
/// `u` scores every centre ≤ 0 and retrieves nothing), with row 2 duplicated at row 5 (a tie).
fn clustered_table(rows: usize, width: usize, rng: &mut Rng) -> Vec<f32> {
    let u: Vec<f32> = (0..width).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let mut t = Vec::with_capacity(rows * width);
    for i in 0..rows {
        let scale = 0.5 + 0.2 * i as f32;
        for &x in &u {
            t.push(x * scale + rng.uniform(-0.05, 0.05));
        }
    }
    if rows > 5 {
        let row2: Vec<f32> = t[2 * width..3 * width].to_vec();
        t[5 * width..6 * width].copy_from_slice(&row2);
    }
    t
}

/// [`checkpoint`] of [`configs::TINY_UIE`] with clustered centre tables (rows that retrieve
/// nothing, a duplicated centre) and a personal memory with a zero row (a user never updated).
pub fn uie_checkpoint(seed: u64) -> Checkpoint {
    uie_checkpoint_with(configs::tiny_uie(), seed)
}

/// [`uie_checkpoint`] of another UIE config (e.g. `TINY_UIE` with more centres).
pub fn uie_checkpoint_with(config: Config, seed: u64) -> Checkpoint {
    let mut ck = checkpoint(config, seed);
    let mut rng = Rng::new(seed ^ 0xABCD);
    for name in ["memory.upe", "memory.ucse"] {
        let shape = ck.weights[name].shape.clone();
        let v = clustered_table(shape[0], shape[1], &mut rng);
        ck.weights.insert(name.to_string(), Tensor::f32(shape, v));
    }
    // A user tower without biases, so v_u points in varied directions (some away from M_upe).
    for name in ["aux.user.fc0.bias", "aux.user.out.bias"] {
        let shape = ck.weights[name].shape.clone();
        let n = shape.iter().product();
        ck.weights
            .insert(name.to_string(), Tensor::f32(shape, vec![0.0; n]));
    }
    let p = ck.weights["memory.personal"].clone();
    let mut v = p.as_f32().expect("memory.personal is f32").to_vec();
    let width = p.shape[1];
    v[..width].iter_mut().for_each(|x| *x = 0.0);
    ck.weights
        .insert("memory.personal".into(), Tensor::f32(p.shape, v));
    ck
}

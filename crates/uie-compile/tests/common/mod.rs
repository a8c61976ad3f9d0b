//! Shared test support: a tiny config, seeded random checkpoints and rows, tract runners.

#![allow(dead_code)]

use std::collections::BTreeMap;

use uie_compile::verify::{batch_inputs, run_engine};
use uie_model::{Checkpoint, Config, Plan, RawBatch, Tensor, TensorMap};
use uie_runtime::engine::{Engine, EngineOptions};

/// Two levels, specific and shared experts, a user and an item field, two dense features, one
/// tower with a hidden layer and one without.
pub const TINY: &str = r#"
[model]
name = "tiny_ple"
embed_dim = 3

[features]
dense = ["age", "income"]

[[features.categorical]]
name = "item_id"
buckets = 11
group = "item"

[[features.categorical]]
name = "education"
buckets = 7

[ple]
levels = 2
shared_experts = 1
specific_experts = 2
expert_hidden = [6, 4]

[[tasks]]
name = "ctr"
tower_hidden = [3]

[[tasks]]
name = "cvr"
"#;

/// The seeded generator of the op cases, shared so test data stays identical.
pub use uie_compile::ops::cases::Rng;

pub fn config(text: &str) -> Config {
    Config::from_toml_str(text).expect("config")
}

/// A checkpoint with seeded random weights for every tensor of the plan.
pub fn checkpoint(config: Config, seed: u64) -> Checkpoint {
    let mut rng = Rng::new(seed);
    let mut weights = TensorMap::new();
    for spec in Plan::new(&config).tensor_specs() {
        let n: usize = spec.shape.iter().product();
        let (lo, hi) = if spec.name == "dense.std" {
            (0.5, 2.0)
        } else {
            (-0.8, 0.8)
        };
        let v = (0..n).map(|_| rng.uniform(lo, hi)).collect();
        weights.insert(spec.name, Tensor::f32(spec.shape, v));
    }
    Checkpoint::new(config, weights, "uie-compile tests")
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

pub fn engine(bytes: &[u8], optimize: bool) -> Engine {
    Engine::load_bytes(
        bytes,
        EngineOptions {
            optimize,
            ..EngineOptions::default()
        },
    )
    .expect("tract loads the model")
}

/// `probs` of a batch under tract.
pub fn tract_probs(bytes: &[u8], optimize: bool, config: &Config, batch: &RawBatch) -> Tensor {
    let inputs = batch_inputs(config, batch).expect("inputs");
    let outs = run_engine(&engine(bytes, optimize), &inputs, "tract").expect("tract runs");
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].0, "probs");
    outs[0].1.clone()
}

/// `probs` of a batch under the reference evaluator.
pub fn reference_probs(ck: &Checkpoint, batch: &RawBatch) -> Tensor {
    let graph = uie_compile::pipeline::build_graph(ck).expect("graph");
    let inputs = batch_inputs(&ck.config, batch).expect("inputs");
    let named: Vec<(&str, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    let mut outs = uie_compile::eval::evaluate(&graph, &named).expect("evaluates");
    outs.remove(0).1
}

/// Asserts the parity rule of uie-model.md §7 (exact for i64).
pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor) {
    assert_eq!(actual.shape, expected.shape, "{what}: shape");
    match (
        actual.as_f32(),
        expected.as_f32(),
        actual.as_i64(),
        expected.as_i64(),
    ) {
        (Some(a), Some(b), _, _) => {
            for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
                assert!(
                    uie_compile::verify::within_tolerance(x, y),
                    "{what}: element {i}: {x} vs expected {y} (diff {})",
                    (x - y).abs()
                );
            }
        }
        (_, _, Some(a), Some(b)) => assert_eq!(a, b, "{what}"),
        _ => panic!(
            "{what}: dtypes differ: {:?} vs {:?}",
            actual.dtype(),
            expected.dtype()
        ),
    }
}

/// An independent forward pass written straight from the module doc of `uie_model::schema`
/// (no IR): plain loops over the plan, f64 accumulation. Returns `probs` row-major `[n, T]`.
pub fn direct_forward(ck: &Checkpoint, batch: &RawBatch) -> Vec<f32> {
    use uie_model::schema::{Mlp, Owner};
    let plan = Plan::new(&ck.config);
    let w = |name: &str| ck.weights[name].as_f32().expect("f32").to_vec();
    let linear = |x: &[f64], wn: &str, bn: &str| -> Vec<f64> {
        let (wt, b) = (w(wn), w(bn));
        let out = b.len();
        (0..out)
            .map(|o| {
                f64::from(b[o])
                    + x.iter()
                        .enumerate()
                        .map(|(i, v)| v * f64::from(wt[i * out + o]))
                        .sum::<f64>()
            })
            .collect()
    };
    let relu = |v: Vec<f64>| v.into_iter().map(|x| x.max(0.0)).collect::<Vec<f64>>();
    let mlp = |m: &Mlp, x: &[f64]| {
        let mut h = x.to_vec();
        for l in 0..m.depth() {
            let (wn, bn) = m.layer(l);
            h = relu(linear(&h, &wn, &bn));
        }
        h
    };
    let d = plan.n_dense;
    let mut out = Vec::new();
    for r in 0..batch.n {
        let mut x = Vec::new();
        for (field, table, buckets) in &plan.embeddings {
            let id = batch.categorical[field][r];
            let row = uie_model::hashing::bucket(id, *buckets);
            let t = w(table);
            x.extend(
                t[row * plan.embed_dim..(row + 1) * plan.embed_dim]
                    .iter()
                    .map(|&v| f64::from(v)),
            );
        }
        if d > 0 {
            let (mean, std) = (w("dense.mean"), w("dense.std"));
            for j in 0..d {
                x.push(
                    (f64::from(batch.dense[r * d + j]) - f64::from(mean[j])) / f64::from(std[j]),
                );
            }
        }
        let t = plan.towers.len();
        let mut task_in = vec![x.clone(); t];
        let mut shared_in = x;
        for level in &plan.levels {
            let spec: Vec<Vec<Vec<f64>>> = level
                .specific
                .iter()
                .enumerate()
                .map(|(k, es)| es.iter().map(|e| mlp(e, &task_in[k])).collect())
                .collect();
            let shared: Vec<Vec<f64>> = level.shared.iter().map(|e| mlp(e, &shared_in)).collect();
            let mix = |gate: &uie_model::schema::Gate, h: &[f64]| {
                let logits = linear(h, &gate.weight, &gate.bias);
                let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
                let s: f64 = e.iter().sum();
                let mut acc = vec![0.0; ck.config.expert_width()];
                for (g, (owner, j)) in e.iter().zip(&gate.experts) {
                    let ex = match owner {
                        Owner::Task(k) => &spec[*k][*j],
                        Owner::Shared => &shared[*j],
                    };
                    for (a, v) in acc.iter_mut().zip(ex) {
                        *a += g / s * v;
                    }
                }
                acc
            };
            let next: Vec<Vec<f64>> = level
                .task_gates
                .iter()
                .enumerate()
                .map(|(k, g)| mix(g, &task_in[k]))
                .collect();
            if let Some(g) = &level.shared_gate {
                shared_in = mix(g, &shared_in);
            }
            task_in = next;
        }
        for (k, tower) in plan.towers.iter().enumerate() {
            let h = mlp(&tower.hidden, &task_in[k]);
            let logit = linear(&h, &tower.out_weight, &tower.out_bias)[0];
            out.push((1.0 / (1.0 + (-logit).exp())) as f32);
        }
    }
    out
}

/// A small model with a behaviour sequence and every UIE module on (`fixtures/configs/tiny-uie.toml`).
pub const TINY_UIE: &str = include_str!("../../../../fixtures/configs/tiny-uie.toml");

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

/// [`checkpoint`] of `TINY_UIE` with clustered centre tables (rows that retrieve nothing, a
/// duplicated centre) and a personal memory with a zero row (a user never updated).
pub fn uie_checkpoint(seed: u64) -> Checkpoint {
    uie_checkpoint_with(config(TINY_UIE), seed)
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
    let mut v = p.as_f32().expect("f32").to_vec();
    let width = p.shape[1];
    v[..width].iter_mut().for_each(|x| *x = 0.0);
    ck.weights
        .insert("memory.personal".into(), Tensor::f32(p.shape, v));
    ck
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
    batch.history = Some(uie_model::batch::History { width, items, len });
    batch
}

/// Every output of a batch under tract, by name.
pub fn tract_outputs(
    bytes: &[u8],
    optimize: bool,
    config: &Config,
    batch: &RawBatch,
) -> Vec<(String, Tensor)> {
    let inputs = batch_inputs(config, batch).expect("inputs");
    run_engine(&engine(bytes, optimize), &inputs, "tract").expect("tract runs")
}

/// Every output of a batch under the reference evaluator, by name.
pub fn reference_outputs(
    graph: &uie_compile::ir::Graph,
    config: &Config,
    batch: &RawBatch,
) -> Vec<(String, Tensor)> {
    let inputs = batch_inputs(config, batch).expect("inputs");
    let named: Vec<(&str, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    uie_compile::eval::evaluate(graph, &named).expect("evaluates")
}

/// Every entry of a directory, sorted.
pub fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

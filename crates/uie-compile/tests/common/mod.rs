//! Shared support of the compiler tests: running a compiled model in tract and a graph in the
//! reference evaluator, and an independent forward pass to check the lowering against. The
//! configs, seeded checkpoints and rows and the comparisons come from `uie-testkit`.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

use uie_compile::verify::{batch_inputs, run_engine};
use uie_model::{Checkpoint, Config, Plan, RawBatch, Tensor};
use uie_runtime::engine::{Engine, EngineOptions};

/// Runs the `uie-compile` binary with `args` to the end.
pub fn cli_output(args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uie-compile"))
        .args(args)
        .output()
        .expect("the uie-compile binary runs")
}

/// Runs the `uie-compile` binary with `args`: whether it succeeded, its stdout and its stderr.
pub fn run_cli(args: &[&OsStr]) -> (bool, String, String) {
    let out = cli_output(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `uie-compile build <checkpoint> -o <model> <extra…>`: whether it succeeded, its stdout
/// and its stderr.
pub fn run_build(checkpoint: &Path, model: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args: Vec<&OsStr> = vec![
        "build".as_ref(),
        checkpoint.as_os_str(),
        "-o".as_ref(),
        model.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    run_cli(&args)
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

//! Per-node profile of the compiled MovieLens model under `uie-runtime` (tract, optimised, fused
//! retrieval, one thread): time per node aggregated by op and by name prefix, at batch 1, 16 and
//! 256.
//!
//! Reads the files `scripts/bench-retrieval.sh` writes (`target/bench-retrieval/model.onnx` and
//! `inputs_<n>.json`), or the model given as the first argument and the `inputs_<n>.json` of the
//! directory given as the second (e.g. those `bench_scaling run --keep` leaves), at the batch
//! sizes given as the third (comma-separated; default 1,16,256).
//!
//! Usage: `cargo run --release -p uie-bench --bin profile [model.onnx [inputs-dir [batches]]]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use uie_bench::latency::{read_batch_values, run_inputs};
use uie_runtime::engine::{Engine, EngineOptions, NodeTime};

fn prefix(name: &str) -> String {
    let head = name.split('/').next().unwrap_or(name);
    let parts: Vec<&str> = head.split('.').collect();
    match parts.as_slice() {
        ["uie", m, ..] => format!("uie.{m}"),
        ["ple", l, ..] => format!("ple.{l}"),
        [p, ..] => p.to_string(),
        [] => String::new(),
    }
}

fn table(title: &str, total: u128, rows: BTreeMap<String, (u128, usize)>, per_run: u128) {
    let mut rows: Vec<_> = rows.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1 .0));
    println!("\n| {title} | nodes | µs per run | share |\n|---|---:|---:|---:|");
    for (k, (ns, count)) in rows.iter().take(14) {
        println!(
            "| {k} | {count} | {:.1} | {:.1} % |",
            *ns as f64 / per_run as f64 / 1000.0,
            100.0 * *ns as f64 / total.max(1) as f64
        );
    }
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-retrieval");
    let model = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("model.onnx"));
    let inputs_dir = std::env::args().nth(2).map(PathBuf::from).unwrap_or(root);
    let batches: Vec<usize> = match std::env::args().nth(3) {
        Some(list) => list
            .split(',')
            .map(|b| b.trim().parse())
            .collect::<Result<_, _>>()?,
        None => vec![1, 16, 256],
    };
    let engine = Engine::load_path(&model, EngineOptions::default())?;
    println!(
        "model {}: rewrites {}",
        model.display(),
        engine.rewrite_counts()
    );
    for n in batches {
        let values = read_batch_values(&inputs_dir, n)?;
        let inputs = run_inputs(&values);
        let runs = (2000 / n).max(20) as u128;
        engine.profile(&inputs, 10)?;
        let times: Vec<NodeTime> = engine.profile(&inputs, runs as usize)?;
        let total: u128 = times.iter().map(|t| t.nanos).sum();
        println!(
            "\n### batch {n}: {:.1} µs per run in nodes ({} nodes)",
            total as f64 / runs as f64 / 1000.0,
            times.len()
        );
        let mut by_op: BTreeMap<String, (u128, usize)> = BTreeMap::new();
        let mut by_prefix: BTreeMap<String, (u128, usize)> = BTreeMap::new();
        let mut by_node: BTreeMap<String, (u128, usize)> = BTreeMap::new();
        for t in &times {
            let e = by_op.entry(t.op.clone()).or_default();
            e.0 += t.nanos;
            e.1 += 1;
            let e = by_prefix.entry(prefix(&t.name)).or_default();
            e.0 += t.nanos;
            e.1 += 1;
            let e = by_node.entry(format!("{} ({})", t.name, t.op)).or_default();
            e.0 += t.nanos;
            e.1 += 1;
        }
        table("op", total, by_op, runs);
        table("prefix", total, by_prefix, runs);
        table("node", total, by_node, runs);
    }
    Ok(())
}

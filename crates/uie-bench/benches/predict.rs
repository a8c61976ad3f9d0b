//! criterion benchmarks of the runtime's hot paths on the compiled MovieLens model, at
//! batch 1 and 256, one thread:
//!
//! - `predict`: [`Model::predict`] on a prepared [`RawBatch`] (validation, input assembly, tract
//!   run);
//! - `engine_run`: [`uie_runtime::Engine::run`] on prepared graph inputs (the tract run alone);
//! - `validate`: [`RawBatch::validate`] (request validation alone);
//! - `from_tensors`: [`RawBatch::from_tensors`] (a KServe-style request of named tensors to a
//!   [`RawBatch`], tensors cloned first).
//!
//! The model is a file: `$UIE_BENCH_MODEL`, default
//! `target/bench-inference/model.onnx` with the inputs `inputs_1.json` and `inputs_256.json` beside
//! it, written by `scripts/bench-inference.sh` (or
//! `cargo run --release -p uie-bench --bin bench_inference -- prepare`).
//!
//! Run: `cargo bench -p uie-bench --bench predict`

#![allow(missing_docs)] // criterion_group! defines an undocumented pub fn.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use uie_runtime::{EngineOptions, Model, RawBatch, Tensor};

const BATCHES: [usize; 2] = [1, 256];

fn model_path() -> PathBuf {
    std::env::var_os("UIE_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-inference/model.onnx")
        })
}

/// Named tensors from the benchmark's JSON inputs file.
fn read_inputs(path: &Path) -> Vec<(String, Tensor)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run scripts/bench-inference.sh first (it writes the model and \
             its inputs), or set UIE_BENCH_MODEL",
            path.display()
        )
    });
    let doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).expect("inputs JSON");
    doc.into_iter()
        .map(|(name, v)| {
            let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).expect("shape");
            let value = match v["dtype"].as_str() {
                Some("float32") => Tensor::f32(
                    shape,
                    serde_json::from_value(v["data"].clone()).expect("f32 data"),
                ),
                Some("int64") => Tensor::i64(
                    shape,
                    serde_json::from_value(v["data"].clone()).expect("i64 data"),
                ),
                other => panic!("{name}: unknown dtype {other:?}"),
            };
            (name, value)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let path = model_path();
    let dir = path.parent().expect("model directory").to_path_buf();
    let model = Model::load_with(&path, EngineOptions::default()).unwrap_or_else(|e| {
        panic!(
            "cannot load {}: {e}; run scripts/bench-inference.sh first, or set UIE_BENCH_MODEL",
            path.display()
        )
    });
    let cases: Vec<_> = BATCHES
        .iter()
        .map(|&n| (n, read_inputs(&dir.join(format!("inputs_{n}.json")))))
        .collect();
    let mut group = c.benchmark_group("runtime");
    for (n, tensors) in &cases {
        let schema = model.schema();
        let batch = RawBatch::from_tensors(schema, tensors.clone()).expect("batch");
        let inputs = batch.graph_inputs(schema);
        group.bench_with_input(BenchmarkId::new("predict", n), &batch, |b, batch| {
            b.iter(|| model.predict(batch).expect("predict"))
        });
        group.bench_with_input(BenchmarkId::new("engine_run", n), &inputs, |b, inputs| {
            b.iter(|| model.engine().run(inputs).expect("run"))
        });
        group.bench_with_input(BenchmarkId::new("validate", n), &batch, |b, batch| {
            b.iter(|| batch.validate(schema).expect("valid"))
        });
        group.bench_with_input(
            BenchmarkId::new("from_tensors", n),
            tensors,
            |b, tensors| b.iter(|| RawBatch::from_tensors(schema, tensors.clone()).expect("batch")),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);

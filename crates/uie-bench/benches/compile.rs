//! The compiler's hot path on the MovieLens-size full-UIE model (`models/movielens-uie.toml`:
//! UPE, UCBE, UCSE; 262,144 movie buckets, 1,024 user buckets; about 9.6 MB of weights) from a
//! checkpoint with seeded random weights, all in memory:
//!
//! - `content_hash`: the checkpoint hash written into the model's metadata (streamed);
//! - `lower_and_passes`: lowering, validation, shape inference and the graph passes, consuming
//!   the checkpoint ([`pipeline::build_graph_owned`]; the clone it consumes is made outside the
//!   timing);
//! - `emit_inline`: the finished graph to ONNX bytes ([`onnx::to_model_bytes`]);
//! - `compile`: all of it from a borrowed checkpoint ([`uie_compile::compile`]).
//!
//! Run: `cargo bench -p uie-bench --bench compile`.

#![allow(missing_docs)] // criterion_group! defines an undocumented pub fn.

use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use uie_compile::onnx;
use uie_compile::pipeline::{self, CompileOptions};
use uie_model::{Checkpoint, Config, Plan, Tensor, TensorMap};

/// The MovieLens full-UIE config of the repository.
fn config() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/movielens-uie.toml");
    match Config::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// Every tensor of the plan filled from a seeded xorshift generator in [-0.5, 0.5)
/// (`dense.std` in [0.5, 1.5), positive as the checkpoint rules require).
fn seeded_checkpoint(config: Config, seed: u64) -> Checkpoint {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut weights = TensorMap::new();
    for spec in Plan::new(&config).tensor_specs() {
        let n: usize = spec.shape.iter().product();
        let offset = if spec.name == "dense.std" { 0.5 } else { -0.5 };
        let v = (0..n).map(|_| next() + offset).collect();
        weights.insert(spec.name, Tensor::f32(spec.shape, v));
    }
    Checkpoint::new(config, weights, "uie-compile bench")
}

fn bench(c: &mut Criterion) {
    let ck = seeded_checkpoint(config(), 7);
    let options = CompileOptions::default();
    let mut g = c.benchmark_group("compile_movielens_uie");
    g.sample_size(20);
    g.bench_function("content_hash", |b| {
        b.iter(|| ck.content_hash().expect("hash"))
    });
    g.bench_function("lower_and_passes", |b| {
        b.iter_batched(
            || ck.clone(),
            |ck| pipeline::build_graph_owned(ck, &options).expect("graph"),
            BatchSize::LargeInput,
        )
    });
    let graph = pipeline::build_graph(&ck).expect("graph");
    g.bench_function("emit_inline", |b| {
        b.iter(|| onnx::to_model_bytes(&graph).expect("bytes"))
    });
    g.bench_function("compile", |b| {
        b.iter(|| uie_compile::compile(&ck).expect("compile"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

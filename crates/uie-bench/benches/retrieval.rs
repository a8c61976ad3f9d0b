//! Benchmark of the runtime rewrites: the compiled MovieLens full-UIE model under `uie-runtime`
//! (optimised, one thread) with every runtime rewrite (the default options: "fused"), with all
//! but the lookup rewrite ("no_lookups"), and with none ("standard"), at batch 1, 16 and 256.
//!
//! The checkpoint is `$UIE_BENCH_CHECKPOINT` (default `out/protocol-b/full-uie-s2/best`); when it
//! does not exist a MovieLens UIE model is trained briefly (two epochs) into
//! `target/bench-retrieval/run`. The model and the exact inputs (real test rows spread over the
//! test split) are written to `target/bench-retrieval/` so that `scripts/bench-retrieval.sh` times
//! ONNX Runtime on the same file and the same inputs.

#![allow(missing_docs)] // criterion_group! defines an undocumented pub fn.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use uie_bench::latency::write_inputs_json;
use uie_compile::verify::batch_inputs;
use uie_model::{Checkpoint, Config, Tensor};
use uie_runtime::engine::{Engine, EngineOptions};
use uie_runtime::RewriteName;
use uie_train::train::load_data;
use uie_train::{train, TrainOptions};

const BATCHES: [usize; 3] = [1, 16, 256];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Named model inputs of one batch.
type Inputs = Vec<(String, Tensor)>;

/// Compiles the checkpoint and writes the model and the inputs of each batch size.
fn prepare(out: &Path) -> (PathBuf, Vec<(usize, Inputs)>) {
    std::fs::create_dir_all(out).expect("bench dir");
    let ck_dir = std::env::var_os("UIE_BENCH_CHECKPOINT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("out/protocol-b/full-uie-s2/best"));
    let mut opts = TrainOptions {
        data_root: root(),
        epochs: Some(2),
        ..TrainOptions::new(out.join("run"))
    };
    let ck = if ck_dir.is_dir() {
        Checkpoint::read(&ck_dir).expect("checkpoint")
    } else {
        let mut config = Config::load(&root().join("models/movielens-uie.toml")).expect("config");
        config.uie.warmup_epochs = 1;
        train(&config, &opts).expect("training");
        Checkpoint::read(&out.join("run/best")).expect("checkpoint")
    };
    opts.epochs = None;
    let model = out.join("model.onnx");
    std::fs::write(&model, uie_compile::compile(&ck).expect("compile")).expect("write model");
    let test = load_data(&ck.config, &opts).expect("data").test.batch;
    let mut all = Vec::new();
    for n in BATCHES {
        let step = (test.n / n).max(1);
        let rows: Vec<usize> = (0..test.n).step_by(step).take(n).collect();
        let inputs = batch_inputs(&ck.config, &test.take(&rows)).expect("inputs");
        write_inputs_json(&out.join(format!("inputs_{n}.json")), &inputs).expect("write inputs");
        all.push((n, inputs));
    }
    (model, all)
}

fn bench(c: &mut Criterion) {
    let out = root().join("target/bench-retrieval");
    let (model, batches) = prepare(&out);
    // "fused": every runtime rewrite (the default); "no_lookups": all but the fused embedding
    // lookups; "standard": none (the ONNX graph as tract optimises it).
    let engines: Vec<(&str, Engine)> = [
        ("fused", true, true),
        ("no_lookups", true, false),
        ("standard", false, false),
    ]
    .into_iter()
    .map(|(label, fuse, fuse_lookups)| {
        let e = Engine::load_path(
            &model,
            EngineOptions {
                optimize: true,
                clear_upper_state: fuse,
                ..EngineOptions::default()
            }
            .with_rewrites(fuse)
            .with_rewrite(RewriteName::Lookup, fuse_lookups),
        )
        .expect("load");
        println!("{label}: rewrites {}", e.rewrite_counts());
        (label, e)
    })
    .collect();
    let mut group = c.benchmark_group("movielens_uie");
    for (n, inputs) in &batches {
        let values: Vec<(&str, Tensor)> = inputs
            .iter()
            .map(|(name, t)| (name.as_str(), t.clone()))
            .collect();
        for (label, engine) in &engines {
            group.bench_with_input(BenchmarkId::new(*label, n), &values, |b, v| {
                b.iter(|| engine.run(v).expect("run"))
            });
        }
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

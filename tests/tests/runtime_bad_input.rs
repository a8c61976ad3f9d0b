//! Bad input to `uie-runtime` (the library a service links): model files that are missing, empty,
//! truncated, of the wrong format, a directory, without the uie metadata, or whose external data
//! is missing or short are load errors naming the file; an empty batch (N = 0) is an empty
//! answer; ids at the int64 extremes (categorical and history) are answered exactly like the rows
//! they hash to; empty histories are fine and a history of width 0 is refused. The rows of
//! `docs/bad-input.md` (uie-runtime) point here (request validation: `serve_runtime.rs`).

mod serve_model;

use serve_model::{compiled, CONFIG, L};
use uie_compile::ir::{Dim, Dtype, Graph, Op, TensorType};
use uie_compile::onnx::{self, ExternalDataOptions, WriteOptions};
use uie_compile::pipeline::{compile_to_path, CompileOptions};
use uie_model::hashing::bucket;
use uie_model::Config;
use uie_runtime::{Batch, Model, Predictions, RuntimeError};

fn load_err(path: &std::path::Path, fragments: &[&str]) {
    let err = Model::load(path).expect_err("must not load");
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, RuntimeError::Load { .. }), "{err:?}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    for f in fragments {
        assert!(msg.contains(f), "{f:?} missing from {msg:?}");
    }
}

#[test]
fn bad_model_files_are_load_errors_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let good = compiled(tmp.path(), 1, "good.onnx");
    let bytes = std::fs::read(&good).expect("model");
    load_err(&tmp.path().join("missing.onnx"), &["No such file"]);
    load_err(tmp.path(), &["a directory, not a model file"]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.onnx", Vec::new(), "the file is empty, not a model"),
        (
            "truncated.onnx",
            bytes[..bytes.len() / 2].to_vec(),
            "failed to decode Protobuf message",
        ),
        (
            "garbage.onnx",
            b"\xff\xfe not a protobuf".to_vec(),
            "failed to decode Protobuf message",
        ),
        (
            "checkpoint-as-model.onnx",
            std::fs::read(tmp.path().join("ckpt-1/weights.safetensors")).expect("weights"),
            "failed to decode Protobuf message",
        ),
    ];
    for (name, content, what) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, content).expect("write");
        load_err(&path, &[what]);
    }
}

#[test]
fn a_model_without_the_uie_metadata_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut g = Graph::new("plain");
    let x = g
        .add_input(
            "x",
            TensorType {
                dtype: Dtype::F32,
                shape: vec![Dim::Sym("N".into())],
            },
        )
        .expect("input");
    let y = g.add_op("relu", Op::Relu, &[x], "y").expect("relu");
    g.add_output(y).expect("output");
    g.validate().expect("valid");
    g.infer_shapes().expect("shapes");
    let path = tmp.path().join("plain.onnx");
    std::fs::write(&path, onnx::to_model_bytes(&g).expect("bytes")).expect("write");
    let err = Model::load(&path).expect_err("no uie metadata");
    println!("{err}");
    assert!(matches!(err, RuntimeError::Metadata(_)), "{err:?}");
    assert!(err.to_string().contains("uie."), "{err}");
}

#[test]
fn missing_or_short_external_data_is_a_load_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    compiled(tmp.path(), 2, "unused.onnx");
    let model = tmp.path().join("ext.onnx");
    let opts = WriteOptions {
        external_data: Some(ExternalDataOptions {
            threshold: 64,
            ..ExternalDataOptions::default()
        }),
        ..WriteOptions::default()
    };
    let report = compile_to_path(
        &tmp.path().join("ckpt-2"),
        &model,
        &CompileOptions::default(),
        &opts,
    )
    .expect("compile");
    let data = report.data.expect("a data file").path;
    Model::load(&model).expect("the complete model loads");
    let bytes = std::fs::read(&data).expect("data");
    std::fs::write(&data, &bytes[..bytes.len() / 2]).expect("truncate");
    load_err(&model, &["external data range", "is out of bounds"]);
    std::fs::remove_file(&data).expect("rm");
    let name = data.file_name().and_then(|n| n.to_str()).expect("name");
    load_err(&model, &[name, "No such file"]);
}

fn config() -> Config {
    Config::from_toml_str(CONFIG).expect("config")
}

fn buckets(name: &str) -> usize {
    config()
        .features
        .categorical
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.buckets)
        .expect("field")
}

/// A typed batch built for the model and predicted.
fn predict(model: &Model, batch: Batch) -> Result<Predictions, RuntimeError> {
    let raw = batch.build(model.schema())?;
    model.predict(&raw)
}

#[test]
fn empty_batches_int64_extremes_and_empty_histories() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = Model::load(&compiled(tmp.path(), 3, "m.onnx")).expect("load");

    // N = 0: no rows, no error.
    let empty = Batch::new()
        .ids("user_id", vec![])
        .ids("movie_id", vec![])
        .ids("genre", vec![])
        .numbers("age", vec![])
        .history(vec![], vec![], L);
    let p = predict(&model, empty).expect("an empty batch");
    assert_eq!((p.rows, p.probs.len()), (0, 0));

    // Ids at the int64 extremes, in every id input and the history, give the same answer as the
    // ids they hash to (Python-style `id mod buckets`).
    let extremes = [i64::MAX, i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1];
    let n = extremes.len();
    let hashed = |name: &str, ids: &[i64]| -> Vec<i64> {
        ids.iter()
            .map(|&id| bucket(id, buckets(name)) as i64)
            .collect()
    };
    let items: Vec<i64> = (0..n * L).map(|i| extremes[i % n]).collect();
    let lens: Vec<i64> = (0..n).map(|r| (r % (L + 1)) as i64).collect();
    let batch = |user: Vec<i64>, movie: Vec<i64>, genre: Vec<i64>, items: Vec<i64>| {
        Batch::new()
            .ids("user_id", user)
            .ids("movie_id", movie)
            .ids("genre", genre)
            .numbers("age", vec![33.0; n])
            .history(items, lens.clone(), L)
    };
    let raw = predict(
        &model,
        batch(
            extremes.to_vec(),
            extremes.to_vec(),
            extremes.to_vec(),
            items.clone(),
        ),
    )
    .expect("extreme ids");
    let reduced = predict(
        &model,
        batch(
            hashed("user_id", &extremes),
            hashed("movie_id", &extremes),
            hashed("genre", &extremes),
            hashed("movie_id", &items),
        ),
    )
    .expect("hashed ids");
    assert_eq!(raw.probs, reduced.probs);
    assert!(raw
        .probs
        .iter()
        .all(|p| p.is_finite() && (0.0..=1.0).contains(p)));

    // Empty histories (every hist_len 0): answered, finite.
    let none = Batch::new()
        .ids("user_id", vec![1, 2])
        .ids("movie_id", vec![3, 4])
        .ids("genre", vec![5, 6])
        .numbers("age", vec![20.0, 40.0])
        .history(vec![0; 2 * L], vec![0, 0], L);
    let p = predict(&model, none).expect("empty histories");
    assert!(p.probs.iter().all(|v| v.is_finite()));
    // A history of width 0 is refused, naming hist_items.
    let zero = Batch::new()
        .ids("user_id", vec![1])
        .ids("movie_id", vec![3])
        .ids("genre", vec![5])
        .numbers("age", vec![20.0])
        .history(vec![], vec![0], 0);
    let err = predict(&model, zero).expect_err("width 0");
    println!("{err}");
    assert!(err.to_string().contains("hist_items"), "{err}");
    assert!(
        err.to_string().contains("width L must be at least 1"),
        "{err}"
    );
}

//! `uie-compile triton`: the generated repository has `<name>/config.pbtxt` and
//! `<name>/1/model.onnx` (plus `model.onnx.<hash>.data` with external data); every `config.pbtxt`
//! parses with Triton's own `ModelConfig` protobuf (`tritonclient.grpc.model_config_pb2`), and its inputs
//! and outputs match the ONNX model's (names, types, dims without the batch dim, `-1` for `L`);
//! writing twice gives identical bytes.

mod serve_model;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value as Json;
use uie_compile::onnx::{self, summarize_file, ExternalDataOptions, WriteOptions};
use uie_compile::triton::write_repository;

fn parse_configs(paths: &[PathBuf]) -> Vec<Json> {
    let out = Command::new(uie_e2e::python().expect("python"))
        .arg(uie_e2e::repo_root().join("tests/python/triton_config_check.py"))
        .args(paths)
        .output()
        .expect("python starts");
    assert!(
        out.status.success(),
        "model_config_pb2 rejected a config:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn triton_repository_parses_with_model_config_pb2_and_matches_the_model() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ckpt = tmp.path().join("ckpt");
    serve_model::checkpoint(21)
        .write(&ckpt)
        .expect("checkpoint");
    let repo = tmp.path().join("repo");
    let inline =
        write_repository(&ckpt, &repo, None, 256, &WriteOptions::default()).expect("inline");
    let ext_opts = WriteOptions {
        external_data: Some(ExternalDataOptions {
            threshold: 64,
            ..ExternalDataOptions::default()
        }),
        ..WriteOptions::default()
    };
    let ext = write_repository(&ckpt, &repo, Some("tiny_uie_ext"), 32, &ext_opts).expect("ext");
    assert_eq!(inline.model_dir, repo.join("tiny_uie"));
    assert!(repo.join("tiny_uie/1/model.onnx").is_file());
    assert!(inline.model.data.is_none());
    let data = ext.model.data.as_ref().expect("a data file");
    assert_eq!(
        data.path.parent(),
        Some(repo.join("tiny_uie_ext/1").as_path())
    );
    let data_name = data
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    assert!(
        onnx::is_data_file_of("model.onnx", data_name),
        "{data_name}"
    );
    assert!(data.path.is_file());
    let first = std::fs::read(&inline.config_path).expect("config");
    println!("{}", String::from_utf8_lossy(&first));

    let parsed = parse_configs(&[inline.config_path.clone(), ext.config_path.clone()]);
    for (config, (name, max_batch, report)) in parsed
        .iter()
        .zip([("tiny_uie", 256, &inline), ("tiny_uie_ext", 32, &ext)])
    {
        assert_eq!(config["name"], name);
        assert_eq!(config["platform"], "onnxruntime_onnx");
        assert_eq!(config["max_batch_size"], max_batch);
        assert_eq!(config["dynamic_batching"], true);
        let summary = summarize_file(&report.model.model_path).expect("summary");
        for (kind, values) in [("input", &summary.inputs), ("output", &summary.outputs)] {
            let entries = config[kind].as_array().expect(kind);
            assert_eq!(entries.len(), values.len(), "{name} {kind}s");
            for (e, v) in entries.iter().zip(values.iter()) {
                assert_eq!(e["name"], v.name.as_str());
                let ty = if v.dtype == "f32" {
                    "TYPE_FP32"
                } else {
                    "TYPE_INT64"
                };
                assert_eq!(e["data_type"], ty, "{}", v.name);
                // ONNX dims minus the batch dim, symbolic ones as -1.
                assert!(
                    v.dims[0].parse::<i64>().is_err(),
                    "{}: batch dim is fixed",
                    v.name
                );
                let want: Vec<i64> = v.dims[1..]
                    .iter()
                    .map(|d| d.parse::<i64>().unwrap_or(-1))
                    .collect();
                // A per-row scalar is dims [1] reshaped to [] (Triton needs one dim at least).
                let model_dims = match e["reshape"].as_array() {
                    Some(r) => r.clone(),
                    None => e["dims"].as_array().expect("dims").clone(),
                };
                let got: Vec<i64> = model_dims
                    .iter()
                    .map(|d| d.as_i64().expect("dim"))
                    .collect();
                assert_eq!(got, want, "{name}: {}", v.name);
                if e["reshape"].is_array() {
                    assert_eq!(e["dims"], serde_json::json!([1]));
                }
            }
        }
    }
    let names: Vec<&str> = parsed[0]["input"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    assert!(
        names.contains(&"hist_items") && names.contains(&"dense"),
        "{names:?}"
    );

    // Deterministic: the same repository again gives the same bytes.
    write_repository(&ckpt, &repo, None, 256, &WriteOptions::default()).expect("again");
    assert_eq!(std::fs::read(&inline.config_path).expect("config"), first);
    // A bad name is refused before anything is written.
    assert!(write_repository(&ckpt, &repo, Some("../x"), 8, &WriteOptions::default()).is_err());
}

//! End-to-end tests of the compiler: lowering parity (reference vs tract), the ONNX contract,
//! determinism, error reporting, atomic writes, `verify`, and the IR dump snapshot.

mod common;

use std::path::Path;

use common::{reference_probs, tract_probs};
use uie_compile::{compile, compile_to_file, onnx, pipeline, verify};
use uie_model::checkpoint::{files, to_safetensors};
use uie_model::Tensor;
use uie_testkit::assertions::{assert_close, assert_snapshot};
use uie_testkit::checkpoints::{checkpoint, rows};
use uie_testkit::configs::{config, TINY_PLE};

fn census() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/census-ple.toml");
    std::fs::read_to_string(path).expect("census config")
}

#[test]
fn tiny_model_matches_reference_in_tract_plain_and_optimized() {
    let ck = checkpoint(config(TINY_PLE), 42);
    let bytes = compile(&ck).expect("compile");
    for (n, seed) in [(1, 1), (7, 2), (64, 3)] {
        let batch = rows(&ck.config, n, seed);
        let expected = reference_probs(&ck, &batch);
        assert_eq!(expected.shape, vec![n, 2]);
        let p = expected.as_f32().expect("f32");
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
        for optimize in [false, true] {
            let got = tract_probs(&bytes, optimize, &ck.config, &batch);
            assert_close(&format!("n={n} optimize={optimize}"), &got, &expected);
        }
    }
}

#[test]
fn census_config_matches_reference_in_tract() {
    let ck = checkpoint(config(&census()), 7);
    let bytes = compile(&ck).expect("compile");
    let batch = rows(&ck.config, 24, 9);
    let expected = reference_probs(&ck, &batch);
    for optimize in [false, true] {
        assert_close(
            "census",
            &tract_probs(&bytes, optimize, &ck.config, &batch),
            &expected,
        );
    }
}

#[test]
fn one_level_without_dense_or_specific_experts_compiles() {
    let mmoe = r#"
[model]
name = "mmoe"
embed_dim = 2
[[features.categorical]]
name = "user_id"
buckets = 5
[features]
[ple]
levels = 1
shared_experts = 3
specific_experts = 0
expert_hidden = [4]
[[tasks]]
name = "a"
[[tasks]]
name = "b"
tower_hidden = [2, 2]
"#;
    let ck = checkpoint(config(mmoe), 3);
    let bytes = compile(&ck).expect("compile");
    let summary = onnx::summarize(&bytes).expect("summary");
    assert_eq!(
        summary.inputs.len(),
        1,
        "no dense input without dense features"
    );
    let batch = rows(&ck.config, 12, 4);
    let expected = reference_probs(&ck, &batch);
    for optimize in [false, true] {
        assert_close(
            "mmoe",
            &tract_probs(&bytes, optimize, &ck.config, &batch),
            &expected,
        );
    }
}

#[test]
fn the_onnx_contract() {
    let ck = checkpoint(config(TINY_PLE), 42);
    let s = onnx::summarize(&compile(&ck).expect("compile")).expect("summary");
    assert_eq!(s.ir_version, 8);
    assert_eq!(s.opsets, vec![(String::new(), 17)]);
    assert!(s.producer.starts_with("uie-compile"), "{}", s.producer);
    assert_eq!(s.graph_name, "tiny_ple");
    let inputs: Vec<String> = s.inputs.iter().map(|v| v.to_string()).collect();
    // User fields before item fields, then dense.
    assert_eq!(
        inputs,
        ["education i64[N]", "item_id i64[N]", "dense f32[N,2]"]
    );
    let outputs: Vec<String> = s.outputs.iter().map(|v| v.to_string()).collect();
    assert_eq!(outputs, ["probs f32[N,2]"]);
    assert_eq!(s.op_counts.get("Mod"), Some(&2));
    assert_eq!(s.op_counts.get("Gather"), Some(&2));
    assert_eq!(s.op_counts.get("Sigmoid"), Some(&2));
    let keys: Vec<&str> = s.metadata.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "uie.checkpoint_sha256",
            "uie.format_version",
            "uie.model_name",
            "uie.schema",
            "uie.tasks"
        ]
    );
    assert_eq!(s.metadata["uie.format_version"], "1");
    assert_eq!(s.metadata["uie.model_name"], "tiny_ple");
    assert_eq!(s.metadata["uie.tasks"], r#"["ctr","cvr"]"#);
    assert_eq!(
        s.metadata["uie.schema"],
        r#"{"categorical":[{"name":"education","buckets":7,"group":"user"},{"name":"item_id","buckets":11,"group":"item"}],"dense":["age","income"]}"#
    );
    assert_eq!(
        s.metadata["uie.checkpoint_sha256"],
        ck.content_hash().expect("hash")
    );
    // Every weight is an initializer, never an input; axes are initializers too.
    let specs = uie_model::Plan::new(&ck.config).tensor_specs().len();
    assert_eq!(
        s.initializers.len(),
        specs + 2 + 2,
        "weights + 2 bucket scalars + 2 axes constants"
    );
}

#[test]
fn compiling_twice_gives_identical_bytes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ck = checkpoint(config(TINY_PLE), 5);
    let a = compile(&ck).expect("a");
    let b = compile(&checkpoint(config(TINY_PLE), 5)).expect("b");
    assert_eq!(a, b);
    let dir = tmp.path().join("ckpt");
    ck.write(&dir).expect("write");
    let out = tmp.path().join("m.onnx");
    compile_to_file(&dir, &out).expect("compile_to_file");
    assert_eq!(
        std::fs::read(&out).expect("read"),
        a,
        "from disk == in memory"
    );
    compile_to_file(&dir, &out).expect("again");
    assert_eq!(std::fs::read(&out).expect("read"), a);
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("ls")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
}

#[test]
fn a_tensor_with_a_wrong_shape_is_refused_by_name() {
    let mut ck = checkpoint(config(TINY_PLE), 5);
    ck.weights.insert(
        "ple.l1.ctr.expert1.fc0.weight".into(),
        Tensor::f32(vec![4, 5], vec![0.0; 20]),
    );
    let e = compile(&ck).expect_err("bad shape in memory");
    assert!(
        e.to_string().contains("ple.l1.ctr.expert1.fc0.weight"),
        "{e}"
    );

    // The same through a checkpoint directory (weights file replaced behind the writer's back).
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("ckpt");
    checkpoint(config(TINY_PLE), 5).write(&dir).expect("write");
    std::fs::write(
        dir.join(files::WEIGHTS),
        to_safetensors(&ck.weights).expect("st"),
    )
    .expect("replace");
    let out = tmp.path().join("model.onnx");
    let e = compile_to_file(&dir, &out).expect_err("bad shape on disk");
    let msg = e.to_string();
    assert!(
        msg.contains("ple.l1.ctr.expert1.fc0.weight") && msg.contains("[4, 5]"),
        "{msg}"
    );
    assert!(!out.exists(), "nothing written on failure");
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("missing-dir").join("model.onnx");
    let e = onnx::write_atomically(&out, b"bytes").expect_err("no directory");
    assert!(e.to_string().contains("missing-dir"), "{e}");
    let existing = tmp.path().join("keep.onnx");
    std::fs::write(&existing, b"old").expect("write");
    onnx::write_atomically(&existing, b"new").expect("replace");
    assert_eq!(std::fs::read(&existing).expect("read"), b"new");
}

#[test]
fn verify_passes_on_matching_golden_rows_and_fails_on_others() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut ck = checkpoint(config(TINY_PLE), 11);
    let batch = rows(&ck.config, 30, 12);
    let probs = reference_probs(&ck, &batch);
    ck.golden = Some(batch.to_golden(&ck.config, probs.as_f32().expect("f32")));
    let dir = tmp.path().join("ckpt");
    ck.write(&dir).expect("write");
    let model = tmp.path().join("model.onnx");
    compile_to_file(&dir, &model).expect("compile");
    let report = verify::verify(&model, &dir).expect("verify");
    assert!(report.passed(), "{report}");
    assert_eq!(report.rows, 30);
    assert_eq!(report.engines.len(), 3);

    // Perturbed expectations fail in every engine.
    let mut bad = probs.as_f32().expect("f32").to_vec();
    bad[3] += 0.01;
    ck.golden = Some(batch.to_golden(&ck.config, &bad));
    ck.write(&dir).expect("rewrite");
    let report = verify::verify(&model, &dir).expect("verify");
    assert!(!report.passed());
    assert!(report.engines.iter().all(|e| !e.passed()), "{report}");
    assert_eq!(report.checkpoint_hash_matches, Some(true));

    // A model from another checkpoint is flagged.
    let other = tmp.path().join("other.onnx");
    onnx::write_atomically(
        &other,
        &compile(&checkpoint(config(TINY_PLE), 99)).expect("c"),
    )
    .expect("w");
    let report = verify::verify(&other, &dir).expect("verify");
    assert_eq!(report.checkpoint_hash_matches, Some(false));
    assert!(!report.passed());
}

#[test]
fn ir_dump_snapshot() {
    let ck = checkpoint(config(TINY_PLE), 42);
    let dump = pipeline::build_graph(&ck).expect("graph").dump();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/tiny_ple.ir.txt");
    assert_snapshot(&path, &dump);
}

#[test]
fn lowering_matches_an_independent_forward_pass() {
    for (text, seed) in [(TINY_PLE.to_string(), 42), (census(), 8)] {
        let ck = checkpoint(config(&text), seed);
        let batch = rows(&ck.config, 40, seed + 1);
        let want = common::direct_forward(&ck, &batch);
        let t = ck.config.tasks.len();
        let want = Tensor::f32(vec![40, t], want);
        assert_close(&ck.config.model.name, &reference_probs(&ck, &batch), &want);
        let spread = want
            .as_f32()
            .expect("f32")
            .iter()
            .fold((1f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!(
            spread.1 - spread.0 > 1e-3,
            "outputs vary across rows: {spread:?}"
        );
    }
}

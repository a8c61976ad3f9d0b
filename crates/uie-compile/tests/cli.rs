//! The `uie-compile` binary: build, inspect, verify, dump, and a readable error on a bad
//! checkpoint.

mod common;

use common::{reference_probs, run_build, run_cli};
use uie_model::checkpoint::{files, to_safetensors};
use uie_model::Tensor;
use uie_testkit::checkpoints::{checkpoint, rows};
use uie_testkit::configs::{config, TINY_PLE};

#[test]
fn build_inspect_verify_dump() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut ck = checkpoint(config(TINY_PLE), 21);
    let batch = rows(&ck.config, 16, 22);
    let probs = reference_probs(&ck, &batch);
    ck.golden = Some(batch.to_golden(&ck.config, probs.as_f32().expect("f32")));
    let dir = tmp.path().join("ckpt");
    ck.write(&dir).expect("write");
    let model = tmp.path().join("model.onnx");

    let (ok, out, err) = run_build(&dir, &model, &[]);
    assert!(ok, "{out}{err}");
    assert!(model.exists());

    let (ok, out, err) = run_cli(&["inspect".as_ref(), model.as_os_str()]);
    assert!(ok, "{err}");
    for want in [
        "input education i64[N]",
        "output probs f32[N,2]",
        "ir_version 8 opset ai.onnx:17",
        "Gather 2",
        "meta uie.tasks = [\"ctr\",\"cvr\"]",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }

    let (ok, out, err) = run_cli(&[
        "verify".as_ref(),
        model.as_os_str(),
        "--checkpoint".as_ref(),
        dir.as_os_str(),
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("tract-optimized") && out.trim_end().ends_with("PASS"),
        "{out}"
    );

    let (ok, out, _) = run_cli(&["dump".as_ref(), dir.as_os_str()]);
    assert!(ok);
    assert!(
        out.contains("node embed.education/Mod Mod(fmod=0)"),
        "{out}"
    );

    // A wrong golden expectation makes verify exit non-zero.
    let mut bad = probs.as_f32().expect("f32").to_vec();
    bad[0] = 1.0 - bad[0];
    ck.golden = Some(batch.to_golden(&ck.config, &bad));
    ck.write(&dir).expect("rewrite");
    let (ok, out, _) = run_cli(&[
        "verify".as_ref(),
        model.as_os_str(),
        "--checkpoint".as_ref(),
        dir.as_os_str(),
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL"), "{out}");
}

#[test]
fn a_bad_checkpoint_is_a_readable_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut ck = checkpoint(config(TINY_PLE), 23);
    let dir = tmp.path().join("ckpt");
    ck.write(&dir).expect("write");
    ck.weights.insert(
        "embed.item_id".into(),
        Tensor::f32(vec![10, 3], vec![0.0; 30]),
    );
    std::fs::write(
        dir.join(files::WEIGHTS),
        to_safetensors(&ck.weights).expect("st"),
    )
    .expect("replace");
    let model = tmp.path().join("model.onnx");
    let (ok, out, err) = run_build(&dir, &model, &[]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("embed.item_id") && err.contains("[10, 3]"),
        "{err}"
    );
    assert!(!model.exists());
}

//! ONNX external data end to end, at a small scale (a UCBE model whose personalised memory is
//! 50,000 users × 32; threshold forced low so every table of at least 4 KiB goes to the data file): both files exist; tract (plain and
//! optimised, loading from the path) and ONNX Runtime (both optimisation levels) give the same
//! `probs` as the same model compiled inline, by the rule of `docs/model.md` §7; the ONNX checker's
//! full check passes on the path (so it resolves the external data); loading the model from bytes
//! fails cleanly; two compiles give byte-identical model and data files.
//!
//! The 10-million-user version is `scripts/bench-compile.sh` (not part of the default run).

mod users_model;

use std::collections::BTreeMap;
use std::path::Path;

use uie_compile::onnx::{self, ExternalDataOptions, WriteOptions};
use uie_compile::pipeline::{compile_to_path, CompileOptions};
use uie_compile::verify::{batch_inputs, run_engine};
use uie_e2e::{onnx_check_many, run_onnxruntime_batch, OrtJob};
use uie_model::parity::within_tolerance;
use uie_model::Tensor;
use uie_runtime::{Engine, EngineOptions};

const USERS: usize = 50_000;
const THRESHOLD: u64 = 4096;

fn assert_same(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    let (a, b) = (got.as_f32().expect("f32"), want.as_f32().expect("f32"));
    let bad = a
        .iter()
        .zip(b)
        .filter(|(x, y)| !within_tolerance(**x, **y))
        .count();
    assert_eq!(bad, 0, "{what}: {bad} elements differ\n{a:?}\n{b:?}");
}

fn tract(path: &Path, optimize: bool, inputs: &[(String, Tensor)]) -> Tensor {
    let engine = Engine::load_path(
        path,
        EngineOptions {
            optimize,
            ..EngineOptions::default()
        },
    )
    .expect("tract loads");
    let mut outs = run_engine(&engine, inputs, "tract").expect("tract runs");
    outs.remove(0).1
}

#[test]
fn external_data_model_matches_inline_in_tract_and_onnxruntime() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ck = users_model::checkpoint(USERS, 7);
    let ckpt = tmp.path().join("ckpt");
    ck.write(&ckpt).expect("checkpoint");
    let batch = users_model::rows(USERS, 40);
    let inputs = batch_inputs(&ck.config, &batch).expect("inputs");
    drop(ck);

    let ext_opts = WriteOptions {
        external_data: Some(ExternalDataOptions {
            threshold: THRESHOLD,
            ..ExternalDataOptions::default()
        }),
        ..WriteOptions::default()
    };
    let mut dirs = BTreeMap::new();
    for name in ["inline", "ext", "ext2"] {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).expect("dir");
        let opts = if name == "inline" {
            WriteOptions::default()
        } else {
            ext_opts.clone()
        };
        let report = compile_to_path(
            &ckpt,
            &dir.join("model.onnx"),
            &CompileOptions::default(),
            &opts,
        )
        .expect("compile");
        assert_eq!(report.data.is_some(), name != "inline", "{name}");
        dirs.insert(name, dir);
    }
    let inline = dirs["inline"].join("model.onnx");
    let ext = dirs["ext"].join("model.onnx");
    let data_name = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| onnx::is_data_file_of("model.onnx", n))
            .collect();
        v.sort();
        v
    };
    let data_files = data_name(&dirs["ext"]);
    assert_eq!(data_files.len(), 1, "{data_files:?}");
    let location = data_files[0].clone();
    let data = dirs["ext"].join(&location);
    assert!(ext.is_file() && data.is_file());
    assert!(data_name(&dirs["inline"]).is_empty());

    // The personalised memory is external, aligned, listed as a memory table; the model file
    // itself is small.
    let s = onnx::summarize_file(&ext).expect("summary");
    let memory = s.memory_tables();
    let user = memory
        .iter()
        .find(|t| t.name == users_model::PERSONAL)
        .expect("personal memory");
    assert_eq!(user.dims, vec![USERS as i64, users_model::AUX_DIM as i64]);
    assert_eq!(user.bytes, USERS * users_model::AUX_DIM * 4);
    assert!(s.subgraphs.iter().any(|(p, n)| p == "uie.ucbe" && *n > 0));
    let x = user.external.as_ref().expect("external");
    assert_eq!(
        (x.location.as_str(), x.offset % onnx::DEFAULT_ALIGNMENT),
        (location.as_str(), 0)
    );
    for t in &s.initializers {
        assert_eq!(
            t.external.is_some(),
            t.bytes as u64 >= THRESHOLD,
            "{}",
            t.name
        );
    }
    let model_len = std::fs::metadata(&ext).expect("model").len();
    assert!(model_len < 64 * 1024, "model file is {model_len} bytes");

    // Two compiles: byte-identical files.
    assert_eq!(data_name(&dirs["ext2"]), data_files);
    for f in ["model.onnx", location.as_str()] {
        let a = std::fs::read(dirs["ext"].join(f)).expect("a");
        let b = std::fs::read(dirs["ext2"].join(f)).expect("b");
        assert!(a == b, "{f} differs between two compiles");
    }

    // tract from the path, plain and optimised, against the inline model.
    for optimize in [false, true] {
        let want = tract(&inline, optimize, &inputs);
        let got = tract(&ext, optimize, &inputs);
        assert_same(&format!("tract optimize={optimize}"), &got, &want);
    }
    // tract cannot resolve external data without a path: a clean error, not a panic.
    let bytes = std::fs::read(&ext).expect("model");
    assert!(Engine::load_bytes(&bytes, EngineOptions::default()).is_err());

    // ONNX Runtime, both optimisation levels, against the inline model and against tract.
    let jobs: Vec<OrtJob> = [("inline", &inline), ("ext", &ext)]
        .into_iter()
        .map(|(name, model)| OrtJob {
            name: name.to_string(),
            model: model.clone(),
            inputs: inputs.clone(),
        })
        .collect();
    let results = run_onnxruntime_batch(&jobs).expect("onnxruntime");
    let probs = |job: &str, level: &str| -> Tensor {
        let r = results[job].as_ref().expect("onnxruntime ran");
        r[level]
            .iter()
            .find(|(n, _)| n == "probs")
            .map(|(_, t)| t.clone())
            .expect("probs")
    };
    let tract_ref = tract(&inline, false, &inputs);
    for level in ["disabled", "all"] {
        let got = probs("ext", level);
        assert_same(&format!("ort {level}"), &got, &probs("inline", level));
        assert_same(&format!("ort {level} vs tract"), &got, &tract_ref);
    }

    // The ONNX checker's full check from the path (it reads the external data).
    let lines = onnx_check_many(&[ext.clone(), inline.clone()]).expect("checker");
    assert!(lines[0].starts_with("ok "), "{}", lines[0]);
}

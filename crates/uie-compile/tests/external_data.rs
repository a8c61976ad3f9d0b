//! ONNX external data: layout (threshold, aligned offsets, one data file), tract loading from the
//! path (plain and optimised) with the same outputs as the inline model, determinism, the
//! content-hash naming of the data file and the removal of the data files a replaced output no
//! longer references, the automatic switch past the inline limit, atomic failure (no partial file under the output
//! names), `inspect` (memory tables, sub-graphs, `--summary`, without loading the data) and the
//! CLI flags (`--external-data`, `--external-threshold`, `--debug-outputs`).

mod common;

use std::path::{Path, PathBuf};

use common::{run_build, run_cli, tract_probs};
use sha2::{Digest, Sha256};
use uie_compile::ir::{Dim, Dtype, Graph, Op, TensorType};
use uie_compile::onnx::{self, ExternalDataOptions, WriteOptions};
use uie_compile::verify::{batch_inputs, run_engine};
use uie_compile::{compile, pipeline};
use uie_model::{Checkpoint, Tensor};
use uie_runtime::engine::{Engine, EngineOptions};
use uie_testkit::assertions::{assert_close, listing};
use uie_testkit::checkpoints::{checkpoint, rows, uie_checkpoint};
use uie_testkit::configs::{config, TINY_PLE};

fn external(threshold: u64) -> WriteOptions {
    WriteOptions {
        external_data: Some(ExternalDataOptions {
            threshold,
            ..ExternalDataOptions::default()
        }),
        ..WriteOptions::default()
    }
}

fn write(ck: &Checkpoint, path: &Path, opts: &WriteOptions) -> onnx::WriteReport {
    let graph = pipeline::build_graph(ck).expect("graph");
    onnx::write_model(&graph, path, opts).expect("write")
}

fn tract_probs_path(path: &Path, optimize: bool, ck: &Checkpoint, n: usize) -> Tensor {
    let batch = rows(&ck.config, n, 5);
    let inputs = batch_inputs(&ck.config, &batch).expect("inputs");
    let engine = Engine::load_path(
        path,
        EngineOptions {
            optimize,
            ..EngineOptions::default()
        },
    )
    .expect("tract loads");
    let mut outs = run_engine(&engine, &inputs, "tract").expect("runs");
    outs.remove(0).1
}

/// The one data file of the model file `model` in `dir` (`<model>.<16 hex>.data`), by name.
fn data_name(dir: &Path, model: &str) -> String {
    let names: Vec<String> = listing(dir)
        .into_iter()
        .filter(|n| onnx::is_data_file_of(model, n))
        .collect();
    assert_eq!(names.len(), 1, "data files of {model}: {names:?}");
    names[0].clone()
}

#[test]
fn every_initializer_external_aligned_and_tract_matches_inline() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ck = checkpoint(config(TINY_PLE), 31);
    let model = tmp.path().join("model.onnx");
    let report = write(&ck, &model, &external(0));
    let data = report.data.as_ref().expect("a data file");
    // Named by the model's name and the first 8 bytes of the SHA-256 of its content.
    let bytes = std::fs::read(&data.path).expect("data");
    let hash: String = Sha256::digest(&bytes)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let location = format!("model.onnx.{hash}.data");
    assert_eq!(data.path, tmp.path().join(&location));
    assert_eq!(bytes.len() as u64, data.bytes);
    assert_eq!(
        listing(tmp.path()),
        vec!["model.onnx".to_string(), location.clone()]
    );

    let s = onnx::summarize_file(&model).expect("summary");
    assert_eq!(data.tensors, s.initializers.len());
    let mut end = 0;
    for t in &s.initializers {
        let x = t.external.as_ref().expect("external");
        assert_eq!(x.location, location);
        assert_eq!(x.offset % onnx::DEFAULT_ALIGNMENT, 0, "{}", t.name);
        assert!(x.offset >= end, "{}: offsets overlap", t.name);
        assert_eq!(x.length, Some(t.bytes as u64));
        end = x.offset + t.bytes as u64;
    }
    assert_eq!(end, data.bytes);
    assert_eq!(s.external_files.len(), 1);
    assert_eq!(s.external_files[0].size_on_disk, Some(data.bytes));

    let inline = compile(&ck).expect("inline");
    let batch = rows(&ck.config, 9, 5);
    for optimize in [false, true] {
        let expected = tract_probs(&inline, optimize, &ck.config, &batch);
        let got = tract_probs_path(&model, optimize, &ck, 9);
        assert_close(&format!("optimize={optimize}"), &got, &expected);
    }
}

#[test]
fn only_tables_at_or_above_the_threshold_go_external() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ck = checkpoint(config(TINY_PLE), 32);
    let model = tmp.path().join("m.onnx");
    // embed.item_id is 11×3 f32 = 132 bytes, embed.education 7×3 = 84 bytes.
    write(&ck, &model, &external(100));
    let s = onnx::summarize_file(&model).expect("summary");
    for t in &s.initializers {
        assert_eq!(t.external.is_some(), t.bytes >= 100, "{}", t.name);
    }
    assert!(s
        .initializers
        .iter()
        .any(|t| t.name == "embed.item_id" && t.external.is_some()));
    assert!(s
        .initializers
        .iter()
        .any(|t| t.name == "embed.education" && t.external.is_none()));
    // Nothing reaches the threshold: one self-contained file, no data file.
    let solo = tmp.path().join("solo.onnx");
    let report = write(&ck, &solo, &external(1 << 30));
    assert!(report.data.is_none());
    assert!(!listing(tmp.path())
        .iter()
        .any(|n| n.starts_with("solo.onnx.")));
}

#[test]
fn two_compiles_are_byte_identical() {
    let ck = checkpoint(config(TINY_PLE), 33);
    let (a, b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    for dir in [a.path(), b.path()] {
        write(&ck, &dir.join("model.onnx"), &external(64));
    }
    let data = data_name(a.path(), "model.onnx");
    assert_eq!(
        listing(a.path()),
        vec!["model.onnx".to_string(), data.clone()]
    );
    assert_eq!(listing(a.path()), listing(b.path()));
    for f in ["model.onnx", data.as_str()] {
        let x = std::fs::read(a.path().join(f)).expect("a");
        let y = std::fs::read(b.path().join(f)).expect("b");
        assert!(x == y, "{f} differs between two compiles");
    }
    // Compiling again over the same output keeps the same two files.
    write(&ck, &a.path().join("model.onnx"), &external(64));
    assert_eq!(listing(a.path()), listing(b.path()));
}

#[test]
fn replacing_an_output_removes_the_data_files_the_new_model_does_not_reference() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("model.onnx");
    let (ck_a, ck_b) = (
        checkpoint(config(TINY_PLE), 41),
        checkpoint(config(TINY_PLE), 42),
    );
    write(&ck_a, &model, &external(64));
    let data_a = data_name(tmp.path(), "model.onnx");
    // Leftovers of earlier runs: the pre-hash data file name, a temporary of a killed writer
    // (pid 4000000000 does not exist), and an unrelated file that merely looks similar.
    for f in [
        "model.onnx.data",
        ".model.onnx.tmp-4000000000",
        ".model.onnx.data.tmp-4000000000",
        "model.onnx.notahash.data",
        "other.onnx.0123456789abcdef.data",
    ] {
        std::fs::write(tmp.path().join(f), b"x").expect("leftover");
    }
    write(&ck_b, &model, &external(64));
    let data_b = data_name(tmp.path(), "model.onnx");
    assert_ne!(data_a, data_b, "different weights, different data file");
    let mut want = vec![
        "model.onnx".to_string(),
        "model.onnx.notahash.data".to_string(),
        data_b,
        "other.onnx.0123456789abcdef.data".to_string(),
    ];
    want.sort();
    assert_eq!(listing(tmp.path()), want);
    let got = tract_probs_path(&model, true, &ck_b, 4);
    let expected = tract_probs(
        &compile(&ck_b).expect("inline"),
        true,
        &ck_b.config,
        &rows(&ck_b.config, 4, 5),
    );
    assert_close("replaced", &got, &expected);
    // An inline model over it leaves no data file of its name.
    write(&ck_a, &model, &WriteOptions::default());
    assert!(!listing(tmp.path())
        .iter()
        .any(|n| onnx::is_data_file_of("model.onnx", n)));
}

#[test]
fn past_the_inline_limit_external_data_is_automatic() {
    let tmp = tempfile::tempdir().expect("tmp");
    // memory.personal is 1024 × 512 f32 = 2 MiB, past the default 1 MiB threshold.
    let graph = memory_graph(1024, 512);
    let model = tmp.path().join("model.onnx");
    let opts = WriteOptions {
        inline_limit: 1 << 20,
        ..WriteOptions::default()
    };
    let report = onnx::write_model(&graph, &model, &opts).expect("write");
    assert!(report.automatic);
    assert!(report.inline_estimate > 2 << 20);
    let data = report.data.expect("a data file");
    assert_eq!((data.tensors, data.bytes), (1, 2 << 20));
    let s = onnx::summarize_file(&model).expect("summary");
    assert!(s.memory_tables()[0].external.is_some());
    // Under the limit nothing changes.
    let solo = tmp.path().join("solo.onnx");
    let report = onnx::write_model(&graph, &solo, &WriteOptions::default()).expect("write");
    assert!(!report.automatic && report.data.is_none());
    assert!(!listing(tmp.path())
        .iter()
        .any(|n| n.starts_with("solo.onnx.")));
}

#[test]
fn a_failed_write_leaves_no_partial_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ck = checkpoint(config(TINY_PLE), 35);
    let graph = pipeline::build_graph(&ck).expect("graph");

    // The output's parent is a regular file.
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("file");
    let err = onnx::write_model(&graph, &file.join("model.onnx"), &external(0));
    assert!(err.is_err());
    assert_eq!(listing(tmp.path()), vec!["not-a-dir"]);

    // The data file is written, then renaming the model fails (a directory holds its name):
    // neither the data file nor a temporary remains.
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("model.onnx").join("occupied")).expect("dir");
    let err = onnx::write_model(&graph, &out.join("model.onnx"), &external(0))
        .expect_err("renaming onto a non-empty directory fails");
    assert!(err.to_string().contains("model.onnx"), "{err}");
    assert_eq!(listing(&out), vec!["model.onnx"]);
    assert!(out.join("model.onnx").is_dir());

    // A bad alignment is an error before anything is written.
    let opts = WriteOptions {
        external_data: Some(ExternalDataOptions {
            threshold: 0,
            alignment: 3000,
        }),
        ..WriteOptions::default()
    };
    let clean = tmp.path().join("clean");
    std::fs::create_dir(&clean).expect("dir");
    let err = onnx::write_model(&graph, &clean.join("m.onnx"), &opts).expect_err("alignment");
    assert!(err.to_string().contains("power of two"), "{err}");
    assert!(listing(&clean).is_empty());
}

/// A graph with a `rows × width` memory table (entry `i` is `i / 2`) and nodes of two UIE
/// sub-graphs, built directly in the IR.
fn memory_graph(rows: usize, width: usize) -> Graph {
    let mut g = Graph::new("memory_demo");
    let n = || Dim::Sym("N".into());
    let ids = g
        .add_input(
            "user_id",
            TensorType {
                dtype: Dtype::I64,
                shape: vec![n()],
            },
        )
        .expect("input");
    let h = g
        .add_initializer(
            "embed.user_id.buckets",
            Tensor::i64(vec![], vec![rows as i64]),
        )
        .expect("h");
    let p = g
        .add_initializer(
            "memory.personal",
            Tensor::f32(
                vec![rows, width],
                (0..rows * width).map(|i| i as f32 * 0.5).collect(),
            ),
        )
        .expect("P");
    let row = g
        .add_op("embed.user_id", Op::Mod, &[ids, h], "embed.user_id.row")
        .expect("mod");
    let v = g
        .add_op(
            "uie.ucbe.personal",
            Op::Gather { axis: 0 },
            &[p, row],
            "uie.ucbe.p",
        )
        .expect("gather");
    let out = g
        .add_op("uie.ucbe.gen", Op::Relu, &[v], "e_ucbe")
        .expect("relu");
    g.add_output(out).expect("output");
    g.validate().expect("valid");
    g.infer_shapes().expect("shapes");
    g
}

#[test]
fn inspect_lists_memory_tables_and_subgraphs_without_the_data() {
    let tmp = tempfile::tempdir().expect("tmp");
    let graph = memory_graph(50, 4);
    let model = tmp.path().join("mem.onnx");
    let report = onnx::write_model(&graph, &model, &external(512)).expect("write");
    assert_eq!(report.data.as_ref().map(|d| d.tensors), Some(1));

    // tract reads the external table from the path.
    let engine = Engine::load_path(
        &model,
        EngineOptions {
            optimize: true,
            ..EngineOptions::default()
        },
    )
    .expect("load");
    let ids = Tensor::i64(vec![3], vec![1, -1, 1_000_000_007]);
    let outs = run_engine(&engine, &[("user_id".into(), ids)], "tract").expect("run");
    let got = outs[0].1.as_f32().expect("f32").to_vec();
    let row = |r: usize| (0..4).map(move |j| (r * 4 + j) as f32 * 0.5);
    let want: Vec<f32> = row(1)
        .chain(row(49))
        .chain(row((1_000_000_007 % 50) as usize))
        .collect();
    assert_eq!(got, want);

    // The data file is gone: inspect still works and says so.
    let data = data_name(tmp.path(), "mem.onnx");
    std::fs::remove_file(tmp.path().join(&data)).expect("rm");
    let s = onnx::summarize_file(&model).expect("summary");
    let mem = s.memory_tables();
    assert_eq!(mem.len(), 1);
    assert_eq!(mem[0].name, "memory.personal");
    assert_eq!(mem[0].dims, vec![50, 4]);
    assert_eq!(mem[0].bytes, 800);
    assert_eq!(
        mem[0].external.as_ref().map(|x| x.location.as_str()),
        Some(data.as_str())
    );
    assert_eq!(
        s.subgraphs,
        vec![("uie.ucbe".to_string(), 2), ("embed".to_string(), 1)]
    );
    let full = s.render(true);
    for want in [
        "subgraphs\n  uie.ucbe 2 nodes\n  embed 1 nodes\n".to_string(),
        format!("memory tables 1\n  memory.personal f32[50,4] 800 bytes external {data}@0\n"),
        "  embed.user_id.buckets i64[] 8 bytes inline\n".to_string(),
        format!("external data {data}: 1 tensors, 800 bytes needed, not checked or MISSING"),
    ] {
        assert!(full.contains(&want), "missing {want:?} in\n{full}");
    }
    let short = s.render(false);
    assert!(!short.contains("embed.user_id.buckets i64"), "{short}");
    assert!(short.contains("memory.personal f32[50,4]"), "{short}");
}

#[test]
fn cli_build_external_and_inspect_summary() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ck = checkpoint(config(TINY_PLE), 36);
    let dir = tmp.path().join("ckpt");
    ck.write(&dir).expect("write");
    let model: PathBuf = tmp.path().join("model.onnx");
    let (ok, out, err) = run_build(
        &dir,
        &model,
        &["--external-data", "--external-threshold", "64"],
    );
    assert!(ok, "{out}{err}");
    let data = data_name(tmp.path(), "model.onnx");
    assert!(out.contains(&format!("{data} (")), "{out}");

    let (ok, out, err) = run_cli(&["inspect".as_ref(), model.as_os_str()]);
    assert!(ok, "{err}");
    for want in [
        "output probs f32[N,2]",
        "Gather 2",
        "subgraphs\n",
        "  embed 4 nodes",
        "  ple ",
        "  tower ",
        "memory tables 0",
        &format!("embed.item_id f32[11,3] 132 bytes external {data}@"),
        &format!("external data {data}: "),
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let (ok, short, err) = run_cli(&["inspect".as_ref(), model.as_os_str(), "--summary".as_ref()]);
    assert!(ok, "{err}");
    assert!(!short.contains("embed.item_id f32"), "{short}");
    assert!(short.contains("initializers ") && short.contains("memory tables 0"));

    // The threshold without --external-data is refused.
    let (ok, _, err) = run_cli(&[
        "build".as_ref(),
        dir.as_os_str(),
        "--external-threshold".as_ref(),
        "64".as_ref(),
    ]);
    assert!(!ok);
    assert!(err.contains("--external-data"), "{err}");
}

#[test]
fn cli_debug_outputs_and_uie_subgraphs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ck = uie_checkpoint(37);
    let dir = tmp.path().join("ckpt");
    ck.write(&dir).expect("write");
    let plain = tmp.path().join("plain.onnx");
    let debug = tmp.path().join("debug.onnx");
    for (model, flag) in [(&plain, None), (&debug, Some("--debug-outputs"))] {
        let mut extra = vec!["--external-data", "--external-threshold", "0"];
        extra.extend(flag);
        let (ok, out, err) = run_build(&dir, model, &extra);
        assert!(ok, "{out}{err}");
    }
    let s = onnx::summarize_file(&plain).expect("summary");
    assert_eq!(s.outputs.len(), 1);
    let prefixes: Vec<&str> = s.subgraphs.iter().map(|(p, _)| p.as_str()).collect();
    for p in [
        "seq", "aux.user", "uie.upe", "uie.ucbe", "uie.ucse", "ple", "embed",
    ] {
        assert!(prefixes.contains(&p), "no {p} sub-graph in {prefixes:?}");
    }
    let names: Vec<String> = s.memory_tables().iter().map(|t| t.name.clone()).collect();
    for want in ["memory.personal", "memory.ucse", "memory.upe"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(s.memory_tables().iter().all(|t| t.external.is_some()));

    let d = onnx::summarize_file(&debug).expect("summary");
    let outs: Vec<&str> = d.outputs.iter().map(|v| v.name.as_str()).collect();
    assert!(outs.contains(&"probs"));
    assert!(outs.contains(&"debug.e_ucbe"), "{outs:?}");
    // The debug model runs in tract from its path.
    Engine::load_path(
        &debug,
        EngineOptions {
            optimize: true,
            ..EngineOptions::default()
        },
    )
    .expect("tract loads");
}

/// The compiler's low-memory path (checkpoint read tensor by tensor, tensors moved into the graph
/// and through the passes, inline tensors moved into the proto) writes exactly the bytes of the
/// copying path, inline and with external data, for a full-UIE model.
#[test]
fn the_owned_path_writes_the_same_bytes_as_the_copying_one() {
    let ck = uie_checkpoint(41);
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("ckpt");
    ck.write(&dir).expect("checkpoint");
    let options = pipeline::CompileOptions::default();
    let owned = pipeline::build_graph_owned(ck.clone(), &options).expect("owned graph");
    assert!(owned == pipeline::build_graph(&ck).expect("graph"));

    let inline = compile(&ck).expect("inline bytes");
    let a = tmp.path().join("a.onnx");
    let report = pipeline::compile_to_path(&dir, &a, &options, &WriteOptions::default())
        .expect("owned inline");
    assert!(report.data.is_none());
    assert!(
        std::fs::read(&a).expect("a") == inline,
        "inline bytes differ"
    );
    let b = tmp.path().join("b.onnx");
    pipeline::compile_to_file(&dir, &b).expect("compile_to_file");
    assert!(
        std::fs::read(&b).expect("b") == inline,
        "compile_to_file bytes differ"
    );

    // The data file's name is in the model, so both go to `model.onnx` in their own directory.
    let (c, d) = (tmp.path().join("c"), tmp.path().join("d"));
    std::fs::create_dir(&c).expect("c");
    std::fs::create_dir(&d).expect("d");
    write(&ck, &c.join("model.onnx"), &external(64));
    let report = pipeline::compile_to_path(&dir, &d.join("model.onnx"), &options, &external(64))
        .expect("owned external");
    assert!(report.data.expect("data file").tensors > 1);
    // Same file names (the data file is named by its content) and the same bytes.
    let names = listing(&c);
    assert_eq!(names.len(), 2, "model and data file: {names:?}");
    assert_eq!(names, listing(&d));
    for f in &names {
        let (x, y) = (c.join(f), d.join(f));
        let xb = std::fs::read(&x).expect("x");
        let yb = std::fs::read(&y).expect("y");
        assert!(xb == yb, "{} differs from {}", y.display(), x.display());
    }
}

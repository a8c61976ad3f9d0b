//! Bad input to the real `uie-compile` binary: missing, empty, truncated and wrong-format
//! checkpoints and models; weights of the wrong dtype or shape, NaN, missing or extra tensors;
//! impossible configs; output paths that cannot be written; bad flags. Every case exits non-zero
//! with ONE line on stderr, `error: …`, that names the problem (the file, field or tensor), and
//! never a panic. The rows of `docs/bad-input.md` (uie-compile) point here.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::{cli_output, reference_probs};
use uie_model::checkpoint::{files, from_safetensors, to_safetensors};
use uie_model::Tensor;
use uie_testkit::checkpoints::{checkpoint, rows};
use uie_testkit::cli;
use uie_testkit::configs::{config, TINY_PLE};

fn run(args: &[&OsStr]) -> (Option<i32>, String, String) {
    let out = cli_output(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the binary, expects exit code 1 and one `error: ` line holding every fragment.
fn one_line_error(args: &[&OsStr], fragments: &[&str]) -> String {
    cli::one_line_error(&cli_output(args), fragments)
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A good checkpoint of the tiny config, with golden rows for `verify`, in `dir/name`.
fn good_checkpoint(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let mut ck = checkpoint(config(TINY_PLE), 5);
    let batch = rows(&ck.config, 8, 6);
    let probs = reference_probs(&ck, &batch);
    ck.golden = Some(batch.to_golden(&ck.config, probs.as_f32().expect("f32")));
    ck.write(&path).expect("write");
    path
}

fn build_err(ck: &Path, out: &Path, fragments: &[&str]) -> String {
    one_line_error(
        &[os("build"), ck.as_os_str(), os("-o"), out.as_os_str()],
        fragments,
    )
}

/// Replaces the checkpoint's weights file by `f(weights)`.
fn edit_weights(ck: &Path, f: impl FnOnce(&mut uie_model::TensorMap)) {
    let path = ck.join(files::WEIGHTS);
    let mut w = from_safetensors(&std::fs::read(&path).expect("read"), &path).expect("parse");
    f(&mut w);
    std::fs::write(&path, to_safetensors(&w).expect("encode")).expect("write");
}

#[test]
fn missing_and_empty_checkpoint_directories() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("m.onnx");
    let missing = tmp.path().join("no-such-ckpt");
    build_err(&missing, &out, &["no-such-ckpt", "not found"]);
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("dir");
    build_err(&empty, &out, &["empty/config.toml", "No such file"]);
    assert!(!out.exists());
}

#[test]
fn truncated_empty_and_garbage_weights_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ck = good_checkpoint(tmp.path(), "ck");
    let out = tmp.path().join("m.onnx");
    let weights = ck.join(files::WEIGHTS);
    let bytes = std::fs::read(&weights).expect("read");
    for (what, content) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("garbage", b"this is not safetensors at all".to_vec()),
    ] {
        std::fs::write(&weights, &content).expect(what);
        let line = build_err(
            &ck,
            &out,
            &["weights.safetensors", "not a valid safetensors file"],
        );
        assert!(line.starts_with("error: compiling "), "{line}");
    }
    assert!(!out.exists());
}

#[test]
fn weights_of_the_wrong_dtype_shape_or_set() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("m.onnx");

    let ck = good_checkpoint(tmp.path(), "dtype");
    edit_weights(&ck, |w| {
        w.insert(
            "embed.item_id".into(),
            Tensor::i64(vec![11, 3], vec![1; 33]),
        );
    });
    build_err(
        &ck,
        &out,
        &["tensor embed.item_id", "dtype i64, expected f32"],
    );

    let ck = good_checkpoint(tmp.path(), "shape");
    edit_weights(&ck, |w| {
        w.insert(
            "embed.item_id".into(),
            Tensor::f32(vec![12, 3], vec![0.5; 36]),
        );
    });
    build_err(
        &ck,
        &out,
        &[
            "tensor embed.item_id",
            "shape [12, 3] disagrees with the config",
        ],
    );

    let ck = good_checkpoint(tmp.path(), "missing");
    edit_weights(&ck, |w| {
        w.remove("embed.item_id");
    });
    build_err(&ck, &out, &["tensor embed.item_id: missing"]);

    let ck = good_checkpoint(tmp.path(), "extra");
    edit_weights(&ck, |w| {
        w.insert("embed.colour".into(), Tensor::f32(vec![2], vec![0.0; 2]));
    });
    build_err(
        &ck,
        &out,
        &["tensor embed.colour: not part of this config's model"],
    );
    assert!(!out.exists());
}

#[test]
fn nan_and_infinity_in_weights() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("m.onnx");
    for (name, bad) in [("nan", f32::NAN), ("inf", f32::INFINITY)] {
        let ck = good_checkpoint(tmp.path(), name);
        edit_weights(&ck, |w| {
            let mut v = vec![0.25f32; 33];
            v[4] = bad;
            w.insert("embed.item_id".into(), Tensor::f32(vec![11, 3], v));
        });
        build_err(
            &ck,
            &out,
            &["tensor embed.item_id: element 4", "not finite"],
        );
    }
    assert!(!out.exists());
}

#[test]
fn impossible_configs_name_the_field() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("m.onnx");
    for (name, from, to, fragment) in [
        (
            "unknown",
            "embed_dim = 3",
            "embed_dim = 3\ncolour = 1",
            "model.colour",
        ),
        (
            "zero-width",
            "embed_dim = 3",
            "embed_dim = 0",
            "model.embed_dim",
        ),
        (
            "zero-experts",
            "shared_experts = 1\nspecific_experts = 2",
            "shared_experts = 0\nspecific_experts = 0",
            "config field ple",
        ),
    ] {
        let ck = good_checkpoint(tmp.path(), name);
        let path = ck.join(files::CONFIG);
        let text = std::fs::read_to_string(&path).expect("config");
        let edited = text.replacen(from, to, 1);
        assert_ne!(
            text, edited,
            "{name}: the resolved config changed: update this test"
        );
        std::fs::write(&path, edited).expect("write");
        build_err(&ck, &out, &["config.toml", fragment]);
    }
    assert!(!out.exists());
}

#[test]
fn unwritable_output_paths() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ck = good_checkpoint(tmp.path(), "ck");
    // The output path is a directory.
    let dir_out = tmp.path().join("taken.onnx");
    std::fs::create_dir_all(dir_out.join("inside")).expect("dir");
    build_err(&ck, &dir_out, &["taken.onnx"]);
    assert!(dir_out.join("inside").is_dir());
    // Its parent directory does not exist.
    let orphan = tmp.path().join("no-such-dir").join("m.onnx");
    build_err(&ck, &orphan, &["no-such-dir", "No such file"]);
    // Its parent is a file.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").expect("file");
    build_err(&ck, &file.join("m.onnx"), &["a-file", "Not a directory"]);
    // A directory nobody may write, not even root (sysfs).
    build_err(
        &ck,
        Path::new("/sys/uie-bad-input-test.onnx"),
        &["/sys/", "Permission denied"],
    );
    // A path with no file name.
    build_err(&ck, Path::new("/"), &["not a file name"]);
}

#[test]
fn bad_flags() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ck = good_checkpoint(tmp.path(), "ck");
    let out = tmp.path().join("m.onnx");
    let line = one_line_error(
        &[
            os("build"),
            ck.as_os_str(),
            os("-o"),
            out.as_os_str(),
            os("--external-data"),
            os("--external-align"),
            os("3000"),
        ],
        &["power of two", "3000"],
    );
    assert!(line.contains("compiling"), "{line}");
    assert!(!out.exists());
    let line = one_line_error(
        &[
            os("triton"),
            os("--checkpoint"),
            ck.as_os_str(),
            os("--repo"),
            tmp.path().join("repo").as_os_str(),
            os("--name"),
            os("../escape"),
        ],
        &["model name \"../escape\""],
    );
    assert!(line.contains("use letters, digits"), "{line}");
    // Usage errors are clap's: exit code 2, the first line names the flag.
    for args in [
        vec![os("build"), ck.as_os_str(), os("--no-such-flag")],
        vec![
            os("build"),
            ck.as_os_str(),
            os("--external-threshold"),
            os("-5"),
        ],
        vec![os("build")],
    ] {
        let (code, _, err) = run(&args);
        println!("{}", err.lines().next().unwrap_or(""));
        assert_eq!(code, Some(2), "{err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn missing_empty_truncated_and_wrong_format_models() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ck = good_checkpoint(tmp.path(), "ck");
    let good = tmp.path().join("good.onnx");
    let (code, _, err) = run(&[os("build"), ck.as_os_str(), os("-o"), good.as_os_str()]);
    assert_eq!(code, Some(0), "{err}");
    let bytes = std::fs::read(&good).expect("model");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "empty.onnx",
            Vec::new(),
            "not an ONNX model: the file is empty",
        ),
        (
            "truncated.onnx",
            bytes[..bytes.len() / 2].to_vec(),
            "not an ONNX model: Unexpected EOF",
        ),
        (
            "garbage.onnx",
            b"\xff\xfe not a protobuf \x00\x01".to_vec(),
            "not an ONNX model",
        ),
        (
            "weights-as-model.onnx",
            std::fs::read(ck.join(files::WEIGHTS)).expect("weights"),
            "not an ONNX model",
        ),
    ];
    for (name, content, what) in &cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, content).expect("write");
        one_line_error(&[os("inspect"), path.as_os_str()], &[name, what]);
        one_line_error(
            &[
                os("verify"),
                path.as_os_str(),
                os("--checkpoint"),
                ck.as_os_str(),
            ],
            &[name, what],
        );
    }
    let missing = tmp.path().join("missing.onnx");
    one_line_error(
        &[os("inspect"), missing.as_os_str()],
        &["missing.onnx", "No such file"],
    );
    one_line_error(
        &[
            os("verify"),
            missing.as_os_str(),
            os("--checkpoint"),
            ck.as_os_str(),
        ],
        &["missing.onnx", "No such file"],
    );
}

#[test]
fn a_model_whose_external_data_is_missing_or_short() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ck = good_checkpoint(tmp.path(), "ck");
    let model = tmp.path().join("m.onnx");
    let (code, _, err) = run(&[
        os("build"),
        ck.as_os_str(),
        os("-o"),
        model.as_os_str(),
        os("--external-data"),
        os("--external-threshold"),
        os("64"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let data = std::fs::read_dir(tmp.path())
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| uie_compile::onnx::is_data_file_of("m.onnx", n))
        })
        .expect("a data file");
    let bytes = std::fs::read(&data).expect("data");
    let verify = [
        os("verify"),
        model.as_os_str(),
        os("--checkpoint"),
        ck.as_os_str(),
    ];
    // tract's error is in verify's report, on stdout; the exit code is 1.
    for (what, content) in [
        ("short", Some(&bytes[..bytes.len() / 2])),
        ("missing", None),
    ] {
        match content {
            Some(c) => std::fs::write(&data, c).expect("truncate"),
            None => std::fs::remove_file(&data).expect("rm"),
        }
        let (code, out, err) = run(&verify);
        println!("{what}:\n{out}{err}");
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(
            !err.contains("panicked") && !out.contains("panicked"),
            "{out}{err}"
        );
        assert!(out.contains("reference        PASS"), "{out}");
        for engine in ["tract-plain", "tract-optimized"] {
            assert!(out.contains(&format!("{engine:<16} FAIL error: ")), "{out}");
        }
        assert!(out.trim_end().ends_with("FAIL"), "{out}");
    }
}

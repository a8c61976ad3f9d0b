//! Writes the seed corpus of the fuzz targets (`fuzz/seeds/<target>/`, see `docs/fuzzing.md`):
//! real files the project produces, from the seeded checkpoints of `uie-testkit`: the tiny UIE
//! config (`fixtures/configs/tiny-uie.toml`, with clustered centre tables, a duplicated centre and
//! a zero personal-memory row) and the tiny PLE one (`fixtures/configs/tiny-ple.toml`).
//!
//! - `model_load`: the compiled `.onnx` of both checkpoints, plus truncations of the UIE one;
//! - `request_decode`: KServe v2 infer requests for the tiny UIE model, as JSON and with binary
//!   tensor data (a first line `#<Inference-Header-Content-Length>` carries the header value);
//! - `checkpoint_read`: the checkpoint files (`config.toml`, `weights.safetensors`, `meta.json`,
//!   and `golden.safetensors` for one seed) joined by the separator [`SEPARATOR`].
//!
//! The same seeds always give the same bytes. Usage:
//! `cargo run --release -p uie-compile --example fuzz_seeds [OUT_DIR]` (default `fuzz/seeds`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use uie_model::checkpoint::files;
use uie_model::{Checkpoint, Tensor, TensorMap};
use uie_testkit::checkpoints::{checkpoint, uie_checkpoint};
use uie_testkit::configs::{config, TINY_PLE};
use uie_testkit::fuzz_input::SEPARATOR;
use uie_testkit::repo_root;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    println!("{} ({} bytes)", path.display(), bytes.len());
    Ok(())
}

fn checkpoint_files(checkpoint: &Checkpoint, tmp: &Path) -> Result<Vec<u8>> {
    let dir = tmp.join(&checkpoint.config.model.name);
    checkpoint.write(&dir)?;
    let mut out = Vec::new();
    let mut names = vec![files::CONFIG, files::WEIGHTS, files::META];
    if dir.join(files::GOLDEN).exists() {
        names.push(files::GOLDEN);
    }
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(SEPARATOR);
        }
        out.extend_from_slice(&std::fs::read(dir.join(name))?);
    }
    Ok(out)
}

/// A binary-tensor request: `#<header length>\n`, the JSON header, then the tensors' bytes.
fn binary_request(inputs: &[(&str, &str, &str, Vec<u8>)]) -> Vec<u8> {
    let tensors: Vec<String> = inputs
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            format!(
                r#"{{"name":"{name}","datatype":"{dtype}","shape":{shape},"parameters":{{"binary_data_size":{}}}}}"#,
                bytes.len()
            )
        })
        .collect();
    let head = format!(
        r#"{{"id":"seed","inputs":[{}],"outputs":[{{"name":"probs","parameters":{{"binary_data":false}}}}]}}"#,
        tensors.join(",")
    );
    let mut out = format!("#{}\n", head.len()).into_bytes();
    out.extend_from_slice(head.as_bytes());
    for (_, _, _, bytes) in inputs {
        out.extend_from_slice(bytes);
    }
    out
}

fn i64s(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn main() -> Result<()> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("fuzz/seeds"));
    let tmp = tempfile::tempdir()?;
    let uie = uie_checkpoint(7);
    let mut ple = checkpoint(config(TINY_PLE), 11);
    let mut golden = TensorMap::new();
    golden.insert("input.item_id".into(), Tensor::i64(vec![2], vec![3, -4]));
    golden.insert("input.education".into(), Tensor::i64(vec![2], vec![1, 9]));
    golden.insert(
        "input.dense".into(),
        Tensor::f32(vec![2, 2], vec![0.5, 1.0, -1.0, 2.0]),
    );
    golden.insert(
        "output.probs".into(),
        Tensor::f32(vec![2, 2], vec![0.1, 0.2, 0.3, 0.4]),
    );
    ple.golden = Some(golden);

    // model_load: the compiled models and truncations.
    let dir = out.join("model_load");
    let uie_onnx = uie_compile::compile(&uie)?;
    let ple_onnx = uie_compile::compile(&ple)?;
    write(&dir, "tiny_uie.onnx", &uie_onnx)?;
    write(&dir, "tiny_ple.onnx", &ple_onnx)?;
    for (name, len) in [
        ("64", 64),
        ("half", uie_onnx.len() / 2),
        ("minus1", uie_onnx.len() - 1),
    ] {
        write(
            &dir,
            &format!("tiny_uie.trunc-{name}.onnx"),
            &uie_onnx[..len],
        )?;
    }

    // request_decode: requests for the tiny UIE model (user_id, movie_id, genre, dense [N, 1],
    // hist_items [N, 5], hist_len [N]).
    let dir = out.join("request_decode");
    let json_request = r#"{"id":"seed","inputs":[
{"name":"user_id","datatype":"INT64","shape":[2],"data":[3,12]},
{"name":"movie_id","datatype":"INT64","shape":[2],"data":[5,-7]},
{"name":"genre","datatype":"INT64","shape":[2],"data":[1,2]},
{"name":"dense","datatype":"FP32","shape":[2,1],"data":[[0.5],[41.0]]},
{"name":"hist_items","datatype":"INT64","shape":[2,5],"data":[[1,2,3,0,0],[4,5,6,7,8]]},
{"name":"hist_len","datatype":"INT64","shape":[2],"data":[3,5]}],
"outputs":[{"name":"probs"}]}"#;
    write(&dir, "json.req", json_request.as_bytes())?;
    let binary = binary_request(&[
        ("user_id", "INT64", "[1]", i64s(&[3])),
        ("movie_id", "INT64", "[1]", i64s(&[5])),
        ("genre", "INT64", "[1]", i64s(&[1])),
        ("dense", "FP32", "[1,1]", f32s(&[0.5])),
        ("hist_items", "INT64", "[1,5]", i64s(&[1, 2, 0, 0, 0])),
        ("hist_len", "INT64", "[1]", i64s(&[2])),
    ]);
    write(&dir, "binary.req", &binary)?;
    let empty_batch = r#"{"inputs":[
{"name":"user_id","datatype":"INT64","shape":[0],"data":[]},
{"name":"movie_id","datatype":"INT64","shape":[0],"data":[]},
{"name":"genre","datatype":"INT64","shape":[0],"data":[]},
{"name":"dense","datatype":"FP32","shape":[0,1],"data":[]},
{"name":"hist_items","datatype":"INT64","shape":[0,5],"data":[]},
{"name":"hist_len","datatype":"INT64","shape":[0],"data":[]}]}"#;
    write(&dir, "empty_batch.req", empty_batch.as_bytes())?;

    // checkpoint_read: the files of both checkpoints (the PLE one with golden rows).
    let dir = out.join("checkpoint_read");
    write(&dir, "tiny_uie.ckpt", &checkpoint_files(&uie, tmp.path())?)?;
    write(&dir, "tiny_ple.ckpt", &checkpoint_files(&ple, tmp.path())?)?;
    Ok(())
}

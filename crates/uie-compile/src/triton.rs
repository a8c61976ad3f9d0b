//! A Triton model repository for the onnxruntime backend: `<repo>/<name>/config.pbtxt` and
//! `<repo>/<name>/1/model.onnx` (plus `model.onnx.<hash>.data` beside it with external data).
//!
//! `config.pbtxt` is protobuf text format of Triton's `ModelConfig`, written by hand (it is small
//! and flat): `platform: "onnxruntime_onnx"`, `max_batch_size`, one `input` / `output` per graph
//! input / output with `data_type` `TYPE_INT64` / `TYPE_FP32` and `dims` WITHOUT the batch dim
//! (Triton's batching rule: with `max_batch_size > 0` the first dim is implicit), `-1` for a
//! dynamic dim (the history width `L`), and `dynamic_batching { }`. The text is derived from the
//! written ONNX file's own inputs and outputs ([`onnx::summarize_file`]), so the two cannot
//! disagree; it is deterministic and written atomically.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::CompileError;
use crate::onnx::{self, ModelSummary, ValueSummary, WriteOptions, WriteReport};
use crate::pipeline::{compile_to_path, CompileOptions};

/// Triton's default maximum batch used by `uie-compile triton`.
pub const DEFAULT_MAX_BATCH_SIZE: u32 = 256;

/// What [`write_repository`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TritonReport {
    /// The model's directory, `<repo>/<name>`.
    pub model_dir: PathBuf,
    /// `<repo>/<name>/config.pbtxt`.
    pub config_path: PathBuf,
    /// The model file (and its data file) under `<repo>/<name>/1/`.
    pub model: WriteReport,
}

fn triton_type(v: &ValueSummary) -> Result<&'static str, CompileError> {
    match v.dtype.as_str() {
        "f32" => Ok("TYPE_FP32"),
        "i64" => Ok("TYPE_INT64"),
        other => Err(CompileError::Unsupported(format!(
            "{}: element type {other} has no Triton mapping here",
            v.name
        ))),
    }
}

/// Dims without the batch dim: numbers stay, symbolic dims become `-1`. The first dim must be
/// the symbolic batch dim.
fn triton_dims(v: &ValueSummary) -> Result<Vec<i64>, CompileError> {
    let (first, rest) = v.dims.split_first().ok_or_else(|| {
        CompileError::Unsupported(format!("{}: a scalar cannot be batched by Triton", v.name))
    })?;
    if first.parse::<i64>().is_ok() {
        return Err(CompileError::Unsupported(format!(
            "{}: the first dim is fixed ({first}), Triton batching needs it dynamic",
            v.name
        )));
    }
    if rest.is_empty() {
        // Triton needs at least one dim: a [N] tensor is dims [1] with reshape to [].
        return Ok(Vec::new());
    }
    Ok(rest
        .iter()
        .map(|d| d.parse::<i64>().unwrap_or(-1))
        .collect())
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn tensor_entries(
    out: &mut String,
    kind: &str,
    values: &[ValueSummary],
) -> Result<(), CompileError> {
    let n = values.len();
    let _ = writeln!(out, "{kind} [");
    for (i, v) in values.iter().enumerate() {
        let dims = triton_dims(v)?;
        let _ = writeln!(out, "  {{");
        let _ = writeln!(out, "    name: {}", quote(&v.name));
        let _ = writeln!(out, "    data_type: {}", triton_type(v)?);
        if dims.is_empty() {
            // A per-row scalar: Triton's dims are [1], reshaped to [] for the model.
            let _ = writeln!(out, "    dims: [ 1 ]");
            let _ = writeln!(out, "    reshape: {{ shape: [ ] }}");
        } else {
            let d: Vec<String> = dims.iter().map(i64::to_string).collect();
            let _ = writeln!(out, "    dims: [ {} ]", d.join(", "));
        }
        let _ = writeln!(out, "  }}{}", if i + 1 < n { "," } else { "" });
    }
    let _ = writeln!(out, "]");
    Ok(())
}

/// The `config.pbtxt` text for a model summary.
pub fn config_pbtxt(
    summary: &ModelSummary,
    name: &str,
    max_batch_size: u32,
) -> Result<String, CompileError> {
    if max_batch_size == 0 {
        return Err(CompileError::Unsupported(
            "max_batch_size must be at least 1 (the model's batch dim is dynamic)".into(),
        ));
    }
    let mut out = String::new();
    let _ = writeln!(out, "# Written by uie-compile triton; do not edit by hand.");
    let _ = writeln!(out, "name: {}", quote(name));
    let _ = writeln!(out, "platform: \"onnxruntime_onnx\"");
    let _ = writeln!(out, "max_batch_size: {max_batch_size}");
    tensor_entries(&mut out, "input", &summary.inputs)?;
    tensor_entries(&mut out, "output", &summary.outputs)?;
    let _ = writeln!(out, "dynamic_batching {{ }}");
    let _ = writeln!(out, "instance_group [ {{ kind: KIND_CPU }} ]");
    Ok(out)
}

/// Checks a Triton model name: non-empty, letters, digits, `_`, `-`, `.` only (it is a directory
/// name and part of URLs).
pub fn check_name(name: &str) -> Result<(), CompileError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CompileError::Unsupported(format!(
            "model name {name:?}: use letters, digits, `_`, `-`, `.`"
        )))
    }
}

/// Compiles a checkpoint into a Triton model repository: `<repo>/<name>/1/model.onnx` (with
/// `write`'s external data options) and `<repo>/<name>/config.pbtxt` derived from the written
/// file. `name` defaults to the config's model name.
pub fn write_repository(
    checkpoint_dir: &Path,
    repo: &Path,
    name: Option<&str>,
    max_batch_size: u32,
    write: &WriteOptions,
) -> Result<TritonReport, CompileError> {
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            uie_model::Config::load(&checkpoint_dir.join(uie_model::checkpoint::files::CONFIG))?
                .model
                .name
        }
    };
    check_name(&name)?;
    let model_dir = repo.join(&name);
    let version_dir = model_dir.join("1");
    std::fs::create_dir_all(&version_dir).map_err(|e| CompileError::io(&version_dir, e))?;
    let model_path = version_dir.join("model.onnx");
    let model = compile_to_path(
        checkpoint_dir,
        &model_path,
        &CompileOptions::default(),
        write,
    )?;
    let summary = onnx::summarize_file(&model_path)?;
    let text = config_pbtxt(&summary, &name, max_batch_size)?;
    let config_path = model_dir.join("config.pbtxt");
    onnx::write_atomically(&config_path, text.as_bytes())?;
    Ok(TritonReport {
        model_dir,
        config_path,
        model,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v(name: &str, dtype: &str, dims: &[&str]) -> ValueSummary {
        ValueSummary {
            name: name.into(),
            dtype: dtype.into(),
            dims: dims.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn dims_drop_the_batch_and_mark_dynamic() {
        assert_eq!(triton_dims(&v("dense", "f32", &["N", "3"])).unwrap(), [3]);
        assert_eq!(
            triton_dims(&v("hist_items", "i64", &["N", "L"])).unwrap(),
            [-1]
        );
        assert!(triton_dims(&v("id", "i64", &["N"])).unwrap().is_empty());
        assert!(triton_dims(&v("x", "f32", &["4", "3"])).is_err());
        assert!(triton_type(&v("x", "bool", &["N"])).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("census_ple-2.v1").is_ok());
        for bad in ["", "..", "a/b", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}

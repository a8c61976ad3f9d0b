//! Shared helpers of the end-to-end tests: where the repository and the test venv are, running a
//! model in ONNX Runtime and the ONNX checker through Python.
//!
//! The Python side comes from the venv that `scripts/setup-venv.sh` creates (the test command runs
//! it); `UIE_PYTHON` may point elsewhere. A missing interpreter fails the test: parity with ONNX
//! Runtime is part of the product, never silently skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::json;
use uie_model::{Tensor, TensorData};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The Python interpreter of the test venv.
pub fn python() -> Result<PathBuf> {
    let p = match std::env::var_os("UIE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join(".venv/bin/python"),
    };
    if !p.exists() {
        bail!(
            "no Python for the ONNX Runtime checks at {}: run scripts/setup-venv.sh (the README's \
             test command does) or set UIE_PYTHON",
            p.display()
        );
    }
    Ok(p)
}

fn script(name: &str) -> PathBuf {
    repo_root().join("tests/python").join(name)
}

fn tensor_json(t: &Tensor) -> serde_json::Value {
    match &t.data {
        TensorData::F32(v) => json!({"dtype": "float32", "shape": t.shape, "data": v}),
        TensorData::I64(v) => json!({"dtype": "int64", "shape": t.shape, "data": v}),
    }
}

/// Runs a model file in ONNX Runtime (one thread) and returns its outputs by name.
pub fn run_onnxruntime(
    model: &Path,
    inputs: &[(String, Tensor)],
) -> Result<BTreeMap<String, Vec<f32>>> {
    let dir = tempfile::tempdir()?;
    let in_path = dir.path().join("inputs.json");
    let out_path = dir.path().join("outputs.json");
    let map: serde_json::Map<String, serde_json::Value> = inputs
        .iter()
        .map(|(n, v)| (n.clone(), tensor_json(v)))
        .collect();
    std::fs::write(&in_path, serde_json::to_vec(&map)?)?;
    let status = Command::new(python()?)
        .arg(script("ort_run.py"))
        .arg(model)
        .arg(&in_path)
        .arg(&out_path)
        .status()
        .context("starting Python for ONNX Runtime")?;
    if !status.success() {
        bail!("ONNX Runtime failed on {} ({status})", model.display());
    }
    let out: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_path)?)?;
    let mut result = BTreeMap::new();
    for (name, t) in out.as_object().context("outputs JSON is not an object")? {
        let data = t["data"]
            .as_array()
            .context("output data is not a list")?
            .iter()
            .map(|x| {
                x.as_f64()
                    .map(|v| v as f32)
                    .context("output value is not a number")
            })
            .collect::<Result<Vec<f32>>>()?;
        result.insert(name.clone(), data);
    }
    Ok(result)
}

/// Runs `onnx.checker.check_model(full_check=True)` and strict shape inference on a model file;
/// returns the checker's report line.
pub fn onnx_check(model: &Path) -> Result<String> {
    let out = Command::new(python()?)
        .arg(script("check_model.py"))
        .arg(model)
        .output()
        .context("starting Python for the ONNX checker")?;
    if !out.status.success() {
        bail!(
            "ONNX checker rejected {}:\n{}",
            model.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

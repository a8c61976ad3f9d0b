//! One timed ONNX Runtime run of a model from its path (so external data is read), through
//! `python/ort_timed.py` and the test venv's Python: the session load time, the run time and the
//! `probs` output. Used by the compile benchmark's `run-models` step.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use uie_model::Tensor;

use crate::latency::inputs_to_json;

/// One timed ONNX Runtime run (optimisations all, one thread).
pub struct OrtTimed {
    /// Seconds to create the session (load the model and its external data).
    pub load_s: f64,
    /// Seconds of the run.
    pub run_s: f64,
    /// `probs`, row-major.
    pub probs: Vec<f32>,
}

/// Loads and runs a model in ONNX Runtime from its path through `python/ort_timed.py`.
pub fn ort_timed(model: &Path, inputs: &[(String, Tensor)]) -> Result<OrtTimed> {
    let dir = tempfile::tempdir()?;
    let feeds_path = dir.path().join("feeds.json");
    let out_path = dir.path().join("out.json");
    std::fs::write(&feeds_path, serde_json::to_vec(&inputs_to_json(inputs))?)?;
    let status = Command::new(uie_e2e::python()?)
        .arg(uie_e2e::repo_root().join("crates/uie-bench/python/ort_timed.py"))
        .arg(model)
        .arg(&feeds_path)
        .arg(&out_path)
        .status()
        .context("starting Python for ort_timed.py")?;
    if !status.success() {
        bail!("ort_timed.py failed ({status})");
    }
    let out: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_path)?)?;
    Ok(OrtTimed {
        load_s: out["load_s"].as_f64().context("load_s")?,
        run_s: out["run_s"].as_f64().context("run_s")?,
        probs: out["probs"]
            .as_array()
            .context("probs")?
            .iter()
            .map(|x| x.as_f64().map(|v| v as f32).context("probs: not a number"))
            .collect::<Result<_>>()?,
    })
}

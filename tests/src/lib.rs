//! Shared helpers of the end-to-end tests: where the repository and the test venv are, running a
//! model in ONNX Runtime and the ONNX checker through Python, one model per call or many models in
//! one Python start ([`run_onnxruntime_batch`], [`onnx_check_many`]).
//!
//! The Python side comes from the venv that `scripts/setup-venv.sh` creates (the test command runs
//! it); `UIE_PYTHON` may point elsewhere. A missing interpreter fails the test: parity with ONNX
//! Runtime is part of the product, never silently skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::json;
use uie_model::schema::{MEMORY_UCBE, MEMORY_UCSE, MEMORY_UPE};
use uie_model::{Checkpoint, Config, Tensor, TensorData};
use uie_train::data::Splits;

pub mod rewrite_parity;

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

/// A tensor as the JSON the Python side reads and writes:
/// `{"dtype": "float32"|"int64", "shape": [...], "data": [...]}`.
pub fn tensor_json(t: &Tensor) -> serde_json::Value {
    match &t.data {
        TensorData::F32(v) => json!({"dtype": "float32", "shape": t.shape, "data": v}),
        TensorData::I64(v) => json!({"dtype": "int64", "shape": t.shape, "data": v}),
    }
}

/// The tensor named `name` among a run's named outputs, if there is one.
pub fn find_output<'a>(outs: &'a [(String, Tensor)], name: &str) -> Option<&'a Tensor> {
    outs.iter().find(|(n, _)| n == name).map(|(_, t)| t)
}

/// Runs the ONNX checker (full_check) and strict shape inference on many model files in one
/// Python start; returns one report line per model, in order. On failure the error lists every
/// model that failed and why.
pub fn onnx_check_many(models: &[PathBuf]) -> Result<Vec<String>> {
    let out = Command::new(python()?)
        .arg(script("check_model.py"))
        .args(models)
        .output()
        .context("starting Python for the ONNX checker")?;
    if !out.status.success() {
        bail!(
            "ONNX checker rejected models:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    if lines.len() != models.len() {
        bail!(
            "ONNX checker reported {} lines for {} models",
            lines.len(),
            models.len()
        );
    }
    Ok(lines)
}

/// One model run of [`run_onnxruntime_batch`].
#[derive(Debug, Clone)]
pub struct OrtJob {
    /// Unique name of the job (the key of its result).
    pub name: String,
    /// The model file.
    pub model: PathBuf,
    /// The tensors fed to the model's inputs, by name.
    pub inputs: Vec<(String, Tensor)>,
}

/// The outputs of one job: for each ONNX Runtime optimisation level (`"disabled"`, `"all"`), the
/// model's outputs by name in name order; or the message of the session's error.
pub type OrtResult = std::result::Result<BTreeMap<String, Vec<(String, Tensor)>>, String>;

fn tensor_from_json(t: &serde_json::Value) -> Result<Tensor> {
    let shape = t["shape"]
        .as_array()
        .context("output shape is not a list")?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize).context("bad dim"))
        .collect::<Result<Vec<usize>>>()?;
    let data = t["data"].as_array().context("output data is not a list")?;
    match t["dtype"].as_str() {
        Some("float32") => Ok(Tensor::f32(
            shape,
            data.iter()
                .map(|x| x.as_f64().map(|v| v as f32).context("not a number"))
                .collect::<Result<Vec<f32>>>()?,
        )),
        Some("int64") => Ok(Tensor::i64(
            shape,
            data.iter()
                .map(|x| x.as_i64().context("not an int64"))
                .collect::<Result<Vec<i64>>>()?,
        )),
        other => bail!("unsupported output dtype {other:?}"),
    }
}

/// Runs many models in ONNX Runtime (one thread, optimisations disabled and all) in one Python
/// start; returns each job's result by job name. int64 outputs come back exactly.
pub fn run_onnxruntime_batch(jobs: &[OrtJob]) -> Result<BTreeMap<String, OrtResult>> {
    let dir = tempfile::tempdir()?;
    let manifest_path = dir.path().join("manifest.json");
    let out_path = dir.path().join("outputs.json");
    let manifest: Vec<serde_json::Value> = jobs
        .iter()
        .map(|j| {
            let inputs: serde_json::Map<String, serde_json::Value> = j
                .inputs
                .iter()
                .map(|(n, t)| (n.clone(), tensor_json(t)))
                .collect();
            json!({"name": j.name, "model": j.model, "inputs": inputs})
        })
        .collect();
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest)?)?;
    let status = Command::new(python()?)
        .arg(script("ort_batch.py"))
        .arg(&manifest_path)
        .arg(&out_path)
        .status()
        .context("starting Python for ONNX Runtime")?;
    if !status.success() {
        bail!("ONNX Runtime batch script failed ({status})");
    }
    let out: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_path)?)?;
    let mut results = BTreeMap::new();
    for job in jobs {
        let r = &out[job.name.as_str()];
        let result = if let Some(e) = r.get("error") {
            Err(e.as_str().unwrap_or("unknown error").to_string())
        } else {
            let mut levels = BTreeMap::new();
            for (level, outs) in r.as_object().context("job result is not an object")? {
                let outs = outs
                    .as_object()
                    .context("outputs are not an object")?
                    .iter()
                    .map(|(n, t)| Ok((n.clone(), tensor_from_json(t)?)))
                    .collect::<Result<Vec<_>>>()
                    .with_context(|| format!("{}: {level}", job.name))?;
                levels.insert(level.clone(), outs);
            }
            if levels.is_empty() {
                bail!("no result for job {}", job.name);
            }
            Ok(levels)
        };
        results.insert(job.name.clone(), result);
    }
    Ok(results)
}

/// Trains a full-UIE checkpoint briefly on the real MovieLens data (`models/movielens-uie.toml`,
/// one warm-up epoch and one full epoch) into `dir/run`; returns its `best/` checkpoint and the
/// data splits.
pub fn train_movielens_uie(dir: &Path) -> Result<(Checkpoint, Splits)> {
    let mut config = Config::load(&repo_root().join("models/movielens-uie.toml"))?;
    config.uie.warmup_epochs = 1;
    let opts = uie_train::TrainOptions {
        data_root: repo_root(),
        epochs: Some(2),
        ..uie_train::TrainOptions::new(dir.join("run"))
    };
    uie_train::train(&config, &opts)?;
    let checkpoint = Checkpoint::read(&dir.join("run/best"))?;
    let splits = uie_train::train::load_data(&checkpoint.config, &opts)?;
    Ok((checkpoint, splits))
}

/// A copy of `checkpoint` with `f(values, width)` applied to each centre table.
pub fn edit_centre_tables(checkpoint: &Checkpoint, f: impl Fn(&mut [f32], usize)) -> Checkpoint {
    let mut out = checkpoint.clone();
    for name in [MEMORY_UPE, MEMORY_UCBE, MEMORY_UCSE] {
        if let Some(t) = out.weights.get_mut(name) {
            let width = t.shape[1];
            if let TensorData::F32(v) = &mut t.data {
                f(v, width);
            }
        }
    }
    out
}

/// Every centre zero: no score is ever positive, so no retrieval keeps anything.
pub fn zero_centres(checkpoint: &Checkpoint) -> Checkpoint {
    edit_centre_tables(checkpoint, |v, _| v.iter_mut().for_each(|x| *x = 0.0))
}

/// Every odd centre duplicates the one before it: exact ties.
pub fn duplicated_centres(checkpoint: &Checkpoint) -> Checkpoint {
    edit_centre_tables(checkpoint, |v, w| {
        for r in (1..v.len() / w).step_by(2) {
            let (a, b) = v.split_at_mut(r * w);
            b[..w].copy_from_slice(&a[(r - 1) * w..r * w]);
        }
    })
}

/// Near-tie rows of a retrieval's scores `[N, centres]`: rows where two of the `k + 1` best
/// scores differ by less than 1e-5 and the larger is > 0, so the kept set or its order may
/// legitimately differ between engines.
pub fn near_tie_rows(scores: &Tensor, k: usize) -> Vec<bool> {
    let c = scores.shape[1];
    scores
        .as_f32()
        .expect("retrieval scores are f32")
        .chunks_exact(c)
        .map(|row| {
            let mut v = row.to_vec();
            v.sort_by(|a, b| b.total_cmp(a));
            let top = (k + 1).min(c);
            (0..top.saturating_sub(1)).any(|i| v[i] > 0.0 && v[i] - v[i + 1] < 1e-5)
        })
        .collect()
}

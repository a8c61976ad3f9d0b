//! `verify`: runs a compiled model on a checkpoint's golden rows (the trainer's forward-pass
//! probabilities) in tract, plain and optimised, and in the IR reference evaluator, and compares
//! each with the parity rule of `docs/model.md` §7: `|a − b| ≤ 1e-5 + 1e-4·|b|`.

use std::fmt;
use std::path::Path;

use uie_model::graph::{keys, PROBS};
use uie_model::{Checkpoint, Config, GraphSchema, ModelError, RawBatch, Tensor};
use uie_runtime::engine::{Engine, EngineOptions};

use crate::error::CompileError;
use crate::{eval, onnx, pipeline};

pub use uie_model::parity::{compare, within_tolerance, Comparison, ABS_TOL, REL_TOL};

/// The graph inputs of a batch, checked against the config: one i64 `[n]` per categorical field in
/// input order, then `dense` `[n, n_dense]` when the model has dense features, then `hist_items`
/// `[n, L]` and `hist_len` `[n]` when it has a behaviour sequence ([`RawBatch::graph_inputs`]).
pub fn batch_inputs(
    config: &Config,
    batch: &RawBatch,
) -> Result<Vec<(String, Tensor)>, CompileError> {
    let schema = GraphSchema::from_config(config);
    batch.validate(&schema).map_err(ModelError::from)?;
    Ok(batch.graph_inputs(&schema))
}

/// Runs an engine on named tensors; returns its outputs in graph order.
pub fn run_engine(
    engine: &Engine,
    inputs: &[(String, Tensor)],
    label: &str,
) -> Result<Vec<(String, Tensor)>, CompileError> {
    engine.run(inputs).map_err(|e| CompileError::Runtime {
        engine: label.to_string(),
        message: e.to_string(),
    })
}

/// Loads a model into tract with or without optimisation.
pub fn load_engine(model: &Path, optimize: bool) -> Result<Engine, CompileError> {
    Engine::load_path(
        model,
        EngineOptions {
            optimize,
            ..EngineOptions::default()
        },
    )
    .map_err(|e| CompileError::Runtime {
        engine: engine_label(optimize).to_string(),
        message: e.to_string(),
    })
}

fn engine_label(optimize: bool) -> &'static str {
    if optimize {
        "tract-optimized"
    } else {
        "tract-plain"
    }
}

/// The result of one engine.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineResult {
    /// `reference`, `tract-plain` or `tract-optimized`.
    pub engine: String,
    /// The comparison with the golden probabilities (None if the engine failed to run).
    pub comparison: Option<Comparison>,
    /// The engine's error, if it failed.
    pub error: Option<String>,
}

impl EngineResult {
    /// Ran and every value is within the tolerance.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.comparison.as_ref().is_some_and(|c| c.mismatches == 0)
    }
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// Golden rows compared.
    pub rows: usize,
    /// Tasks (columns of `probs`).
    pub tasks: usize,
    /// Whether the model's `uie.checkpoint_sha256` matches the checkpoint (None: not present).
    pub checkpoint_hash_matches: Option<bool>,
    /// One result per engine.
    pub engines: Vec<EngineResult>,
}

impl VerifyReport {
    /// Every engine passed and the model comes from this checkpoint.
    pub fn passed(&self) -> bool {
        self.checkpoint_hash_matches == Some(true) && self.engines.iter().all(EngineResult::passed)
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rows {} tasks {} tolerance |a-b| <= {ABS_TOL:e} + {REL_TOL:e}*|b|",
            self.rows, self.tasks
        )?;
        let hash = match self.checkpoint_hash_matches {
            Some(true) => "matches",
            Some(false) => "DIFFERS (model compiled from another checkpoint)",
            None => "absent",
        };
        writeln!(f, "checkpoint hash {hash}")?;
        for e in &self.engines {
            let verdict = if e.passed() { "PASS" } else { "FAIL" };
            match (&e.comparison, &e.error) {
                (_, Some(err)) => writeln!(f, "{:<16} {verdict} error: {err}", e.engine)?,
                (Some(c), None) => writeln!(
                    f,
                    "{:<16} {verdict} max_abs_diff {:.3e} mismatches {}",
                    e.engine, c.max_abs_diff, c.mismatches
                )?,
                (None, None) => writeln!(f, "{:<16} {verdict}", e.engine)?,
            }
        }
        writeln!(f, "{}", if self.passed() { "PASS" } else { "FAIL" })
    }
}

fn probs_of(outputs: Vec<(String, Tensor)>) -> Result<Vec<f32>, String> {
    let (_, t) = outputs
        .into_iter()
        .find(|(n, _)| n == PROBS)
        .ok_or_else(|| format!("no output named {PROBS}"))?;
    t.as_f32()
        .map(<[f32]>::to_vec)
        .ok_or_else(|| format!("{PROBS} is not f32"))
}

fn result(engine: &str, probs: Result<Vec<f32>, String>, expected: &[f32]) -> EngineResult {
    match probs {
        Ok(p) => EngineResult {
            engine: engine.to_string(),
            comparison: Some(compare(&p, expected)),
            error: None,
        },
        Err(e) => EngineResult {
            engine: engine.to_string(),
            comparison: None,
            error: Some(e),
        },
    }
}

/// Verifies `model` against the golden rows of the checkpoint in `checkpoint_dir`.
pub fn verify(model: &Path, checkpoint_dir: &Path) -> Result<VerifyReport, CompileError> {
    let checkpoint = Checkpoint::read(checkpoint_dir)?;
    let config = &checkpoint.config;
    let golden = checkpoint.golden.as_ref().ok_or_else(|| {
        CompileError::Verify(format!(
            "{} has no golden.safetensors to verify against",
            checkpoint_dir.display()
        ))
    })?;
    let (batch, expected) = RawBatch::from_golden(config, golden)?;
    if batch.n == 0 {
        return Err(CompileError::Verify("the golden file has no rows".into()));
    }
    let inputs = batch_inputs(config, &batch)?;
    let bytes = std::fs::read(model).map_err(|e| CompileError::io(model, e))?;
    let summary = onnx::summarize(&bytes)?;
    let checkpoint_hash_matches = summary
        .metadata
        .get(keys::CHECKPOINT_SHA256)
        .map(|h| checkpoint.content_hash().map(|c| c == *h))
        .transpose()?;

    let mut engines = Vec::new();
    let graph = pipeline::build_graph(&checkpoint)?;
    let named: Vec<(&str, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    let reference = eval::evaluate(&graph, &named)
        .map_err(|e| e.to_string())
        .and_then(probs_of);
    engines.push(result("reference", reference, &expected));
    for optimize in [false, true] {
        let label = engine_label(optimize);
        let probs = load_engine(model, optimize)
            .and_then(|e| run_engine(&e, &inputs, label))
            .map_err(|e| e.to_string())
            .and_then(probs_of);
        engines.push(result(label, probs, &expected));
    }
    Ok(VerifyReport {
        rows: batch.n,
        tasks: config.tasks.len(),
        checkpoint_hash_matches,
        engines,
    })
}

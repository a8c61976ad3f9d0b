//! The typed API for services: load a compiled uie model, give it a batch in the graph's shape
//! ([`RawBatch`]), get per-task probabilities.
//!
//! The model describes itself through its ONNX `metadata_props`, written by `uie-compile` and
//! read here as one [`ModelMetadata`] (module [`uie_model::graph`]): the features it takes
//! ([`GraphSchema`]: categorical fields with bucket counts, dense feature names, the behaviour
//! sequence) and its tasks. A request reaches the model as a [`RawBatch`]: one id column per
//! categorical field, the dense matrix `[rows, d]`, and for a model with a sequence the history
//! (item ids `[rows, L]`, oldest first, right-padded, and the real lengths `hist_len` in
//! `[0, L]`). [`Model::predict`] validates it once ([`RawBatch::validate`]: a missing, extra or
//! mistyped feature, a wrong length or a non-finite number is an error that names the feature)
//! and hands it to the engine. [`Batch`] builds a [`RawBatch`] from named feature columns;
//! [`RawBatch::from_tensors`] builds one from named graph-input tensors.
//!
//! ```no_run
//! use uie_runtime::{Batch, Model};
//! # fn main() -> Result<(), uie_runtime::RuntimeError> {
//! let model = Model::load("model.onnx".as_ref())?;
//! let batch = Batch::new()
//!     .ids("education", vec![uie_runtime::feature_id("Bachelors degree(BA AB BS)")])
//!     .numbers("age", vec![41.0])
//!     .build(model.schema())?; // other features elided
//! let preds = model.predict(&batch)?;
//! println!("{:?}", preds.task("income"));
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use uie_model::graph::{probs_spec, GraphSchema, ModelMetadata, TensorSpec, PROBS};
use uie_model::{History, InputError, RawBatch, TensorData};

use crate::engine::{Engine, EngineOptions};
use crate::error::RuntimeError;

/// Values of one feature for every row of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValues {
    /// Raw int64 ids of a categorical feature (any int64: the model hashes them).
    Ids(Vec<i64>),
    /// Raw values of a numeric feature.
    Numbers(Vec<f32>),
}

impl FeatureValues {
    fn kind(&self) -> &'static str {
        match self {
            FeatureValues::Ids(_) => "int64 ids",
            FeatureValues::Numbers(_) => "numbers",
        }
    }
}

/// A request as named feature columns, one value per row each: a builder of a [`RawBatch`]
/// ([`Batch::build`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    features: BTreeMap<String, FeatureValues>,
    duplicates: Vec<String>,
    history: Option<History>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds a categorical feature's ids.
    pub fn ids(mut self, name: &str, ids: Vec<i64>) -> Batch {
        self.insert(name, FeatureValues::Ids(ids));
        self
    }

    /// Adds a numeric feature's values.
    pub fn numbers(mut self, name: &str, values: Vec<f32>) -> Batch {
        self.insert(name, FeatureValues::Numbers(values));
        self
    }

    /// Sets the behaviour sequence: `items` row-major `[rows, width]` (oldest first, right-padded,
    /// any int64: the model hashes them), `len[r]` real entries of row r, in `[0, width]`.
    /// Checked against the model by [`Model::predict`]; a second call replaces the first.
    pub fn history(mut self, items: Vec<i64>, len: Vec<i64>, width: usize) -> Batch {
        self.history = Some(History { width, items, len });
        self
    }

    /// Adds a feature column; giving the same name twice makes the batch invalid.
    pub fn insert(&mut self, name: &str, values: FeatureValues) {
        if self.features.insert(name.to_string(), values).is_some() {
            self.duplicates.push(name.to_string());
        }
    }

    /// The batch in the graph's shape for a model's schema: the ids moved, the dense columns packed
    /// into the `[rows, d]` matrix in the schema's column order. Checks what packing needs (every
    /// feature known, given once, of its kind, the dense columns as long as the batch); everything
    /// else is [`Model::predict`]'s one check. The rows are the length of the first categorical
    /// feature (in graph order), else of the first dense one, else of `hist_len`.
    pub fn build(mut self, schema: &GraphSchema) -> Result<RawBatch, InputError> {
        if let Some(name) = self.duplicates.first() {
            return Err(InputError::DuplicateFeature(name.clone()));
        }
        for name in self.features.keys() {
            let known = schema.categorical.iter().any(|c| &c.name == name)
                || schema.dense.iter().any(|d| d == name);
            if !known {
                return Err(InputError::UnknownFeature(name.clone()));
            }
        }
        let wrong =
            |name: &str, expected: &'static str, found: &FeatureValues| InputError::WrongType {
                name: name.to_string(),
                expected,
                found: found.kind(),
            };
        let mut categorical = BTreeMap::new();
        for c in &schema.categorical {
            match self.features.remove(&c.name) {
                None => return Err(InputError::MissingFeature(c.name.clone())),
                Some(FeatureValues::Ids(ids)) => {
                    categorical.insert(c.name.clone(), ids);
                }
                Some(other) => return Err(wrong(&c.name, "int64 ids", &other)),
            }
        }
        let mut columns = Vec::with_capacity(schema.dense.len());
        for d in &schema.dense {
            match self.features.remove(d) {
                None => return Err(InputError::MissingFeature(d.clone())),
                Some(FeatureValues::Numbers(x)) => columns.push((d, x)),
                Some(other) => return Err(wrong(d, "numbers", &other)),
            }
        }
        let n = schema
            .categorical
            .first()
            .and_then(|c| categorical.get(&c.name))
            .map(Vec::len)
            .or_else(|| columns.first().map(|(_, x)| x.len()))
            .or_else(|| self.history.as_ref().map(|h| h.len.len()))
            .unwrap_or(0);
        let width = columns.len();
        let mut dense = vec![0.0f32; n * width];
        for (j, (name, col)) in columns.iter().enumerate() {
            if col.len() != n {
                return Err(InputError::WrongLength {
                    name: name.to_string(),
                    expected: n,
                    found: col.len(),
                });
            }
            for (r, v) in col.iter().enumerate() {
                dense[r * width + j] = *v;
            }
        }
        Ok(RawBatch {
            n,
            categorical,
            dense,
            history: self.history,
        })
    }
}

/// Per-task probabilities for a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Task names, in column order.
    pub tasks: Vec<String>,
    /// Number of rows.
    pub rows: usize,
    /// Row-major `[rows, tasks]` probabilities.
    pub probs: Vec<f32>,
}

impl Predictions {
    /// The probabilities of one task for every row, or `None` for an unknown task.
    pub fn task(&self, name: &str) -> Option<Vec<f32>> {
        let k = self.tasks.iter().position(|t| t == name)?;
        let t = self.tasks.len();
        Some((0..self.rows).map(|r| self.probs[r * t + k]).collect())
    }
}

/// A compiled uie model, ready to answer requests. `Send + Sync` and cheap to clone (one `Arc`):
/// clones share one optimised plan, and every [`Model::predict`] runs on its own state, so many
/// threads can predict on one model at once. To swap models while serving, see
/// [`ModelHandle`](crate::ModelHandle).
#[derive(Debug, Clone)]
pub struct Model {
    inner: Arc<ModelInner>,
}

#[derive(Debug)]
struct ModelInner {
    engine: Engine,
    metadata: ModelMetadata,
}

impl Model {
    /// Loads and optimises a model file.
    pub fn load(path: &Path) -> Result<Model, RuntimeError> {
        Model::load_with(path, EngineOptions::default())
    }

    /// Loads a model file with explicit engine options.
    pub fn load_with(path: &Path, opts: EngineOptions) -> Result<Model, RuntimeError> {
        Model::from_engine(Engine::load_path(path, opts)?)
    }

    /// Loads and optimises a model from the bytes of an ONNX file (no external data): the same
    /// parsing, preparation and schema checks as [`Model::load`]. Any byte string gives a model or
    /// an error, never a panic (fuzzed: `fuzz/fuzz_targets/model_load.rs`).
    pub fn load_bytes(bytes: &[u8]) -> Result<Model, RuntimeError> {
        Model::load_bytes_with(bytes, EngineOptions::default())
    }

    /// [`Model::load_bytes`] with explicit engine options.
    pub fn load_bytes_with(bytes: &[u8], opts: EngineOptions) -> Result<Model, RuntimeError> {
        Model::from_engine(Engine::load_bytes(bytes, opts)?)
    }

    /// Wraps a loaded engine, reading the metadata and checking its schema against the graph's
    /// inputs.
    pub fn from_engine(engine: Engine) -> Result<Model, RuntimeError> {
        let metadata = ModelMetadata::from_props(|key| engine.metadata_value(key))
            .map_err(|e| RuntimeError::Metadata(e.0))?;
        let expected = metadata.schema.input_names();
        if engine.input_names() != expected {
            return Err(RuntimeError::Metadata(format!(
                "uie.schema lists inputs {expected:?} but the graph has {:?}",
                engine.input_names()
            )));
        }
        if !engine.output_names().iter().any(|o| o == PROBS) {
            return Err(RuntimeError::Metadata(format!(
                "the graph has no `{PROBS}` output"
            )));
        }
        Ok(Model {
            inner: Arc::new(ModelInner { engine, metadata }),
        })
    }

    /// The features the model takes.
    pub fn schema(&self) -> &GraphSchema {
        &self.inner.metadata.schema
    }

    /// Task names, in output-column order.
    pub fn tasks(&self) -> &[String] {
        &self.inner.metadata.tasks
    }

    /// The underlying engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The model's `uie.*` metadata.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.inner.metadata
    }

    /// The model's name (`uie.model_name`).
    pub fn name(&self) -> &str {
        &self.inner.metadata.model_name
    }

    /// The graph inputs, in graph order ([`GraphSchema::inputs`]).
    pub fn input_specs(&self) -> Vec<TensorSpec> {
        self.schema().inputs()
    }

    /// The output a service answers with: `probs`, `f32 [N, tasks]`.
    pub fn output_specs(&self) -> Vec<TensorSpec> {
        vec![probs_spec(self.tasks().len())]
    }

    /// Validates the batch ([`RawBatch::validate`], the one check a request goes through) and
    /// returns per-task probabilities. A batch of zero rows gives empty predictions without
    /// running the engine.
    pub fn predict(&self, batch: &RawBatch) -> Result<Predictions, RuntimeError> {
        let schema = self.schema();
        batch.validate(schema)?;
        let tasks = self.tasks();
        let rows = batch.n;
        if rows == 0 {
            return Ok(Predictions {
                tasks: tasks.to_vec(),
                rows: 0,
                probs: Vec::new(),
            });
        }
        let outputs = self
            .inner
            .engine
            .run_validated(&batch.input_views(schema))?;
        let (_, probs) = outputs
            .into_iter()
            .find(|(name, _)| name == PROBS)
            .ok_or_else(|| RuntimeError::Run(format!("no {PROBS} output")))?;
        let expected = vec![rows, tasks.len()];
        match probs.data {
            TensorData::F32(data) if probs.shape == expected => Ok(Predictions {
                tasks: tasks.to_vec(),
                rows,
                probs: data,
            }),
            _ => Err(RuntimeError::Run(format!(
                "{PROBS} has shape {:?} and type {}, expected f32 {expected:?}",
                probs.shape,
                probs.dtype()
            ))),
        }
    }
}

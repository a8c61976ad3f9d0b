//! The typed API for services: load a compiled uie model, build a batch from named features, get
//! per-task probabilities.
//!
//! The model describes itself through its ONNX `metadata_props` (written by `uie-compile`):
//! `uie.schema` (categorical fields with bucket counts, dense feature names, and for a model with a
//! behaviour sequence `"sequence": {"item_field": …, "inputs": ["hist_items", "hist_len"]}`) and
//! `uie.tasks`. A model with a sequence takes the history through [`Batch::history`]: item ids
//! `[rows, L]` (oldest first, right-padded) and the real lengths `hist_len`, each in `[0, L]`. A
//! request is validated against that schema before anything runs: a missing, extra, duplicated or
//! mistyped feature, a wrong length or a non-finite number is an error that names the feature.
//!
//! ```no_run
//! use uie_runtime::{Batch, Model};
//! # fn main() -> Result<(), uie_runtime::RuntimeError> {
//! let model = Model::load("model.onnx".as_ref())?;
//! let batch = Batch::new()
//!     .ids("education", vec![uie_runtime::feature_id("Bachelors degree(BA AB BS)")])
//!     .numbers("age", vec![41.0]);
//! # let batch = batch; // other features elided
//! let preds = model.predict(&batch)?;
//! println!("{:?}", preds.task("income"));
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::engine::{Engine, EngineOptions, Value};
use crate::error::RuntimeError;

/// Name of the dense graph input.
pub const DENSE_INPUT: &str = "dense";
/// Name of the probabilities graph output.
pub const PROBS_OUTPUT: &str = "probs";
/// Name of the history items graph input.
pub const HIST_ITEMS: &str = "hist_items";
/// Name of the history length graph input.
pub const HIST_LEN: &str = "hist_len";

/// The behaviour sequence a model takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceSpec {
    /// The item field whose ids (and embedding table) the history shares.
    pub item_field: String,
}

/// Named graph inputs, in graph order.
pub type GraphInputs<'a> = Vec<(&'a str, Value)>;

/// One categorical input of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoricalSpec {
    /// Feature (and graph input) name.
    pub name: String,
    /// Hash buckets: the model maps an id to row `id mod buckets`.
    pub buckets: u64,
}

/// The features a model takes, read from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Categorical fields, in graph input order.
    pub categorical: Vec<CategoricalSpec>,
    /// Dense feature names, in the column order of the `dense` input.
    pub dense: Vec<String>,
    /// The behaviour sequence, when the model has one (inputs `hist_items`, `hist_len`).
    pub sequence: Option<SequenceSpec>,
}

/// The history of a request (see [`Batch::history`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct HistoryValues {
    items: Vec<i64>,
    len: Vec<i64>,
    width: usize,
}

/// Values of one feature for every row of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValues {
    /// Raw int64 ids of a categorical feature (any int64: the model hashes them).
    Ids(Vec<i64>),
    /// Raw values of a numeric feature.
    Numbers(Vec<f32>),
}

impl FeatureValues {
    fn len(&self) -> usize {
        match self {
            FeatureValues::Ids(v) => v.len(),
            FeatureValues::Numbers(v) => v.len(),
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            FeatureValues::Ids(_) => "int64 ids",
            FeatureValues::Numbers(_) => "numbers",
        }
    }
}

/// A request: named feature columns, one value per row each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    features: BTreeMap<String, FeatureValues>,
    duplicates: Vec<String>,
    history: Option<HistoryValues>,
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
    /// Checked against the model in [`Model::inputs_for`]; a second call replaces the first.
    pub fn history(mut self, items: Vec<i64>, len: Vec<i64>, width: usize) -> Batch {
        self.history = Some(HistoryValues { items, len, width });
        self
    }

    /// Adds a feature column; giving the same name twice makes the batch invalid.
    pub fn insert(&mut self, name: &str, values: FeatureValues) {
        if self.features.insert(name.to_string(), values).is_some() {
            self.duplicates.push(name.to_string());
        }
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
    schema: Schema,
    tasks: Vec<String>,
}

/// Element type of a graph tensor, named as the KServe v2 / Triton protocols name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    /// 64-bit signed integers (`INT64`).
    Int64,
    /// 32-bit floats (`FP32`).
    Fp32,
}

impl TensorType {
    /// The KServe v2 datatype name: `INT64` or `FP32`.
    pub fn kserve_name(self) -> &'static str {
        match self {
            TensorType::Int64 => "INT64",
            TensorType::Fp32 => "FP32",
        }
    }
}

/// The name, type and shape of one graph input or output. `None` dims are dynamic (the batch
/// dimension `N` first, and the history width `L`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Graph input or output name.
    pub name: String,
    /// Element type.
    pub dtype: TensorType,
    /// Dims, batch first; `None` for a dynamic dim.
    pub dims: Vec<Option<usize>>,
}

fn history_err(name: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::BadHistory {
        name: name.to_string(),
        message: message.into(),
    }
}

fn meta_err(message: impl Into<String>) -> RuntimeError {
    RuntimeError::Metadata(message.into())
}

fn parse_schema(engine: &Engine) -> Result<(Schema, Vec<String>), RuntimeError> {
    let schema_text = engine
        .metadata_value("uie.schema")
        .ok_or_else(|| meta_err("uie.schema is missing: was this file written by uie-compile?"))?;
    let tasks_text = engine
        .metadata_value("uie.tasks")
        .ok_or_else(|| meta_err("uie.tasks is missing"))?;
    let schema: serde_json::Value = serde_json::from_str(schema_text)
        .map_err(|e| meta_err(format!("uie.schema is not JSON: {e}")))?;
    let tasks: Vec<String> = serde_json::from_str(tasks_text)
        .map_err(|e| meta_err(format!("uie.tasks is not a JSON list of names: {e}")))?;
    let mut categorical = Vec::new();
    for f in schema["categorical"]
        .as_array()
        .ok_or_else(|| meta_err("uie.schema.categorical is not a list"))?
    {
        let name = f["name"]
            .as_str()
            .ok_or_else(|| meta_err("uie.schema.categorical[].name is not a string"))?;
        let buckets = f["buckets"]
            .as_u64()
            .ok_or_else(|| meta_err(format!("uie.schema: buckets of {name} is not a number")))?;
        categorical.push(CategoricalSpec {
            name: name.to_string(),
            buckets,
        });
    }
    let dense = schema["dense"]
        .as_array()
        .ok_or_else(|| meta_err("uie.schema.dense is not a list"))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| meta_err("uie.schema.dense[] is not a string"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sequence = match schema.get("sequence") {
        None | Some(serde_json::Value::Null) => None,
        Some(seq) => {
            let item_field = seq["item_field"]
                .as_str()
                .ok_or_else(|| meta_err("uie.schema.sequence.item_field is not a string"))?;
            let inputs: Vec<&str> = seq["inputs"]
                .as_array()
                .map(|v| v.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            if inputs != [HIST_ITEMS, HIST_LEN] {
                return Err(meta_err(format!(
                    "uie.schema.sequence.inputs is {inputs:?}, expected [{HIST_ITEMS}, {HIST_LEN}]"
                )));
            }
            Some(SequenceSpec {
                item_field: item_field.to_string(),
            })
        }
    };
    Ok((
        Schema {
            categorical,
            dense,
            sequence,
        },
        tasks,
    ))
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

    /// Wraps a loaded engine, reading the schema from its metadata and checking it against the
    /// graph's inputs.
    pub fn from_engine(engine: Engine) -> Result<Model, RuntimeError> {
        let (schema, tasks) = parse_schema(&engine)?;
        let mut expected: Vec<&str> = schema.categorical.iter().map(|c| c.name.as_str()).collect();
        if !schema.dense.is_empty() {
            expected.push(DENSE_INPUT);
        }
        if schema.sequence.is_some() {
            expected.push(HIST_ITEMS);
            expected.push(HIST_LEN);
        }
        if engine.input_names() != expected {
            return Err(meta_err(format!(
                "uie.schema lists inputs {expected:?} but the graph has {:?}",
                engine.input_names()
            )));
        }
        if !engine.output_names().iter().any(|o| o == PROBS_OUTPUT) {
            return Err(meta_err("the graph has no `probs` output"));
        }
        Ok(Model {
            inner: Arc::new(ModelInner {
                engine,
                schema,
                tasks,
            }),
        })
    }

    /// The features the model takes.
    pub fn schema(&self) -> &Schema {
        &self.inner.schema
    }

    /// Task names, in output-column order.
    pub fn tasks(&self) -> &[String] {
        &self.inner.tasks
    }

    /// The underlying engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The model's `uie.model_name` metadata, when present.
    pub fn name(&self) -> Option<&str> {
        self.inner.engine.metadata_value("uie.model_name")
    }

    /// The graph inputs, in graph order: one `INT64 [N]` per categorical field, `dense`
    /// `FP32 [N, d]` when the model has dense features, and with a behaviour sequence
    /// `hist_items` `INT64 [N, L]` and `hist_len` `INT64 [N]`.
    pub fn input_specs(&self) -> Vec<TensorSpec> {
        let schema = self.schema();
        let mut specs: Vec<TensorSpec> = schema
            .categorical
            .iter()
            .map(|c| TensorSpec {
                name: c.name.clone(),
                dtype: TensorType::Int64,
                dims: vec![None],
            })
            .collect();
        if !schema.dense.is_empty() {
            specs.push(TensorSpec {
                name: DENSE_INPUT.to_string(),
                dtype: TensorType::Fp32,
                dims: vec![None, Some(schema.dense.len())],
            });
        }
        if schema.sequence.is_some() {
            specs.push(TensorSpec {
                name: HIST_ITEMS.to_string(),
                dtype: TensorType::Int64,
                dims: vec![None, None],
            });
            specs.push(TensorSpec {
                name: HIST_LEN.to_string(),
                dtype: TensorType::Int64,
                dims: vec![None],
            });
        }
        specs
    }

    /// The output a service answers with: `probs`, `FP32 [N, tasks]`.
    pub fn output_specs(&self) -> Vec<TensorSpec> {
        vec![TensorSpec {
            name: PROBS_OUTPUT.to_string(),
            dtype: TensorType::Fp32,
            dims: vec![None, Some(self.tasks().len())],
        }]
    }

    /// Turns named graph-input tensors (the shapes of [`Model::input_specs`]) into a [`Batch`],
    /// checking names, types, ranks, the `dense` width and that every `dense` value is finite;
    /// [`Model::predict`] checks the rest (row counts, `hist_len` in `[0, L]`). Every error names
    /// the input at fault.
    pub fn batch_from_tensors(&self, tensors: &[(String, Value)]) -> Result<Batch, RuntimeError> {
        let specs = self.input_specs();
        let bad = |name: &str, message: String| RuntimeError::BadInput {
            name: name.to_string(),
            message,
        };
        for (i, (name, _)) in tensors.iter().enumerate() {
            if !specs.iter().any(|s| &s.name == name) {
                return Err(RuntimeError::UnknownFeature(name.clone()));
            }
            if tensors[..i].iter().any(|(n, _)| n == name) {
                return Err(RuntimeError::DuplicateFeature(name.clone()));
            }
        }
        let mut batch = Batch::new();
        let mut hist_items: Option<(Vec<i64>, usize)> = None;
        let mut hist_len: Option<Vec<i64>> = None;
        for spec in &specs {
            let (_, value) = tensors
                .iter()
                .find(|(n, _)| n == &spec.name)
                .ok_or_else(|| RuntimeError::MissingFeature(spec.name.clone()))?;
            let shape = value.shape();
            if shape.len() != spec.dims.len() {
                return Err(bad(
                    &spec.name,
                    format!("expected rank {}, got shape {shape:?}", spec.dims.len()),
                ));
            }
            for (axis, (want, got)) in spec.dims.iter().zip(shape).enumerate() {
                if let Some(want) = want {
                    if want != got {
                        return Err(bad(
                            &spec.name,
                            format!("dim {axis} must be {want}, got shape {shape:?}"),
                        ));
                    }
                }
            }
            let wrong_type = |found: &'static str| RuntimeError::WrongType {
                name: spec.name.clone(),
                expected: spec.dtype.kserve_name(),
                found,
            };
            match (spec.dtype, value) {
                (TensorType::Int64, Value::I64 { data, .. }) => {
                    if spec.name == HIST_ITEMS {
                        hist_items = Some((data.clone(), shape[1]));
                    } else if spec.name == HIST_LEN {
                        hist_len = Some(data.clone());
                    } else {
                        batch = batch.ids(&spec.name, data.clone());
                    }
                }
                (TensorType::Fp32, Value::F32 { data, .. }) => {
                    let width = self.schema().dense.len();
                    if let Some((i, v)) = data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                        let (row, col) = (i / width, i % width);
                        return Err(bad(
                            &spec.name,
                            format!(
                                "row {row}, column {col} ({}) is {v}, not a finite number",
                                self.schema().dense[col]
                            ),
                        ));
                    }
                    for (col, name) in self.schema().dense.iter().enumerate() {
                        let column = data.iter().skip(col).step_by(width).copied().collect();
                        batch = batch.numbers(name, column);
                    }
                }
                (_, Value::I64 { .. }) => return Err(wrong_type("INT64")),
                (_, Value::F32 { .. }) => return Err(wrong_type("FP32")),
            }
        }
        if let (Some((items, width)), Some(len)) = (hist_items, hist_len) {
            batch = batch.history(items, len, width);
        }
        Ok(batch)
    }

    /// Validates a batch and turns it into graph inputs.
    pub fn inputs_for(&self, batch: &Batch) -> Result<(usize, GraphInputs<'_>), RuntimeError> {
        if let Some(name) = batch.duplicates.first() {
            return Err(RuntimeError::DuplicateFeature(name.clone()));
        }
        for name in batch.features.keys() {
            let known = self
                .inner
                .schema
                .categorical
                .iter()
                .any(|c| &c.name == name)
                || self.inner.schema.dense.iter().any(|d| d == name);
            if !known {
                return Err(RuntimeError::UnknownFeature(name.clone()));
            }
        }
        let get = |name: &str| {
            batch
                .features
                .get(name)
                .ok_or_else(|| RuntimeError::MissingFeature(name.to_string()))
        };
        let mut rows: Option<usize> = None;
        let mut check_len = |name: &str, v: &FeatureValues| match rows {
            None => {
                rows = Some(v.len());
                Ok(())
            }
            Some(n) if n == v.len() => Ok(()),
            Some(n) => Err(RuntimeError::WrongLength {
                name: name.to_string(),
                expected: n,
                found: v.len(),
            }),
        };
        let mut inputs = Vec::new();
        for c in &self.inner.schema.categorical {
            let v = get(&c.name)?;
            check_len(&c.name, v)?;
            match v {
                FeatureValues::Ids(ids) => inputs.push((
                    c.name.as_str(),
                    Value::I64 {
                        shape: vec![ids.len()],
                        data: ids.clone(),
                    },
                )),
                other => {
                    return Err(RuntimeError::WrongType {
                        name: c.name.clone(),
                        expected: "int64 ids",
                        found: other.kind(),
                    })
                }
            }
        }
        let mut columns = Vec::new();
        for d in &self.inner.schema.dense {
            let v = get(d)?;
            check_len(d, v)?;
            match v {
                FeatureValues::Numbers(x) => {
                    if let Some((row, &value)) = x.iter().enumerate().find(|(_, v)| !v.is_finite())
                    {
                        return Err(RuntimeError::NonFinite {
                            name: d.clone(),
                            row,
                            value,
                        });
                    }
                    columns.push(x);
                }
                other => {
                    return Err(RuntimeError::WrongType {
                        name: d.clone(),
                        expected: "numbers",
                        found: other.kind(),
                    })
                }
            }
        }
        let n = rows.unwrap_or(0);
        if !columns.is_empty() {
            let width = columns.len();
            let mut data = vec![0.0f32; n * width];
            for (j, col) in columns.iter().enumerate() {
                for (r, v) in col.iter().enumerate() {
                    data[r * width + j] = *v;
                }
            }
            inputs.push((
                DENSE_INPUT,
                Value::F32 {
                    shape: vec![n, width],
                    data,
                },
            ));
        }
        let n = match (&self.inner.schema.sequence, &batch.history) {
            (None, None) => n,
            (None, Some(_)) => {
                return Err(history_err(
                    HIST_ITEMS,
                    "this model has no behaviour sequence",
                ))
            }
            (Some(_), None) => return Err(history_err(HIST_ITEMS, "missing from the request")),
            (Some(_), Some(h)) => {
                let n = if rows.is_none() { h.len.len() } else { n };
                self.history_inputs(h, n, &mut inputs)?;
                n
            }
        };
        Ok((n, inputs))
    }

    /// Checks a history against the batch size and appends `hist_items`, `hist_len`.
    fn history_inputs(
        &self,
        h: &HistoryValues,
        n: usize,
        inputs: &mut GraphInputs<'_>,
    ) -> Result<(), RuntimeError> {
        if h.width == 0 {
            return Err(history_err(HIST_ITEMS, "width L must be at least 1"));
        }
        if h.len.len() != n {
            return Err(history_err(
                HIST_LEN,
                format!("{} values, but the batch has {n} rows", h.len.len()),
            ));
        }
        // checked: a width near usize::MAX (a request's `hist_items` of shape [0, 2^63]) must
        // not wrap `n × L` around to the number of ids given.
        if n.checked_mul(h.width) != Some(h.items.len()) {
            return Err(history_err(
                HIST_ITEMS,
                format!(
                    "{} ids, but the batch has {n} rows × L = {}",
                    h.items.len(),
                    h.width
                ),
            ));
        }
        if let Some((row, &l)) = h
            .len
            .iter()
            .enumerate()
            .find(|(_, &l)| l < 0 || l as u64 > h.width as u64)
        {
            return Err(history_err(
                HIST_LEN,
                format!("row {row} is {l}, outside [0, {}]", h.width),
            ));
        }
        inputs.push((
            HIST_ITEMS,
            Value::I64 {
                shape: vec![n, h.width],
                data: h.items.clone(),
            },
        ));
        inputs.push((
            HIST_LEN,
            Value::I64 {
                shape: vec![n],
                data: h.len.clone(),
            },
        ));
        Ok(())
    }

    /// Validates the batch and returns per-task probabilities. A batch of zero rows gives empty
    /// predictions without running the engine.
    pub fn predict(&self, batch: &Batch) -> Result<Predictions, RuntimeError> {
        let (rows, inputs) = self.inputs_for(batch)?;
        if rows == 0 {
            return Ok(Predictions {
                tasks: self.inner.tasks.clone(),
                rows: 0,
                probs: Vec::new(),
            });
        }
        let outputs = self.inner.engine.run(&inputs)?;
        let (_, probs) = outputs
            .into_iter()
            .find(|(name, _)| name == PROBS_OUTPUT)
            .ok_or_else(|| RuntimeError::Run("no probs output".into()))?;
        let expected = vec![rows, self.inner.tasks.len()];
        match probs {
            Value::F32 { shape, data } if shape == expected => Ok(Predictions {
                tasks: self.inner.tasks.clone(),
                rows,
                probs: data,
            }),
            other => Err(RuntimeError::Run(format!(
                "probs has shape {:?}, expected {expected:?}",
                other.shape()
            ))),
        }
    }
}

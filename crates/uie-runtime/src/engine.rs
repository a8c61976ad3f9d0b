//! The low-level engine: an ONNX file loaded by tract, run on named tensors
//! ([`uie_model::Tensor`], the one tensor type of the workspace).
//!
//! This is the only module that names tract types. [`Engine::run`] checks its named inputs
//! against the graph (names, element types, ranks); [`crate::Model::predict`] validates a request
//! once and hands it over without a second check. [`Engine`] owns one runnable plan behind an
//! `Arc`: it is `Send + Sync`, and every [`Engine::run`] runs on a state of its own (taken from a
//! small pool of the states earlier completed runs left, or a new one), so many threads can run
//! one engine at once. A panic inside tract is caught and returned as [`RuntimeError::Run`].
//!
//! `optimize = false` runs the typed model as loaded ("plain"); `optimize = true` runs tract's
//! optimised model ([`crate::declutter`]). Parity tests run both. Right after typing, before
//! tract's optimiser, the runtime's rewrites (module [`crate::rewrites`]) replace the sub-graphs
//! they recognise by fused ops, each unless its name is in `disabled`; the engine reports what
//! each did ([`Engine::rewrite_counts`]). With `clear_upper_state` (the default) every node of the
//! plan is followed by a `vzeroupper` (module [`crate::upper`]).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{EvalContext, OpState};

use uie_model::{InputError, InputView, Tensor as UieTensor, TensorData, ViewData};

use crate::error::RuntimeError;
use crate::rewrites::{RewriteCounts, RewriteName, RewriteSet};

fn bad_input(name: &str, message: String) -> RuntimeError {
    RuntimeError::Input(InputError::BadInput {
        name: name.to_string(),
        message,
    })
}

/// A tensor as tract's input value.
fn to_tvalue(t: &UieTensor, name: &str) -> Result<TValue, RuntimeError> {
    let data = match &t.data {
        TensorData::F32(data) => ViewData::F32(data),
        TensorData::I64(data) => ViewData::I64(data),
    };
    view_to_tvalue(name, &t.shape, data)
}

/// Borrowed input values as one of tract's (the one copy of a request's data).
fn view_to_tvalue(name: &str, shape: &[usize], data: ViewData<'_>) -> Result<TValue, RuntimeError> {
    // Checked here: tract multiplies the dims without an overflow check.
    let len = match data {
        ViewData::F32(data) => data.len(),
        ViewData::I64(data) => data.len(),
    };
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count != Some(len) {
        return Err(bad_input(
            name,
            format!("shape {shape:?} does not hold {len} values"),
        ));
    }
    let tensor = match data {
        ViewData::F32(data) => Tensor::from_shape(shape, data),
        ViewData::I64(data) => Tensor::from_shape(shape, data),
    }
    .map_err(|e| bad_input(name, e.to_string()))?;
    Ok(tensor.into_tvalue())
}

/// One of tract's output values as a tensor.
fn from_tract(t: &Tensor) -> Result<UieTensor, RuntimeError> {
    let shape = t.shape().to_vec();
    let run = |e: TractError| RuntimeError::Run(e.to_string());
    match t.datum_type() {
        DatumType::F32 => Ok(UieTensor {
            shape,
            data: TensorData::F32(
                t.to_plain_array_view::<f32>()
                    .map_err(run)?
                    .iter()
                    .copied()
                    .collect(),
            ),
        }),
        DatumType::I64 => Ok(UieTensor {
            shape,
            data: TensorData::I64(
                t.to_plain_array_view::<i64>()
                    .map_err(run)?
                    .iter()
                    .copied()
                    .collect(),
            ),
        }),
        other => Err(RuntimeError::Run(format!(
            "unsupported output type {other:?}"
        ))),
    }
}

/// Run states an [`Engine`] keeps for reuse (about the number of threads running it at once).
const POOLED_STATES: usize = 64;

/// How to prepare the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Run tract's optimiser (true) or the typed model as loaded (false).
    pub optimize: bool,
    /// The rewrites of [`crate::rewrites`] not to run (none by default): their sub-graphs keep
    /// running as standard ops.
    pub disabled: RewriteSet,
    /// Clear the upper halves of the vector registers (`vzeroupper`) after every node of the
    /// plan (true, the default) or not (false): tract's AVX kernels leave them dirty, which slows
    /// every later legacy-SSE instruction down (module [`crate::upper`]). The results are the
    /// same either way; only the speed differs.
    pub clear_upper_state: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            optimize: true,
            disabled: RewriteSet::NONE,
            clear_upper_state: true,
        }
    }
}

impl EngineOptions {
    /// These options with the rewrite `name` on (`on`) or off.
    pub fn with_rewrite(self, name: RewriteName, on: bool) -> EngineOptions {
        let disabled = if on {
            self.disabled.without(name)
        } else {
            self.disabled.with(name)
        };
        EngineOptions { disabled, ..self }
    }

    /// These options with every rewrite on (`on`) or off.
    pub fn with_rewrites(self, on: bool) -> EngineOptions {
        let disabled = if on {
            RewriteSet::NONE
        } else {
            RewriteSet::ALL
        };
        EngineOptions { disabled, ..self }
    }

    /// Whether the rewrite `name` runs.
    pub fn rewrite_enabled(&self, name: RewriteName) -> bool {
        !self.disabled.contains(name)
    }
}

struct InputSpec {
    name: String,
    dtype: DatumType,
    rank: usize,
}

/// A loaded, runnable ONNX model.
#[derive(Clone)]
pub struct Engine {
    plan: Arc<TypedSimplePlan>,
    /// Run states of the plan kept between runs (at most [`POOLED_STATES`]), so a run reuses the
    /// state a previous one left instead of building one.
    states: Arc<Mutex<Vec<TypedSimpleState>>>,
    inputs: Arc<Vec<InputSpec>>,
    outputs: Arc<Vec<String>>,
    properties: Arc<Vec<(String, String)>>,
    rewrites: Arc<RewriteCounts>,
    clear_upper_state: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("inputs", &self.input_names())
            .field("outputs", &self.outputs)
            .finish()
    }
}

fn guarded<T>(what: &str, f: impl FnOnce() -> TractResult<T>) -> Result<T, RuntimeError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RuntimeError::Load {
            what: what.to_string(),
            message: format!("{e:#}"),
        }),
        Err(_) => Err(RuntimeError::Load {
            what: what.to_string(),
            message: "tract panicked while loading the model".to_string(),
        }),
    }
}

impl Engine {
    /// Loads a model from a file. External data files are resolved beside it.
    pub fn load_path(path: &Path, opts: EngineOptions) -> Result<Engine, RuntimeError> {
        let what = path.display().to_string();
        let not_a_file = |message: &str| RuntimeError::Load {
            what: what.clone(),
            message: message.to_string(),
        };
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => return Err(not_a_file("a directory, not a model file")),
            Ok(m) if m.len() == 0 => return Err(not_a_file("the file is empty, not a model")),
            _ => {}
        }
        let model = guarded(&what, || tract_onnx::onnx().model_for_path(path))?;
        Engine::prepare(model, opts, &what)
    }

    /// Loads a model from bytes (no external data).
    pub fn load_bytes(bytes: &[u8], opts: EngineOptions) -> Result<Engine, RuntimeError> {
        let what = "<bytes>";
        let model = guarded(what, || {
            tract_onnx::onnx().model_for_read(&mut std::io::Cursor::new(bytes))
        })?;
        Engine::prepare(model, opts, what)
    }

    fn prepare(
        model: InferenceModel,
        opts: EngineOptions,
        what: &str,
    ) -> Result<Engine, RuntimeError> {
        let mut properties: Vec<(String, String)> = model
            .properties
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("onnx.metadata_props.")?;
                let value = v
                    .to_plain_array_view::<String>()
                    .ok()?
                    .iter()
                    .next()?
                    .clone();
                Some((key.to_string(), value))
            })
            .collect();
        properties.sort();
        let mut rewrites = RewriteCounts::default();
        let plan = guarded(what, || {
            let mut typed = model.into_typed()?;
            rewrites = crate::rewrites::apply(&mut typed, opts.disabled);
            let typed = if opts.optimize {
                crate::declutter::optimize(typed, rewrites.get(RewriteName::Merge) > 0)?
            } else {
                typed
            };
            typed.into_runnable()
        })?;
        let m = plan.model();
        let mut inputs = Vec::new();
        for outlet in m.input_outlets().map_err(|e| load_err(what, e))? {
            let fact = m.outlet_fact(*outlet).map_err(|e| load_err(what, e))?;
            inputs.push(InputSpec {
                name: m.node(outlet.node).name.clone(),
                dtype: fact.datum_type,
                rank: fact.rank(),
            });
        }
        let mut outputs = Vec::new();
        for outlet in m.output_outlets().map_err(|e| load_err(what, e))? {
            let name = m
                .outlet_label(*outlet)
                .map(str::to_string)
                .unwrap_or_else(|| m.node(outlet.node).name.clone());
            outputs.push(name);
        }
        Ok(Engine {
            plan,
            states: Arc::new(Mutex::new(Vec::new())),
            inputs: Arc::new(inputs),
            outputs: Arc::new(outputs),
            properties: Arc::new(properties),
            rewrites: Arc::new(rewrites),
            clear_upper_state: opts.clear_upper_state,
        })
    }

    /// What each rewrite of [`crate::rewrites`] replaced at load, by name (0 for a disabled
    /// rewrite or one whose pattern the model does not have).
    pub fn rewrite_counts(&self) -> &RewriteCounts {
        &self.rewrites
    }

    /// What one rewrite replaced at load ([`Engine::rewrite_counts`]).
    pub fn rewrite_count(&self, name: RewriteName) -> usize {
        self.rewrites.get(name)
    }

    /// Graph input names, in graph order.
    pub fn input_names(&self) -> Vec<&str> {
        self.inputs.iter().map(|i| i.name.as_str()).collect()
    }

    /// Graph output names, in graph order.
    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }

    /// The model's `metadata_props`, sorted by key.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.properties
    }

    /// One metadata value.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Runs the model. Every graph input must be given exactly once, by name, with the graph's
    /// element type and rank; outputs come back in graph order with their names.
    pub fn run<S: AsRef<str>>(
        &self,
        inputs: &[(S, UieTensor)],
    ) -> Result<Vec<(String, UieTensor)>, RuntimeError> {
        let values = self.checked_inputs(inputs)?;
        self.execute(values)
    }

    /// Runs inputs already checked against the model ([`crate::Model::predict`] validates a
    /// request once, with [`uie_model::RawBatch::validate`]): the graph's inputs, borrowed, in
    /// graph order, each copied once into tract.
    pub(crate) fn run_validated(
        &self,
        inputs: &[InputView<'_>],
    ) -> Result<Vec<(String, UieTensor)>, RuntimeError> {
        let values = inputs
            .iter()
            .map(|v| view_to_tvalue(v.name, &v.shape, v.data))
            .collect::<Result<TVec<_>, _>>()?;
        self.execute(values)
    }

    /// The check of [`Engine::run`]: the named tensors as tract values in graph order.
    fn checked_inputs<S: AsRef<str>>(
        &self,
        inputs: &[(S, UieTensor)],
    ) -> Result<TVec<TValue>, RuntimeError> {
        for (name, _) in inputs {
            let name = name.as_ref();
            if !self.inputs.iter().any(|i| i.name == name) {
                return Err(bad_input(name, "not an input of this model".into()));
            }
        }
        let mut values = TVec::new();
        for spec in self.inputs.iter() {
            let mut given = inputs.iter().filter(|(n, _)| n.as_ref() == spec.name);
            let (_, value) = given
                .next()
                .ok_or_else(|| bad_input(&spec.name, "missing".into()))?;
            if given.next().is_some() {
                return Err(bad_input(&spec.name, "given more than once".into()));
            }
            let expected = match spec.dtype {
                DatumType::F32 => "f32",
                DatumType::I64 => "i64",
                _ => "an unsupported type",
            };
            if value.dtype().name() != expected {
                return Err(bad_input(
                    &spec.name,
                    format!("expected {expected}, got {}", value.dtype()),
                ));
            }
            if value.shape.len() != spec.rank {
                return Err(bad_input(
                    &spec.name,
                    format!("expected rank {}, got shape {:?}", spec.rank, value.shape),
                ));
            }
            values.push(to_tvalue(value, &spec.name)?);
        }
        Ok(values)
    }

    /// Runs tract on input values in graph order, on a pooled run state.
    fn execute(&self, values: TVec<TValue>) -> Result<Vec<(String, UieTensor)>, RuntimeError> {
        let outputs = match catch_unwind(AssertUnwindSafe(|| {
            let pooled = self.states.lock().ok().and_then(|mut pool| pool.pop());
            let mut state = match pooled {
                Some(state) => state,
                None => self.plan.spawn()?,
            };
            let out = state.run_plan_with_eval(values, |ctx, op_state, node, ins| {
                self.eval_node(ctx, op_state, node, ins)
            })?;
            // Only a state whose run completed goes back (a failed run may leave values behind).
            if let Ok(mut pool) = self.states.lock() {
                if pool.len() < POOLED_STATES {
                    pool.push(state);
                }
            }
            Ok::<_, TractError>(out)
        })) {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(RuntimeError::Run(format!("{e:#}"))),
            Err(_) => return Err(RuntimeError::Run("tract panicked".into())),
        };
        outputs
            .iter()
            .zip(self.outputs.iter())
            .map(|(t, name)| Ok((name.clone(), from_tract(t)?)))
            .collect()
    }
}

/// The accumulated time of one node of the optimised plan, from [`Engine::profile`].
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    /// The node name (after tract's optimiser: the ONNX node name, possibly with a suffix).
    pub name: String,
    /// tract's op name (e.g. `OptMatMul`, `Gather`).
    pub op: String,
    /// Total wall time over all profiled runs, in nanoseconds.
    pub nanos: u128,
}

impl Engine {
    /// One node's evaluation as the engine runs it ([`Engine::run`] and [`Engine::profile`]):
    /// tract's own, then the upper-state clearing when it is on.
    fn eval_node(
        &self,
        ctx: &EvalContext,
        op_state: Option<&mut (dyn OpState + 'static)>,
        node: &TypedNode,
        inputs: TVec<TValue>,
    ) -> TractResult<TVec<TValue>> {
        let r = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
        if self.clear_upper_state {
            crate::upper::clear();
        }
        r
    }

    /// Runs the plan `runs` times on `inputs` and returns the wall time spent in each node, in
    /// plan order (a diagnostic for finding where tract spends its time; inputs are checked as in
    /// [`Engine::run`] by a first plain run).
    pub fn profile<S: AsRef<str>>(
        &self,
        inputs: &[(S, UieTensor)],
        runs: usize,
    ) -> Result<Vec<NodeTime>, RuntimeError> {
        self.run(inputs)?;
        let values = self.checked_inputs(inputs)?;
        let model = self.plan.model();
        let mut times = vec![0u128; model.nodes().len()];
        let timed = catch_unwind(AssertUnwindSafe(|| -> TractResult<()> {
            let mut state = self.plan.spawn()?;
            for _ in 0..runs {
                state.run_plan_with_eval(values.clone(), |ctx, op_state, node, ins| {
                    let t0 = std::time::Instant::now();
                    let r = self.eval_node(ctx, op_state, node, ins);
                    times[node.id] += t0.elapsed().as_nanos();
                    r
                })?;
            }
            Ok(())
        }));
        match timed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(RuntimeError::Run(format!("{e:#}"))),
            Err(_) => return Err(RuntimeError::Run("tract panicked".into())),
        }
        Ok(model
            .nodes()
            .iter()
            .map(|n| NodeTime {
                name: n.name.clone(),
                op: n.op().name().to_string(),
                nanos: times[n.id],
            })
            .collect())
    }
}

fn load_err(what: &str, e: TractError) -> RuntimeError {
    RuntimeError::Load {
        what: what.to_string(),
        message: format!("{e:#}"),
    }
}

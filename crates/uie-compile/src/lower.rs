//! Lowering: a checkpoint becomes an IR graph with the forward semantics of
//! [`uie_model::schema`] (`docs/model.md` §1 and §6).
//!
//! ```text
//! <field> i64[N] ─Mod(H_f)─Gather(embed.<field>)─┐
//! dense f32[N,D] ─Sub(mean)─Div(std)─────────────┴─Concat → x
//! level l: experts (Linear+ReLU per layer) → gates softmax(h·W+b) → Σ_j g_j·expert_j
//! towers: Linear+ReLU … → Linear → Sigmoid;  Concat → probs f32[N,T]
//! ```
//!
//! The gate mix is `ReduceSum_axis1(Unsqueeze(g, 2) · Concat_axis1(Unsqueeze(e_j, 1)))` (a
//! batched MatMul `[N, 1, E] · [N, E, W]` measured slower in tract here: `docs/perf-log.md`). Node names
//! are `<tensor prefix>/<OpType>` (e.g. `ple.l0.income.expert1.fc0/MatMul`), value names
//! `<tensor prefix>.<step>`; weights keep their checkpoint names as initializer names.
//!
//! The behaviour sequence and the UIE modules (`docs/model.md` §2–§5) are further [`InputPart`]s
//! of the backbone input, each a named sub-graph with exactly the trainer's formulas (the module
//! doc of `uie-train`'s `model.rs`):
//!
//! ```text
//! seq/…      rows = hist_items mod H_item; H = Gather(E_item, rows) [N,L,d_e]
//!            m = Cast(Less(CumSum_excl(ones[N,L]), hist_len[N,1]))            (j < hist_len)
//!            s = ReduceSum_2(MatMul(H, Unsqueeze(e_item·W_q, 2))) · 1/sqrt(d_e)
//!            a = Softmax(s·m + (m − 1)·1e9) · m;  seq = ReduceSum_1(MatMul(Unsqueeze(a, 1), H))
//! aux.user…  v_u = T_u(concat(user-field embeddings))
//! R(q, M, K) s = q · Mᵀ (Mᵀ a compile-time initializer); s_k, i_k = TopK(s, K)
//!            keep = Cast(Greater(s_k, 0)); a = Softmax(s_k·keep + (keep − 1)·1e9) · keep
//!            r = ReduceSum_1(Unsqueeze(a, 2) · Gather(M, i_k))
//! uie.upe/…  e_upe = G_upe(concat(R(v_u, M_upe, K1), v_u))
//! uie.ucbe/… e_ucbe = G_ucbe(Gather(P, user_id mod H_user))
//! uie.ucse/… q_u = ReduceSum_1(MatMul(Unsqueeze(m, 1), H)) / Max(hist_len, 1); i_k, keep from R(q_u, …)
//!            C = Gather(M_ucse, i_k); t = e_item · W_t; b = masked softmax of
//!            ReduceSum_2(MatMul(C, Unsqueeze(t, 2))) · 1/sqrt(d_e);
//!            e_ucse = G_ucse(ReduceSum_1(MatMul(Unsqueeze(b, 1), C)))
//! ```
//!
//! Every Gather index comes out of a `Mod` or a `TopK`, so it is always in range. Nodes of these
//! sub-graphs are named `<prefix>/<step>/<OpType>` and their values `<prefix>.<step>`. With
//! [`LowerOptions::debug_outputs`], intermediate values are also graph outputs (see
//! [`DEBUG_OUTPUTS`]).

use std::collections::BTreeMap;

use uie_model::checkpoint::validate_weights;
use uie_model::graph::{
    debug, GraphSchema, BATCH_DIM, DEBUG_OUTPUTS, DENSE, HIST_DIM, HIST_ITEMS, HIST_LEN, PROBS,
};
use uie_model::schema::{Gate, Mlp, Owner, Retrieval, DENSE_MEAN, DENSE_STD};
use uie_model::{Checkpoint, Config, ModelMetadata, Plan, Tensor, TensorData, TensorMap};

use crate::error::CompileError;
use crate::ir::{Dim, Dtype, Graph, Op, TensorType, ValueId};

/// The large negative fill of every masked softmax (`MASK_FILL` of the trainer).
pub const MASK_FILL: f32 = 1e9;

/// Options of the lowering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LowerOptions {
    /// Also output the intermediate UIE values of [`DEBUG_OUTPUTS`]: `debug.upe.indices` and
    /// `debug.ucse.indices` (i64 `[N, K]`), `debug.upe.r` `[N, d]`, `debug.ucse.pooled`
    /// `[N, d_e]`, `debug.e_upe`, `debug.e_ucbe`, `debug.e_ucse` (f32 `[N, d]`), and the full
    /// retrieval scores `debug.upe.scores`, `debug.ucse.scores` (f32 `[N, centres]`, for near-tie
    /// diagnostics).
    pub debug_outputs: bool,
}

/// One slice of the backbone input `x`, in concatenation order (`docs/model.md` §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputPart {
    /// The embedding of a categorical field.
    Embedding(String),
    /// The normalised dense features.
    Dense,
    /// The behaviour-sequence pooling `seq` (§2).
    Sequence,
    /// `e_upe` (§5).
    Upe,
    /// `e_ucbe` (§5).
    Ucbe,
    /// `e_ucse` (§5).
    Ucse,
}

/// The backbone input layout of a config, in concatenation order.
pub fn input_parts(plan: &Plan) -> Vec<InputPart> {
    let mut parts: Vec<InputPart> = plan
        .embeddings
        .iter()
        .map(|(field, _, _)| InputPart::Embedding(field.clone()))
        .collect();
    if plan.n_dense > 0 {
        parts.push(InputPart::Dense);
    }
    if plan.sequence.is_some() {
        parts.push(InputPart::Sequence);
    }
    if let Some(u) = &plan.uie {
        if u.upe.is_some() {
            parts.push(InputPart::Upe);
        }
        if u.ucbe.is_some() {
            parts.push(InputPart::Ucbe);
        }
        if u.ucse.is_some() {
            parts.push(InputPart::Ucse);
        }
    }
    parts
}

/// The `metadata_props` of the compiled model ([`ModelMetadata`]), keyed and sorted.
pub fn metadata(checkpoint: &Checkpoint) -> Result<BTreeMap<String, String>, CompileError> {
    ModelMetadata::new(&checkpoint.config, checkpoint.content_hash()?)
        .to_props()
        .map_err(|e| CompileError::InvalidGraph(format!("metadata: {e}")))
}

/// Lowers a checkpoint (validated again here, so an in-memory one is checked too) into a graph.
/// Output types are not filled in: run [`Graph::infer_shapes`]. The weights are copied into the
/// graph; [`lower_owned`] moves them instead.
pub fn lower(checkpoint: &Checkpoint) -> Result<Graph, CompileError> {
    lower_with(checkpoint, LowerOptions::default())
}

/// [`lower`] with options.
pub fn lower_with(checkpoint: &Checkpoint, options: LowerOptions) -> Result<Graph, CompileError> {
    let metadata = checked_metadata(checkpoint)?;
    lower_weights(
        &checkpoint.config,
        Weights::Borrowed(&checkpoint.weights),
        metadata,
        options,
    )
}

/// [`lower_with`] consuming the checkpoint: each weight tensor is moved into the graph, so the
/// graph holds the only copy of the tables (the same graph, hence the same bytes).
pub fn lower_owned(checkpoint: Checkpoint, options: LowerOptions) -> Result<Graph, CompileError> {
    let metadata = checked_metadata(&checkpoint)?;
    let Checkpoint {
        config, weights, ..
    } = checkpoint;
    lower_weights(&config, Weights::Owned(weights), metadata, options)
}

fn checked_metadata(checkpoint: &Checkpoint) -> Result<BTreeMap<String, String>, CompileError> {
    checkpoint.config.validate()?;
    validate_weights(&checkpoint.config, &checkpoint.weights)?;
    metadata(checkpoint)
}

fn lower_weights(
    config: &Config,
    weights: Weights<'_>,
    metadata: BTreeMap<String, String>,
    options: LowerOptions,
) -> Result<Graph, CompileError> {
    let plan = Plan::new(config);
    let mut graph = Graph::new(config.model.name.clone());
    graph.metadata = metadata;
    let mut l = Lowerer {
        graph,
        config,
        weights,
        plan: &plan,
        axes: BTreeMap::new(),
        consts: BTreeMap::new(),
        debug: Vec::new(),
    };
    let x = l.backbone_input()?;
    let probs = l.backbone(x)?;
    l.graph.add_output(probs)?;
    if options.debug_outputs {
        for name in DEBUG_OUTPUTS {
            if let Some(&(_, id)) = l.debug.iter().find(|(n, _)| *n == name) {
                l.graph.rename_value(id, name)?;
                l.graph.add_output(id)?;
            }
        }
    }
    Ok(l.graph)
}

/// Where the lowering takes weight tensors from.
enum Weights<'a> {
    /// A borrowed checkpoint's: each tensor is cloned into the graph.
    Borrowed(&'a TensorMap),
    /// An owned map: each tensor is moved into the graph (every weight is used once; later uses
    /// go through [`Lowerer::weight`]'s cache).
    Owned(TensorMap),
}

impl Weights<'_> {
    fn take(&mut self, name: &str) -> Option<Tensor> {
        match self {
            Weights::Borrowed(m) => m.get(name).cloned(),
            Weights::Owned(m) => m.remove(name),
        }
    }
}

/// `Mᵀ` of a 2-D f32 table, computed at compile time.
fn transpose(m: &Tensor) -> Option<Tensor> {
    let (rows, cols) = match m.shape[..] {
        [r, c] => (r, c),
        _ => return None,
    };
    let v = match &m.data {
        TensorData::F32(v) => v,
        TensorData::I64(_) => return None,
    };
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    Some(Tensor::f32(vec![cols, rows], out))
}

struct Lowerer<'a> {
    graph: Graph,
    config: &'a Config,
    weights: Weights<'a>,
    plan: &'a Plan,
    axes: BTreeMap<Vec<i64>, ValueId>,
    consts: BTreeMap<String, ValueId>,
    /// Values that [`LowerOptions::debug_outputs`] exposes, by debug name.
    debug: Vec<(&'static str, ValueId)>,
}

/// The graph values of the raw inputs and embeddings, shared by the parts of `x`.
struct Inputs {
    /// Field → (`row` i64 `[N]`, embedding f32 `[N, d_e]`).
    fields: BTreeMap<String, (ValueId, ValueId)>,
    dense: Option<ValueId>,
    /// `hist_items`, `hist_len`.
    history: Option<(ValueId, ValueId)>,
}

/// What the sequence sub-graph leaves for UCSE.
struct SeqValues {
    /// `H` `[N, L, d_e]`.
    h: ValueId,
    /// The history mask `[N, L]` f32.
    mask: ValueId,
    /// `hist_len` as f32 `[N, 1]`.
    len: ValueId,
}

/// A retrieval's results.
struct Retrieved {
    indices: ValueId,
    keep: ValueId,
    r: Option<ValueId>,
}

fn owner_name(config: &Config, owner: Owner) -> &str {
    match owner {
        Owner::Task(k) => config.tasks.get(k).map(|t| t.name.as_str()).unwrap_or("?"),
        Owner::Shared => "shared",
    }
}

impl Lowerer<'_> {
    /// A checkpoint tensor as an initializer under its own name (added once, then shared).
    fn weight(&mut self, name: &str) -> Result<ValueId, CompileError> {
        if let Some(&id) = self.consts.get(name) {
            return Ok(id);
        }
        let t = self
            .weights
            .take(name)
            .ok_or_else(|| uie_model::ModelError::MissingTensor {
                name: name.to_string(),
                expected: vec![],
            })?;
        let id = self.graph.add_initializer(name, t)?;
        self.consts.insert(name.to_string(), id);
        Ok(id)
    }

    /// A shared constant int64 axes initializer, `const.axes.<a>_<b>`.
    fn axes(&mut self, axes: &[i64]) -> Result<ValueId, CompileError> {
        if let Some(&id) = self.axes.get(axes) {
            return Ok(id);
        }
        let label: Vec<String> = axes.iter().map(|a| a.to_string()).collect();
        let id = self.graph.add_initializer(
            &format!("const.axes.{}", label.join("_")),
            Tensor::i64(vec![axes.len()], axes.to_vec()),
        )?;
        self.axes.insert(axes.to_vec(), id);
        Ok(id)
    }

    fn op(
        &mut self,
        prefix: &str,
        op: Op,
        inputs: &[ValueId],
        step: &str,
    ) -> Result<ValueId, CompileError> {
        self.graph
            .add_op(prefix, op, inputs, &format!("{prefix}.{step}"))
    }

    /// `x · W + b` with the weight and bias tensors `<prefix>.weight`, `<prefix>.bias`.
    fn linear(
        &mut self,
        prefix: &str,
        x: ValueId,
        weight: &str,
        bias: &str,
    ) -> Result<ValueId, CompileError> {
        let w = self.weight(weight)?;
        let b = self.weight(bias)?;
        let mm = self.op(prefix, Op::MatMul, &[x, w], "matmul")?;
        self.op(prefix, Op::Add, &[mm, b], "add")
    }

    /// Every layer of an MLP, each Linear + ReLU.
    fn mlp(&mut self, mlp: &Mlp, mut x: ValueId) -> Result<ValueId, CompileError> {
        for m in 0..mlp.depth() {
            let (w, b) = mlp.layer(m);
            let prefix = format!("{}.fc{m}", mlp.prefix);
            let y = self.linear(&prefix, x, &w, &b)?;
            x = self.op(&prefix, Op::Relu, &[y], "relu")?;
        }
        Ok(x)
    }

    /// A named constant (cached by name): an f32 scalar or any tensor.
    fn constant(&mut self, name: &str, t: Tensor) -> Result<ValueId, CompileError> {
        if let Some(&id) = self.consts.get(name) {
            return Ok(id);
        }
        let id = self.graph.add_initializer(name, t)?;
        self.consts.insert(name.to_string(), id);
        Ok(id)
    }

    /// A shared f32 scalar constant `const.f32.<label>`.
    fn scalar(&mut self, label: &str, v: f32) -> Result<ValueId, CompileError> {
        self.constant(&format!("const.f32.{label}"), Tensor::f32(vec![], vec![v]))
    }

    /// One node `<prefix>/<step>/<OpType>` with one output `<prefix>.<step>`.
    fn step(
        &mut self,
        prefix: &str,
        step: &str,
        op: Op,
        inputs: &[ValueId],
    ) -> Result<ValueId, CompileError> {
        let node = format!("{prefix}/{step}/{}", op.op_type());
        let outs = self
            .graph
            .add_node(&node, op, inputs, &[&format!("{prefix}.{step}")])?;
        outs.first()
            .copied()
            .ok_or_else(|| CompileError::InvalidGraph(format!("node {node}: no output")))
    }

    /// `softmax(s·m + (m − 1)·1e9) · m` along the last axis: rows with no valid entry give
    /// exactly zero weights.
    fn masked_softmax(
        &mut self,
        prefix: &str,
        s: ValueId,
        m: ValueId,
    ) -> Result<ValueId, CompileError> {
        let one = self.scalar("1", 1.0)?;
        let fill = self.scalar("1e9", MASK_FILL)?;
        let sm = self.step(prefix, "masked", Op::Mul, &[s, m])?;
        let m1 = self.step(prefix, "mask_minus_1", Op::Sub, &[m, one])?;
        let f = self.step(prefix, "fill", Op::Mul, &[m1, fill])?;
        let z = self.step(prefix, "logits", Op::Add, &[sm, f])?;
        let a = self.step(prefix, "softmax", Op::Softmax { axis: -1 }, &[z])?;
        self.step(prefix, "weights", Op::Mul, &[a, m])
    }

    /// `Σ_k w_k · V_k`: `w` `[N, K]`, `v` `[N, K, width]` → `[N, width]`.
    fn weighted_sum(
        &mut self,
        prefix: &str,
        step: &str,
        w: ValueId,
        v: ValueId,
    ) -> Result<ValueId, CompileError> {
        let ax1 = self.axes(&[1])?;
        let ax2 = self.axes(&[2])?;
        let w3 = self.step(prefix, &format!("{step}_w3"), Op::Unsqueeze, &[w, ax2])?;
        let wv = self.step(prefix, &format!("{step}_terms"), Op::Mul, &[w3, v])?;
        self.step(prefix, step, Op::ReduceSum { keepdims: false }, &[wv, ax1])
    }

    /// `(v · Unsqueeze(q, 2))[.., 0] · scale`: `v` `[N, K, w]`, `q` `[N, w]` → `[N, K]`, the
    /// dot of each row of `v` with `q` as one batched MatMul `[N, K, w] · [N, w, 1]` (the trailing
    /// unit axis dropped by a one-term ReduceSum).
    fn scores(
        &mut self,
        prefix: &str,
        v: ValueId,
        q: ValueId,
        scale: f32,
    ) -> Result<ValueId, CompileError> {
        let ax2 = self.axes(&[2])?;
        let q3 = self.step(prefix, "query3", Op::Unsqueeze, &[q, ax2])?;
        let dot3 = self.step(prefix, "dots3", Op::MatMul, &[v, q3])?;
        let dot = self.step(
            prefix,
            "dots",
            Op::ReduceSum { keepdims: false },
            &[dot3, ax2],
        )?;
        let c = self.constant(&format!("{prefix}.scale"), Tensor::f32(vec![], vec![scale]))?;
        self.step(prefix, "scores", Op::Mul, &[dot, c])
    }

    /// `Σ_k w_k · V_k` as one batched MatMul `[N, 1, K] · [N, K, width]` (the unit axis dropped by
    /// a one-term ReduceSum): `w` `[N, K]`, `v` `[N, K, width]` → `[N, width]`. The retrieval's
    /// own sum stays [`Self::weighted_sum`] (the form the runtime's fused-retrieval matcher
    /// recognises).
    fn batched_sum(
        &mut self,
        prefix: &str,
        step: &str,
        w: ValueId,
        v: ValueId,
    ) -> Result<ValueId, CompileError> {
        let ax1 = self.axes(&[1])?;
        let w3 = self.step(prefix, &format!("{step}_w3"), Op::Unsqueeze, &[w, ax1])?;
        let wv = self.step(prefix, &format!("{step}_mm"), Op::MatMul, &[w3, v])?;
        self.step(prefix, step, Op::ReduceSum { keepdims: false }, &[wv, ax1])
    }

    /// `R(query, M, K)` of §5 (indices and keep always; `r` when `with_r`).
    fn retrieve(
        &mut self,
        prefix: &str,
        query: ValueId,
        ret: &Retrieval,
        with_r: bool,
    ) -> Result<Retrieved, CompileError> {
        let table = self.weight(&ret.table)?;
        let m =
            self.graph
                .initializer(table)
                .ok_or_else(|| uie_model::ModelError::MissingTensor {
                    name: ret.table.clone(),
                    expected: vec![ret.centres, ret.width],
                })?;
        let transposed = transpose(m).ok_or_else(|| {
            CompileError::InvalidGraph(format!("{}: not a 2-D f32 table", ret.table))
        })?;
        let mt = self.constant(&format!("{prefix}.centres_t"), transposed)?;
        let s = self.step(prefix, "scores", Op::MatMul, &[query, mt])?;
        match prefix {
            "uie.upe" => self.debug.push((debug::UPE_SCORES, s)),
            "uie.ucse" => self.debug.push((debug::UCSE_SCORES, s)),
            _ => {}
        }
        let k = self.constant(
            &format!("{prefix}.k"),
            Tensor::i64(vec![1], vec![ret.k as i64]),
        )?;
        let outs = self.graph.add_node(
            &format!("{prefix}/topk/TopK"),
            Op::TopK,
            &[s, k],
            &[
                &format!("{prefix}.top_scores"),
                &format!("{prefix}.indices"),
            ],
        )?;
        let (s_k, indices) = match outs.as_slice() {
            [a, b] => (*a, *b),
            _ => {
                return Err(CompileError::InvalidGraph(format!(
                    "{prefix}: TopK outputs"
                )))
            }
        };
        let zero = self.scalar("0", 0.0)?;
        let kept = self.step(prefix, "kept", Op::Greater, &[s_k, zero])?;
        let keep = self.step(prefix, "keep", Op::Cast { to: Dtype::F32 }, &[kept])?;
        let r = if with_r {
            let a = self.masked_softmax(prefix, s_k, keep)?;
            let c = self.step(prefix, "centres", Op::Gather { axis: 0 }, &[table, indices])?;
            Some(self.weighted_sum(prefix, "r", a, c)?)
        } else {
            None
        };
        Ok(Retrieved { indices, keep, r })
    }

    /// The graph inputs, exactly as the contract lists them ([`GraphSchema::inputs`]: the
    /// categorical fields, `dense`, `hist_items`, `hist_len`, in that order; dynamic dims `N`, and
    /// `L` for the history width), and every field's row and embedding.
    fn inputs(&mut self) -> Result<Inputs, CompileError> {
        let mut ids = Vec::new();
        let mut dense = None;
        let mut hist_items = None;
        let mut hist_len = None;
        for spec in GraphSchema::from_config(self.config).inputs() {
            let shape = spec
                .dims
                .iter()
                .enumerate()
                .map(|(axis, d)| match (d, axis) {
                    (Some(d), _) => Dim::Fixed(*d),
                    (None, 0) => Dim::Sym(BATCH_DIM.to_string()),
                    (None, _) => Dim::Sym(HIST_DIM.to_string()),
                })
                .collect();
            let dtype = match spec.dtype {
                uie_model::Dtype::F32 => Dtype::F32,
                uie_model::Dtype::I64 => Dtype::I64,
            };
            let id = self
                .graph
                .add_input(&spec.name, TensorType { dtype, shape })?;
            match spec.name.as_str() {
                DENSE => dense = Some(id),
                HIST_ITEMS => hist_items = Some(id),
                HIST_LEN => hist_len = Some(id),
                _ => ids.push(id),
            }
        }
        let history = hist_items.zip(hist_len);
        if ids.len() != self.plan.embeddings.len() {
            return Err(CompileError::InvalidGraph(format!(
                "{} categorical inputs for {} embeddings",
                ids.len(),
                self.plan.embeddings.len()
            )));
        }
        let mut fields = BTreeMap::new();
        for ((field, table, buckets), id) in self.plan.embeddings.iter().zip(ids) {
            let h = self.constant(
                &format!("{table}.buckets"),
                Tensor::i64(vec![], vec![*buckets as i64]),
            )?;
            let row = self.op(table, Op::Mod, &[id, h], "row")?;
            let t = self.weight(table)?;
            let v = self.op(table, Op::Gather { axis: 0 }, &[t, row], "vec")?;
            fields.insert(field.clone(), (row, v));
        }
        Ok(Inputs {
            fields,
            dense,
            history,
        })
    }

    fn field(&self, inputs: &Inputs, field: &str) -> Result<(ValueId, ValueId), CompileError> {
        inputs
            .fields
            .get(field)
            .copied()
            .ok_or_else(|| CompileError::InvalidGraph(format!("field {field} not in plan")))
    }

    /// The sequence target attention (§2): `seq` `[N, d_e]` and the values UCSE reuses.
    fn sequence(&mut self, inputs: &Inputs) -> Result<(ValueId, SeqValues), CompileError> {
        let seq = self
            .plan
            .sequence
            .clone()
            .ok_or_else(|| CompileError::InvalidGraph("no sequence in the plan".into()))?;
        let (items, len) = inputs
            .history
            .ok_or_else(|| CompileError::InvalidGraph("sequence without inputs".into()))?;
        let p = "seq";
        let buckets = self.constant(
            &format!("{}.buckets", seq.table),
            Tensor::i64(
                vec![],
                vec![self.plan.buckets(&seq.item_field).unwrap_or(1) as i64],
            ),
        )?;
        let rows = self.step(p, "rows", Op::Mod, &[items, buckets])?;
        let table = self.weight(&seq.table)?;
        let h = self.step(p, "H", Op::Gather { axis: 0 }, &[table, rows])?;
        // m_j = 1[j < hist_len], with j from an exclusive running sum of ones (L is dynamic).
        let zero = self.scalar("0", 0.0)?;
        let one = self.scalar("1", 1.0)?;
        let rows_f = self.step(p, "rows_f", Op::Cast { to: Dtype::F32 }, &[rows])?;
        let zeros = self.step(p, "zeros", Op::Mul, &[rows_f, zero])?;
        let ones = self.step(p, "ones", Op::Add, &[zeros, one])?;
        let axis1 = self.constant("const.axis.1", Tensor::i64(vec![], vec![1]))?;
        let pos = self.step(
            p,
            "positions",
            Op::CumSum { exclusive: true },
            &[ones, axis1],
        )?;
        let len_f = self.step(p, "len_f", Op::Cast { to: Dtype::F32 }, &[len])?;
        let ax1 = self.axes(&[1])?;
        let len2 = self.step(p, "len", Op::Unsqueeze, &[len_f, ax1])?;
        let valid = self.step(p, "valid", Op::Less, &[pos, len2])?;
        let mask = self.step(p, "mask", Op::Cast { to: Dtype::F32 }, &[valid])?;
        // Target attention with q = e_item · W_q.
        let (_, e_item) = self.field(inputs, &seq.item_field)?;
        let wq = self.weight(&seq.query)?;
        let q = self.step(p, "query", Op::MatMul, &[e_item, wq])?;
        let scale = 1.0 / (self.plan.embed_dim as f32).sqrt();
        let s = self.scores(p, h, q, scale)?;
        let a = self.masked_softmax(p, s, mask)?;
        let pooled = self.batched_sum(p, "pooled", a, h)?;
        Ok((pooled, SeqValues { h, mask, len: len2 }))
    }

    /// `x = concat(parts)`, each part lowered from the raw inputs.
    fn backbone_input(&mut self) -> Result<ValueId, CompileError> {
        let inputs = self.inputs()?;
        let mut seq_values: Option<SeqValues> = None;
        let mut v_u: Option<ValueId> = None;
        let mut parts = Vec::new();
        for part in input_parts(self.plan) {
            let v = match part {
                InputPart::Embedding(field) => self.field(&inputs, &field)?.1,
                InputPart::Dense => {
                    let d = inputs.dense.ok_or_else(|| {
                        CompileError::InvalidGraph("dense part without input".into())
                    })?;
                    let mean = self.weight(DENSE_MEAN)?;
                    let std = self.weight(DENSE_STD)?;
                    let c = self.op(DENSE, Op::Sub, &[d, mean], "centered")?;
                    self.op(DENSE, Op::Div, &[c, std], "normalized")?
                }
                InputPart::Sequence => {
                    let (pooled, values) = self.sequence(&inputs)?;
                    seq_values = Some(values);
                    pooled
                }
                InputPart::Upe => {
                    let v = self.user_vector(&inputs, &mut v_u)?;
                    self.upe(v)?
                }
                InputPart::Ucbe => self.ucbe(&inputs)?,
                InputPart::Ucse => {
                    let values = seq_values.as_ref().ok_or_else(|| {
                        CompileError::InvalidGraph("UCSE needs [features.sequence]".into())
                    })?;
                    let (h, mask, len) = (values.h, values.mask, values.len);
                    self.ucse(&inputs, h, mask, len)?
                }
            };
            parts.push(v);
        }
        match parts.as_slice() {
            [one] => Ok(*one),
            _ => self.op("input", Op::Concat { axis: 1 }, &parts, "x"),
        }
    }

    /// `v_u = T_u(concat(user-field embeddings))`, lowered once.
    fn user_vector(
        &mut self,
        inputs: &Inputs,
        cache: &mut Option<ValueId>,
    ) -> Result<ValueId, CompileError> {
        if let Some(v) = cache {
            return Ok(*v);
        }
        let uie = self
            .plan
            .uie
            .clone()
            .ok_or_else(|| CompileError::InvalidGraph("no [uie] in the plan".into()))?;
        let tower = &uie.user_tower;
        let embeds = tower
            .fields
            .iter()
            .map(|f| self.field(inputs, f).map(|(_, v)| v))
            .collect::<Result<Vec<_>, _>>()?;
        let prefix = tower.hidden.prefix.clone();
        let x = match embeds.as_slice() {
            [one] => *one,
            _ => self.op(&prefix, Op::Concat { axis: 1 }, &embeds, "input")?,
        };
        let h = self.mlp(&tower.hidden, x)?;
        let out_prefix = format!("{prefix}.out");
        let v = self.linear(&out_prefix, h, &tower.out_weight, &tower.out_bias)?;
        *cache = Some(v);
        Ok(v)
    }

    /// `e_upe = G_upe([R(v_u, M_upe, K1), v_u])`.
    fn upe(&mut self, v_u: ValueId) -> Result<ValueId, CompileError> {
        let upe = self
            .plan
            .uie
            .as_ref()
            .and_then(|u| u.upe.clone())
            .ok_or_else(|| CompileError::InvalidGraph("no UPE in the plan".into()))?;
        let p = "uie.upe";
        let got = self.retrieve(p, v_u, &upe.retrieval, true)?;
        let r = got
            .r
            .ok_or_else(|| CompileError::InvalidGraph("UPE retrieval without r".into()))?;
        self.debug.push((debug::UPE_INDICES, got.indices));
        self.debug.push((debug::UPE_R, r));
        let x = self.step(p, "input", Op::Concat { axis: 1 }, &[r, v_u])?;
        let e = self.mlp(&upe.gen, x)?;
        self.debug.push((debug::E_UPE, e));
        Ok(e)
    }

    /// `e_ucbe = G_ucbe(P[user_id mod H_user])`.
    fn ucbe(&mut self, inputs: &Inputs) -> Result<ValueId, CompileError> {
        let ucbe = self
            .plan
            .uie
            .as_ref()
            .and_then(|u| u.ucbe.clone())
            .ok_or_else(|| CompileError::InvalidGraph("no UCBE in the plan".into()))?;
        let (row, _) = self.field(inputs, &ucbe.user_field)?;
        if self.plan.buckets(&ucbe.user_field) != Some(ucbe.users) {
            return Err(CompileError::InvalidGraph(format!(
                "{}: {} rows, but {} has other buckets",
                ucbe.personal, ucbe.users, ucbe.user_field
            )));
        }
        let table = self.weight(&ucbe.personal)?;
        let mem = self.step("uie.ucbe", "memory", Op::Gather { axis: 0 }, &[table, row])?;
        let e = self.mlp(&ucbe.gen, mem)?;
        self.debug.push((debug::E_UCBE, e));
        Ok(e)
    }

    /// `e_ucse` (§5): retrieval by the masked history mean, target attention over the kept centres.
    fn ucse(
        &mut self,
        inputs: &Inputs,
        h: ValueId,
        mask: ValueId,
        len: ValueId,
    ) -> Result<ValueId, CompileError> {
        let ucse = self
            .plan
            .uie
            .as_ref()
            .and_then(|u| u.ucse.clone())
            .ok_or_else(|| CompileError::InvalidGraph("no UCSE in the plan".into()))?;
        let item_field = self
            .plan
            .sequence
            .as_ref()
            .map(|s| s.item_field.clone())
            .ok_or_else(|| CompileError::InvalidGraph("UCSE needs a sequence".into()))?;
        let p = "uie.ucse";
        // q_u = Σ_{j < hist_len} H_j / max(hist_len, 1).
        let one = self.scalar("1", 1.0)?;
        let sum = self.batched_sum(p, "history_sum", mask, h)?;
        let count = self.step(p, "count", Op::Max, &[len, one])?;
        let q_u = self.step(p, "q_u", Op::Div, &[sum, count])?;
        let got = self.retrieve(p, q_u, &ucse.retrieval, false)?;
        self.debug.push((debug::UCSE_INDICES, got.indices));
        let table = self.weight(&ucse.retrieval.table)?;
        let c = self.step(p, "centres", Op::Gather { axis: 0 }, &[table, got.indices])?;
        let (_, e_item) = self.field(inputs, &item_field)?;
        let wt = self.weight(&ucse.attn)?;
        let t = self.step(p, "target", Op::MatMul, &[e_item, wt])?;
        let scale = 1.0 / (self.plan.embed_dim as f32).sqrt();
        let att = format!("{p}.attn");
        let score = self.scores(&att, c, t, scale)?;
        let b = self.masked_softmax(&att, score, got.keep)?;
        let pooled = self.batched_sum(p, "pooled", b, c)?;
        self.debug.push((debug::UCSE_POOLED, pooled));
        let e = self.mlp(&ucse.gen, pooled)?;
        self.debug.push((debug::E_UCSE, e));
        Ok(e)
    }

    /// `softmax(h·W + b)` mixing the given expert outputs: `Σ_j g_j · expert_j`.
    fn gate(
        &mut self,
        gate: &Gate,
        h: ValueId,
        experts: &[ValueId],
        out: &str,
    ) -> Result<ValueId, CompileError> {
        let prefix = gate
            .weight
            .strip_suffix(".weight")
            .unwrap_or(&gate.weight)
            .to_string();
        let logits = self.linear(&prefix, h, &gate.weight, &gate.bias)?;
        let g = self.op(&prefix, Op::Softmax { axis: 1 }, &[logits], "softmax")?;
        let ax2 = self.axes(&[2])?;
        let g3 = self.op(&prefix, Op::Unsqueeze, &[g, ax2], "unsqueeze")?;
        let stack = self.op(&prefix, Op::Concat { axis: 1 }, experts, "experts")?;
        let weighted = self.op(&prefix, Op::Mul, &[g3, stack], "weighted")?;
        let ax1 = self.axes(&[1])?;
        self.graph.add_op(
            &prefix,
            Op::ReduceSum { keepdims: false },
            &[weighted, ax1],
            out,
        )
    }

    /// The PLE levels and the towers: `x` → `probs [N, T]`.
    fn backbone(&mut self, x: ValueId) -> Result<ValueId, CompileError> {
        let plan = self.plan;
        let t = plan.towers.len();
        let mut task_in = vec![x; t];
        let mut shared_in = x;
        for (l, level) in plan.levels.iter().enumerate() {
            // Expert outputs, unsqueezed to [N, 1, D] for stacking, by owner.
            let mut outs: BTreeMap<(usize, usize), ValueId> = BTreeMap::new();
            let key = |o: Owner| match o {
                Owner::Task(k) => k,
                Owner::Shared => usize::MAX,
            };
            let ax1 = self.axes(&[1])?;
            let experts = level
                .specific
                .iter()
                .enumerate()
                .flat_map(|(k, es)| {
                    es.iter()
                        .enumerate()
                        .map(move |(j, e)| (Owner::Task(k), j, e))
                })
                .chain(
                    level
                        .shared
                        .iter()
                        .enumerate()
                        .map(|(j, e)| (Owner::Shared, j, e)),
                );
            for (owner, j, mlp) in experts {
                let input = match owner {
                    Owner::Task(k) => task_in[k],
                    Owner::Shared => shared_in,
                };
                let y = self.mlp(mlp, input)?;
                let y3 = self.op(&mlp.prefix, Op::Unsqueeze, &[y, ax1], "unsqueeze")?;
                outs.insert((key(owner), j), y3);
            }
            let pick = |gate: &Gate| -> Result<Vec<ValueId>, CompileError> {
                gate.experts
                    .iter()
                    .map(|&(o, j)| {
                        outs.get(&(key(o), j)).copied().ok_or_else(|| {
                            CompileError::InvalidGraph(format!(
                                "{}: expert {j} of {o:?} missing",
                                gate.weight
                            ))
                        })
                    })
                    .collect()
            };
            let mut next = Vec::with_capacity(t);
            for (k, gate) in level.task_gates.iter().enumerate() {
                let es = pick(gate)?;
                let out = format!("ple.l{l}.{}.out", owner_name(self.config, Owner::Task(k)));
                next.push(self.gate(gate, task_in[k], &es, &out)?);
            }
            if let Some(gate) = &level.shared_gate {
                let es = pick(gate)?;
                shared_in = self.gate(gate, shared_in, &es, &format!("ple.l{l}.shared.out"))?;
            }
            task_in = next;
        }
        let mut columns = Vec::with_capacity(t);
        for (k, tower) in plan.towers.iter().enumerate() {
            let h = self.mlp(&tower.hidden, task_in[k])?;
            let prefix = tower
                .out_weight
                .strip_suffix(".weight")
                .unwrap_or(&tower.out_weight)
                .to_string();
            let logit = self.linear(&prefix, h, &tower.out_weight, &tower.out_bias)?;
            columns.push(self.op(&prefix, Op::Sigmoid, &[logit], "prob")?);
        }
        self.graph
            .add_op(PROBS, Op::Concat { axis: 1 }, &columns, PROBS)
    }
}

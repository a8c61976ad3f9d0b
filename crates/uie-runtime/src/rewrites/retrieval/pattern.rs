//! Finding the standard retrieval sub-graphs in a typed tract model and replacing them by
//! [`UieRetrieval`].
//!
//! The match runs on the typed model as tract translates it from ONNX (before declutter, where
//! nodes still map one to one onto the ONNX nodes of `uie-compile`'s lowering), and only by
//! structure and constants — never by node names:
//!
//! 1. **Core** (required): a `Topk` on the last axis of a rank-2 f32 tensor, `largest`, with a
//!    constant K (`1 ≤ K ≤ N`), whose input is a 2-D `EinSum` `mk,kn->mn` (ONNX `MatMul`) of an
//!    f32 `[B, d]` query by a constant f32 `[d, N]` table `Mᵀ`. Gives `Values` and `Indices`.
//! 2. **Keep**: `Cast<f32>(GT(values, c))` with `c` a one-element constant equal to 0.
//! 3. **Weights**: the masked softmax of the values,
//!    `Mul(Softmax_last(Add(Mul(values, keep), Mul(Sub(keep, 1), F))), keep)` with 1 and F
//!    one-element constants, `F ≥ 200` (then `exp(−F − max)` is exactly 0 in f32, so the fill is
//!    the same as a mask), any operand order for Mul and Add.
//! 4. **Gathered**: `Gather(axis 0)` of `indices` (optionally through an i64→i64 `Cast`) from a
//!    constant f32 `[N, d]` table exactly equal to the transpose of `Mᵀ`.
//! 5. **Sum**: `Rm(1)(Reduce<Sum>[1](Mul(Add(2)(weights), gathered)))`.
//!
//! For a table of fewer than [`BLOCKED_MIN_CENTRES`] centres the fused op takes the scores
//! `q · Mᵀ` of the matched MatMul as its input (the MatMul stays in the graph and tract optimises
//! it like any other): tract's matrix kernels are chosen at run time for the CPU (AVX2/FMA,
//! AVX-512), which safe Rust built for the baseline x86-64 target cannot use, and measured
//! interleaved on the whole MovieLens model this was faster at batch 16 and 256 and equal at
//! batch 1 than scoring in the op with a blocked safe-Rust kernel (`docs/perf-log.md`). For a larger table the `[B, N]` scores tensor itself is the cost
//! (67 MB at B = 256, N = 65,536: written, faulted in page by page, read back), so the op takes
//! the MatMul's query instead and scores it with the same MatMul split into one-node tract plans
//! over column chunks of `Mᵀ` ([`CHUNK_TABLE_BYTES`] each), a block of rows at a time, folding
//! each block into the rows' K best ([`RetrievalInput::QueryBlocks`],
//! [`super::kernel::ScoredRows`]).
//!
//! Only the outlets of matched nodes that have consumers outside the match (or are model outputs)
//! are rewired to the fused op; everything else is left in place, and nodes left without
//! consumers are pruned by tract later. A part that does not match is simply not fused (its
//! standard nodes keep running); a core that does not match leaves the sub-graph unchanged. A
//! rewiring that tract refuses (facts that disagree) skips that retrieval.

use std::collections::BTreeSet;
use std::sync::Arc;

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{Gather, Topk};
use tract_onnx::tract_core::ops::change_axes::AxisOp;

use super::kernel::CentreTable;
use super::op::{BlockScorers, ChunkScorer, RetrievalInput, RetrievalOutput, UieRetrieval};
use crate::rewrites::graph::{
    bin_name, consumers, find_bin, is_cast_to, is_f32_einsum, is_softmax_1, is_used, out0,
    scalar_f32, summed_over_1,
};
use crate::rewrites::{patched, Patch};

/// Smallest accepted mask fill: `exp(−200)` is 0 in f32.
const MIN_FILL: f32 = 200.0;

/// Tables of at least this many centres are scored in blocks inside the op
/// ([`RetrievalInput::QueryBlocks`]); smaller ones by the graph's MatMul.
pub const BLOCKED_MIN_CENTRES: usize = 4096;

/// Bytes of the centre table per chunk of [`RetrievalInput::QueryBlocks`] (a chunk of `C`
/// centres of width `d` is `4·C·d` bytes): it stays in the L2 cache while every row block is
/// scored against it.
pub const CHUNK_TABLE_BYTES: usize = 1 << 19;

/// The block scorers of the matched MatMul (`scores`' node: the query `[R, d]` by its constant
/// `Mᵀ` `[d, N]`): one one-node plan for the whole table and one per column chunk of `Mᵀ` (when
/// there is more than one), with a free row count `R`, each optimised as tract optimises any
/// model.
fn block_scorers(model: &TypedModel, scores: OutletId) -> TractResult<BlockScorers> {
    let mm = model.node(scores.node);
    let [query, table_t] = mm.inputs.as_slice() else {
        bail!("the scores MatMul has {} inputs", mm.inputs.len());
    };
    let d = model.outlet_fact(*query)?.shape[1].to_usize()?;
    let Some(table) = model.outlet_fact(*table_t)?.konst.clone() else {
        bail!("the scores MatMul's table is not a constant");
    };
    let n = table.shape()[1];
    let scorer = |first: usize, len: usize| -> TractResult<ChunkScorer> {
        let mut inner = TypedModel::default();
        let rows = inner.sym("R");
        let q = inner.add_source("query", f32::fact([TDim::Sym(rows), TDim::from(d)]))?;
        let part = if first == 0 && len == n {
            table.clone()
        } else {
            table.slice(1, first, first + len)?.into_arc_tensor()
        };
        let t = inner.add_const("centres_t", part)?;
        let s = inner.wire_node("scores", mm.op.clone(), &[q, t])?;
        inner.select_output_outlets(&s)?;
        Ok(ChunkScorer {
            first,
            len,
            plan: inner.into_optimized()?.into_runnable()?,
        })
    };
    let whole = scorer(0, n)?;
    let per_chunk = (CHUNK_TABLE_BYTES / (4 * d.max(1))).max(1);
    let chunks = if per_chunk >= n {
        vec![whole.clone()]
    } else {
        let mut chunks = Vec::new();
        let mut first = 0;
        while first < n {
            let len = per_chunk.min(n - first);
            chunks.push(scorer(first, len)?);
            first += len;
        }
        chunks
    };
    Ok(BlockScorers { whole, chunks })
}

/// One matched retrieval: the scores outlet, the op's parameters, and which outlets it replaces.
struct Match {
    name: String,
    scores: OutletId,
    k: usize,
    table: CentreTable,
    with_weights: bool,
    shunts: Vec<(OutletId, RetrievalOutput)>,
}

/// The f32 data of a constant outlet of the given rank, with its shape.
fn const_f32(model: &TypedModel, outlet: OutletId, rank: usize) -> Option<(Vec<usize>, Vec<f32>)> {
    let t = model.outlet_fact(outlet).ok()?.konst.clone()?;
    if t.datum_type() != f32::datum_type() || t.rank() != rank {
        return None;
    }
    let v = t.to_plain_array_view::<f32>().ok()?;
    Some((t.shape().to_vec(), v.iter().copied().collect()))
}

/// Step 1: the TopK and its MatMul.
fn match_core(model: &TypedModel, topk_node: &TypedNode) -> Option<Match> {
    let topk = topk_node.op_as::<Topk>()?;
    let [scores, k_in] = topk_node.inputs.as_slice() else {
        return None;
    };
    let scores_fact = model.outlet_fact(*scores).ok()?;
    if !topk.largest || scores_fact.rank() != 2 || topk.axis != 1 {
        return None;
    }
    if scores_fact.datum_type != f32::datum_type() {
        return None;
    }
    let k_t = model.outlet_fact(*k_in).ok()?.konst.clone()?;
    if k_t.len() != 1 {
        return None;
    }
    let k = usize::try_from(k_t.cast_to_scalar::<i64>().ok()?).ok()?;
    let mm = model.node(scores.node);
    if !is_f32_einsum(mm, "mk,kn->mn") || topk_node.outputs.len() != 2 {
        return None;
    }
    let [query, table_t] = mm.inputs.as_slice() else {
        return None;
    };
    let (shape, data) = const_f32(model, *table_t, 2)?;
    let (d, n) = (shape[0], shape[1]);
    let qf = model.outlet_fact(*query).ok()?;
    if qf.datum_type != f32::datum_type()
        || qf.rank() != 2
        || qf.shape[1].to_usize().ok()? != d
        || k == 0
        || k > n
    {
        return None;
    }
    let table = CentreTable::from_transposed(d, n, data).ok()?;
    Some(Match {
        name: format!("{}.fused", topk_node.name),
        scores: *scores,
        k,
        table,
        with_weights: false,
        shunts: vec![
            (OutletId::new(topk_node.id, 0), RetrievalOutput::Values),
            (OutletId::new(topk_node.id, 1), RetrievalOutput::Indices),
        ],
    })
}

/// Step 2: every `Cast<f32>(values > 0)`.
fn match_keep(model: &TypedModel, values: OutletId) -> Vec<OutletId> {
    let mut keep = Vec::new();
    for gt in consumers(model, values) {
        if bin_name(gt) != Some("GT") || gt.inputs.first() != Some(&values) {
            continue;
        }
        let Some(&zero) = gt.inputs.get(1) else {
            continue;
        };
        if scalar_f32(model, zero) != Some(0.0) {
            continue;
        }
        for cast in consumers(model, out0(gt)) {
            if is_cast_to(cast, f32::datum_type()) {
                keep.push(out0(cast));
            }
        }
    }
    keep
}

/// Step 3: the masked softmax of `values` by a keep outlet; returns the weights outlet.
fn match_weights(model: &TypedModel, values: OutletId, keeps: &[OutletId]) -> Option<OutletId> {
    let is_keep = |o: OutletId| keeps.contains(&o);
    for &keep in keeps {
        let Some(masked) = find_bin(model, values, "Mul", |o| o == keep) else {
            continue;
        };
        let Some(minus) = consumers(model, keep).into_iter().find(|n| {
            bin_name(n) == Some("Sub")
                && n.inputs.first() == Some(&keep)
                && n.inputs.get(1).and_then(|&o| scalar_f32(model, o)) == Some(1.0)
        }) else {
            continue;
        };
        let Some(fill) = find_bin(model, out0(minus), "Mul", |o| {
            scalar_f32(model, o).is_some_and(|f| f.is_finite() && f >= MIN_FILL)
        }) else {
            continue;
        };
        let Some(logits) = find_bin(model, out0(masked), "Add", |o| o == out0(fill)) else {
            continue;
        };
        let Some(sm) = consumers(model, out0(logits))
            .into_iter()
            .find(|n| is_softmax_1(n))
        else {
            continue;
        };
        if let Some(w) = find_bin(model, out0(sm), "Mul", is_keep) {
            return Some(out0(w));
        }
    }
    None
}

/// Step 4: every `Gather(table, indices)` from the retrieval's own table.
fn match_gathers(model: &TypedModel, indices: OutletId, table: &CentreTable) -> Vec<OutletId> {
    let mut direct = vec![indices];
    for n in consumers(model, indices) {
        if is_cast_to(n, i64::datum_type()) {
            direct.push(out0(n));
        }
    }
    let mut found = Vec::new();
    for idx in direct {
        for g in consumers(model, idx) {
            let Some(op) = g.op_as::<Gather>() else {
                continue;
            };
            if op.axis != 0 || op.output_type.is_some() || g.inputs.get(1) != Some(&idx) {
                continue;
            }
            let Some((shape, data)) = g.inputs.first().and_then(|&t| const_f32(model, t, 2)) else {
                continue;
            };
            if shape == [table.centres(), table.width()] && data == table.rows() {
                found.push(out0(g));
            }
        }
    }
    found
}

/// Step 5: `Σ_k weights_k · gathered_k`; returns the sum outlet.
fn match_sum(model: &TypedModel, weights: OutletId, gathered: &[OutletId]) -> Option<OutletId> {
    for unsq in consumers(model, weights) {
        if unsq.op_as::<AxisOp>() != Some(&AxisOp::Add(2)) {
            continue;
        }
        let Some(terms) = find_bin(model, out0(unsq), "Mul", |o| gathered.contains(&o)) else {
            continue;
        };
        if let Some(sum) = summed_over_1(model, out0(terms)) {
            return Some(sum);
        }
    }
    None
}

fn match_retrieval(model: &TypedModel, topk: &TypedNode) -> Option<Match> {
    let mut m = match_core(model, topk)?;
    let values = OutletId::new(topk.id, 0);
    let indices = OutletId::new(topk.id, 1);
    let keeps = match_keep(model, values);
    for &k in &keeps {
        m.shunts.push((k, RetrievalOutput::Keep));
    }
    let gathered = match_gathers(model, indices, &m.table);
    for &g in &gathered {
        m.shunts.push((g, RetrievalOutput::Gathered));
    }
    if let Some(w) = match_weights(model, values, &keeps) {
        m.with_weights = true;
        m.shunts.push((w, RetrievalOutput::Weights));
        if let Some(s) = match_sum(model, w, &gathered) {
            m.shunts.push((s, RetrievalOutput::Sum));
        }
    }
    Some(m)
}

/// The patch of one match, rewiring only the outlets whose kind is in `keep` (all when `None`),
/// and the kinds its fused node outputs; `None` when there is nothing to rewire or tract refuses
/// to wire the op.
fn build(
    model: &TypedModel,
    m: &Match,
    input: &RetrievalInput,
    keep: Option<&BTreeSet<RetrievalOutput>>,
) -> Option<(TypedModelPatch, Vec<RetrievalOutput>)> {
    let shunts: Vec<(OutletId, RetrievalOutput)> = m
        .shunts
        .iter()
        .copied()
        .filter(|(o, kind)| is_used(model, *o) && keep.is_none_or(|k| k.contains(kind)))
        .collect();
    let outputs: Vec<RetrievalOutput> = shunts
        .iter()
        .map(|(_, kind)| *kind)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if outputs.is_empty() {
        return None;
    }
    let op = UieRetrieval {
        k: m.k,
        centres: Arc::new(m.table.clone()),
        with_weights: m.with_weights,
        outputs: outputs.clone(),
        input: input.clone(),
    };
    let mut patch = TypedModelPatch::new(format!("fuse retrieval {}", m.name));
    // The fused op reads the scores of the graph's own MatMul, or for a large table the MatMul's
    // query (see the module doc).
    let q = match op.input {
        RetrievalInput::Scores => patch.tap_model(model, m.scores).ok()?,
        RetrievalInput::QueryBlocks(_) => {
            let query = *model.node(m.scores.node).inputs.first()?;
            patch.tap_model(model, query).ok()?
        }
    };
    let wired = patch.wire_node(&m.name, op, &[q]).ok()?;
    for (outlet, kind) in &shunts {
        let slot = outputs.iter().position(|o| o == kind)?;
        let by = *wired.get(slot)?;
        patch.shunt_outside(model, *outlet, by).ok()?;
    }
    Some((patch, outputs))
}

/// The kinds a model patched by [`build`] actually reads from the fused node (outlets consumed
/// only inside the matched sub-graph die with it when the patched model is compacted).
fn used_outputs(
    model: &TypedModel,
    m: &Match,
    patch: &TypedModelPatch,
    outputs: &[RetrievalOutput],
) -> Option<BTreeSet<RetrievalOutput>> {
    let out = patched(model, patch.clone())?;
    let node = out.nodes().iter().rev().find(|n| {
        n.op_as::<UieRetrieval>()
            .is_some_and(|op| op.outputs == outputs && n.name.starts_with(&m.name))
    })?;
    Some(
        outputs
            .iter()
            .enumerate()
            .filter(|(slot, _)| is_used(&out, OutletId::new(node.id, *slot)))
            .map(|(_, kind)| *kind)
            .collect(),
    )
}

/// The patch replacing the retrieval sub-graph of the `TopK` node `topk` by one [`UieRetrieval`]
/// node (counting one); `None` when the core does not match or tract refuses the rewiring.
///
/// Two rounds: the first rewires everything matched and finds which fused outputs stay in use;
/// the second rewires only those, so the op computes no output that nothing reads (kept when it
/// reads the same outputs again, else the first round is).
pub(super) fn patch(model: &TypedModel, topk: &TypedNode) -> Option<Patch> {
    let m = match_retrieval(model, topk)?;
    let input = if m.table.centres() >= BLOCKED_MIN_CENTRES {
        RetrievalInput::QueryBlocks(block_scorers(model, m.scores).ok()?)
    } else {
        RetrievalInput::Scores
    };
    let (first, outputs) = build(model, &m, &input, None)?;
    let used = used_outputs(model, &m, &first, &outputs)?;
    let second = build(model, &m, &input, Some(&used)).and_then(|(second, outputs)| {
        let again = used_outputs(model, &m, &second, &outputs)?;
        (again == used).then_some(second)
    });
    Some(Patch {
        patch: second.unwrap_or(first),
        count: 1,
    })
}

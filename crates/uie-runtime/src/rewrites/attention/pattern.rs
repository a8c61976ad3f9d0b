//! Finding the target-attention sub-graphs over gathered table rows in a typed tract model and
//! replacing them by [`UieAttention`] (module [`super::op`]).
//!
//! Like the retrieval rewrite ([`crate::rewrites::retrieval::pattern`]) the match runs on the typed model as tract
//! translates it from ONNX (before declutter) and only by structure and constants, never by node
//! names. Anchored on every last-axis `Softmax` of a rank-2 f32 tensor:
//!
//! 1. **Masked softmax**: `weights = Mul(Softmax(Add(Mul(s, m), Mul(Sub(m, 1), F))), m)` with 1 and
//!    `F` one-element constants, any operand order for Mul and Add.
//! 2. **Scores**: `s = Mul(RmAxis(2)(Reduce<Sum>[2](EinSum amk,akn->amn(H, AddAxis(2)(q)))), c)`
//!    with `c` a one-element constant and `q` f32 `[N, d]`.
//! 3. **Rows**: `H = Gather(axis 0)(T, idx)` of a constant, finite f32 table `T` `[R, d]`, `idx`
//!    optionally through an i64 `Cast`, from either
//!    - the expansion tract makes of ONNX `Mod(x, B)` (`graph::hashed_mod`),
//!      `0 < B ≤ R`: the op reads `x` and reduces it itself; or
//!    - any i64 `[N, L]` value (its range is checked at run time, as the Gather does).
//! 4. **Mask**: either the length mask `m = Cast<f32>(LT(CumSum_excl,axis 1(Add(Mul(Cast<f32>(idx
//!    source), 0), 1)), len))` with `len` f32 `[N, 1]` (the op reads `len`), or any f32 `[N, L]`
//!    value (the op reads it).
//! 5. **Pooling** (required): `RmAxis(1)(Reduce<Sum>[1](EinSum amk,akn->amn(AddAxis(1)(weights),
//!    H)))`.
//! 6. **Masked sum** (optional): the same pooling of `m` instead of the weights (UCSE's history
//!    sum, which reads the sequence's `H` and mask).
//!
//! The pooled (and masked-sum) outlets are rewired to the fused op; the standard nodes left
//! without consumers are pruned by tract. Anything else consuming `H`, the mask or the weights
//! keeps its standard nodes, so the result is unchanged whatever else the graph reads.

use std::sync::Arc;

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{CumSum, Gather};
use tract_onnx::tract_core::ops::change_axes::AxisOp;

use super::op::{AttentionOutput, Index, Mask, Spec, UieAttention};
use crate::rewrites::graph::{
    bin_name, by_scalar, consumers, find_bin, hashed_mod, is_cast_to, is_f32_einsum, is_softmax_1,
    is_sum_over, is_used, other_input, out0, scalar_f32, summed_over_1,
};
use crate::rewrites::Patch;

/// ONNX's batched `MatMul` as tract types it.
const BATCHED: &str = "amk,akn->amn";

/// One matched attention: the op's inputs and parameters, and the outlets it replaces.
struct Match {
    name: String,
    ids: OutletId,
    mask: OutletId,
    query: OutletId,
    table: Arc<Tensor>,
    spec: Spec,
    shunts: Vec<(OutletId, AttentionOutput)>,
}

/// `RmAxis(1)(Reduce<Sum>[1](EinSum(AddAxis(1)(w), rows)))`: the pooled outlet.
fn match_pooling(model: &TypedModel, w: OutletId, rows: OutletId) -> Option<OutletId> {
    for w3 in consumers(model, w) {
        if w3.op_as::<AxisOp>() != Some(&AxisOp::Add(1)) {
            continue;
        }
        for mm in consumers(model, out0(w3)) {
            if !is_f32_einsum(mm, BATCHED) || mm.inputs.as_slice() != [out0(w3), rows] {
                continue;
            }
            if let Some(pooled) = summed_over_1(model, out0(mm)) {
                return Some(pooled);
            }
        }
    }
    None
}

/// Step 1: from the softmax, `(s, m, weights, F)`.
fn match_softmax(
    model: &TypedModel,
    sm: &TypedNode,
) -> Option<(OutletId, OutletId, OutletId, f32)> {
    let [logits] = sm.inputs.as_slice() else {
        return None;
    };
    let fact = model.outlet_fact(*logits).ok()?;
    if !is_softmax_1(sm) || fact.rank() != 2 || fact.datum_type != f32::datum_type() {
        return None;
    }
    let add = model.node(logits.node);
    if bin_name(add) != Some("Add") {
        return None;
    }
    let [a, b] = add.inputs.as_slice() else {
        return None;
    };
    // One Add operand is Mul(s, m), the other Mul(Sub(m, 1), F).
    for (masked, fill) in [(*a, *b), (*b, *a)] {
        let fill_node = model.node(fill.node);
        let masked_node = model.node(masked.node);
        if bin_name(masked_node) != Some("Mul") {
            continue;
        }
        let Some((sub, f)) = by_scalar(model, fill_node, "Mul") else {
            continue;
        };
        if !f.is_finite() {
            continue;
        }
        let sub_node = model.node(sub.node);
        if bin_name(sub_node) != Some("Sub")
            || sub_node.inputs.get(1).and_then(|&o| scalar_f32(model, o)) != Some(1.0)
        {
            continue;
        }
        let Some(&m) = sub_node.inputs.first() else {
            continue;
        };
        let Some(s) = other_input(masked_node, m) else {
            continue;
        };
        let Some(weights) = find_bin(model, out0(sm), "Mul", |o| o == m) else {
            continue;
        };
        return Some((s, m, out0(weights), f));
    }
    None
}

/// Step 2: from the scores, `(H, q, scale)`.
fn match_scores(model: &TypedModel, s: OutletId) -> Option<(OutletId, OutletId, f32)> {
    let (dots, scale) = by_scalar(model, model.node(s.node), "Mul")?;
    let rm = model.node(dots.node);
    if rm.op_as::<AxisOp>() != Some(&AxisOp::Rm(2)) {
        return None;
    }
    let red = model.node(rm.inputs.first()?.node);
    if !is_sum_over(red, 2) {
        return None;
    }
    let mm = model.node(red.inputs.first()?.node);
    if !is_f32_einsum(mm, BATCHED) {
        return None;
    }
    let [h, q3] = mm.inputs.as_slice() else {
        return None;
    };
    let unsq = model.node(q3.node);
    if unsq.op_as::<AxisOp>() != Some(&AxisOp::Add(2)) {
        return None;
    }
    Some((*h, *unsq.inputs.first()?, scale))
}

/// Step 3: from `H`, `(ids, index rule, the idx source outlet, table)`.
fn match_rows(model: &TypedModel, h: OutletId) -> Option<(OutletId, Index, OutletId, Arc<Tensor>)> {
    let g = model.node(h.node);
    let op = g.op_as::<Gather>()?;
    if op.axis != 0 || op.output_type.is_some() {
        return None;
    }
    let [table, idx] = g.inputs.as_slice() else {
        return None;
    };
    let t = model.outlet_fact(*table).ok()?.konst.clone()?;
    if t.datum_type() != f32::datum_type() || t.rank() != 2 || t.shape()[1] == 0 {
        return None;
    }
    if !t
        .to_plain_array_view::<f32>()
        .ok()?
        .iter()
        .all(|x| x.is_finite())
    {
        return None;
    }
    let idx_node = model.node(idx.node);
    let src = if is_cast_to(idx_node, i64::datum_type()) {
        *idx_node.inputs.first()?
    } else {
        *idx
    };
    let (ids, index) = match hashed_mod(model, model.node(src.node)) {
        Some((x, b)) if usize::try_from(b).is_ok_and(|b| b <= t.shape()[0]) => {
            (x, Index::Modulo(b))
        }
        Some(_) => return None,
        None => (src, Index::Direct),
    };
    let f = model.outlet_fact(ids).ok()?;
    if f.datum_type != i64::datum_type() || f.rank() != 2 {
        return None;
    }
    Some((ids, index, src, t))
}

/// Step 4: the length mask `m` built from the shape of `src`: `len` `[N, 1]`.
fn match_length_mask(model: &TypedModel, m: OutletId, src: OutletId) -> Option<OutletId> {
    let cast = model.node(m.node);
    if !is_cast_to(cast, f32::datum_type()) {
        return None;
    }
    let lt = model.node(cast.inputs.first()?.node);
    if bin_name(lt) != Some("LT") {
        return None;
    }
    let [pos, len] = lt.inputs.as_slice() else {
        return None;
    };
    let cs = model.node(pos.node);
    let c = cs.op_as::<CumSum>()?;
    if c.axis != 1 || !c.exclusive || c.reverse {
        return None;
    }
    let (zeros, one) = by_scalar(model, model.node(cs.inputs.first()?.node), "Add")?;
    let (rows_f, zero) = by_scalar(model, model.node(zeros.node), "Mul")?;
    if one != 1.0 || zero != 0.0 {
        return None;
    }
    let rf = model.node(rows_f.node);
    if !is_cast_to(rf, f32::datum_type()) || rf.inputs.first() != Some(&src) {
        return None;
    }
    let lf = model.outlet_fact(*len).ok()?;
    if lf.datum_type != f32::datum_type() || lf.rank() != 2 || lf.shape[1] != TDim::from(1) {
        return None;
    }
    Some(*len)
}

fn match_attention(model: &TypedModel, sm: &TypedNode) -> Option<Match> {
    let (s, m, weights, fill) = match_softmax(model, sm)?;
    let (h, query, scale) = match_scores(model, s)?;
    let (ids, index, src, table) = match_rows(model, h)?;
    let d = table.shape()[1];
    let qf = model.outlet_fact(query).ok()?;
    let idf = model.outlet_fact(ids).ok()?;
    if qf.datum_type != f32::datum_type()
        || qf.rank() != 2
        || qf.shape[1] != TDim::from(d)
        || qf.shape[0] != idf.shape[0]
    {
        return None;
    }
    let (mask, mask_rule) = match match_length_mask(model, m, src) {
        Some(len) => (len, Mask::Length),
        None => {
            let mf = model.outlet_fact(m).ok()?;
            if mf.datum_type != f32::datum_type() || mf.shape != idf.shape {
                return None;
            }
            (m, Mask::Explicit)
        }
    };
    if model.outlet_fact(mask).ok()?.shape[0] != idf.shape[0] {
        return None;
    }
    let pooled = match_pooling(model, weights, h)?;
    let mut shunts = vec![(pooled, AttentionOutput::Pooled)];
    if let Some(sum) = match_pooling(model, m, h) {
        shunts.push((sum, AttentionOutput::MaskedSum));
    }
    Some(Match {
        name: format!("{}.fused_attention", sm.name),
        ids,
        mask,
        query,
        table,
        spec: Spec {
            index,
            mask: mask_rule,
            scale,
            fill,
        },
        shunts,
    })
}

/// The patch replacing the attention anchored at the `Softmax` node `sm` by one [`UieAttention`]
/// node (counting one); `None` when it does not match or tract refuses the rewiring.
pub(super) fn patch(model: &TypedModel, sm: &TypedNode) -> Option<Patch> {
    let m = match_attention(model, sm)?;
    let shunts: Vec<(OutletId, AttentionOutput)> = m
        .shunts
        .iter()
        .copied()
        .filter(|(o, _)| is_used(model, *o))
        .collect();
    if shunts.is_empty() {
        return None;
    }
    let op = UieAttention {
        table: Arc::clone(&m.table),
        spec: m.spec,
        outputs: shunts.iter().map(|(_, k)| *k).collect(),
    };
    let mut patch = TypedModelPatch::new(format!("fuse attention {}", m.name));
    let ids = patch.tap_model(model, m.ids).ok()?;
    let mask = patch.tap_model(model, m.mask).ok()?;
    let query = patch.tap_model(model, m.query).ok()?;
    let wired = patch.wire_node(&m.name, op, &[ids, mask, query]).ok()?;
    for (slot, (outlet, _)) in shunts.iter().enumerate() {
        patch
            .shunt_outside(model, *outlet, *wired.get(slot)?)
            .ok()?;
    }
    Some(Patch { patch, count: 1 })
}

//! Finding the target-attention sub-graphs over gathered table rows in a typed tract model and
//! replacing them by [`UieAttention`] (module [`super::attention`]).
//!
//! Like the retrieval rewrite ([`super::pattern`]) the match runs on the typed model as tract
//! translates it from ONNX (before declutter) and only by structure and constants, never by node
//! names. Anchored on every last-axis `Softmax` of a rank-2 f32 tensor:
//!
//! 1. **Masked softmax**: `weights = Mul(Softmax(Add(Mul(s, m), Mul(Sub(m, 1), F))), m)` with 1 and
//!    `F` one-element constants, any operand order for Mul and Add.
//! 2. **Scores**: `s = Mul(RmAxis(2)(Reduce<Sum>[2](EinSum amk,akn->amn(H, AddAxis(2)(q)))), c)`
//!    with `c` a one-element constant and `q` f32 `[N, d]`.
//! 3. **Rows**: `H = Gather(axis 0)(T, idx)` of a constant, finite f32 table `T` `[R, d]`, `idx`
//!    optionally through an i64 `Cast`, from either
//!    - the expansion tract makes of ONNX `Mod(x, B)` (`Iff(Or(And(0 > r, true), And(0 < r,
//!      false)), Add(r, B), r)` with `r = Rem(x, B)`), one-element i64 `B` with `0 < B ≤ R`:
//!      the op reads `x` and reduces it itself; or
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
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::logic::Iff;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, Softmax, SoftmaxKind};

use super::attention::{AttentionOutput, Index, Mask, Spec, UieAttention};
use super::pattern::{bin_name, consumers, find_bin, is_used, other_input, out0, scalar_f32};

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

/// The single i64 value of a one-element constant outlet.
fn scalar_i64(model: &TypedModel, outlet: OutletId) -> Option<i64> {
    let t = model.outlet_fact(outlet).ok()?.konst.clone()?;
    if t.len() != 1 || t.datum_type() != i64::datum_type() {
        return None;
    }
    t.cast_to_scalar::<i64>().ok()
}

/// The single bool value of a one-element constant outlet.
fn scalar_bool(model: &TypedModel, outlet: OutletId) -> Option<bool> {
    let t = model.outlet_fact(outlet).ok()?.konst.clone()?;
    if t.len() != 1 || t.datum_type() != bool::datum_type() {
        return None;
    }
    t.cast_to_scalar::<bool>().ok()
}

fn is_einsum_batched(node: &TypedNode) -> bool {
    node.op_as::<EinSum>().is_some_and(|e| {
        e.q_params.is_none()
            && e.operating_dt == f32::datum_type()
            && e.axes.to_string() == "amk,akn->amn"
    })
}

fn is_sum_over(node: &TypedNode, axis: usize) -> bool {
    node.op_as::<Reduce>()
        .is_some_and(|r| r.axes.as_slice() == [axis] && r.reducer == Reducer::Sum)
}

fn is_cast_to(node: &TypedNode, dt: DatumType) -> bool {
    node.op_as::<Cast>().is_some_and(|c| c.to == dt)
}

/// `RmAxis(1)(Reduce<Sum>[1](EinSum(AddAxis(1)(w), rows)))`: the pooled outlet.
fn match_pooling(model: &TypedModel, w: OutletId, rows: OutletId) -> Option<OutletId> {
    for w3 in consumers(model, w) {
        if w3.op_as::<AxisOp>() != Some(&AxisOp::Add(1)) {
            continue;
        }
        for mm in consumers(model, out0(w3)) {
            if !is_einsum_batched(mm) || mm.inputs.as_slice() != [out0(w3), rows] {
                continue;
            }
            for red in consumers(model, out0(mm)) {
                if !is_sum_over(red, 1) {
                    continue;
                }
                for rm in consumers(model, out0(red)) {
                    if rm.op_as::<AxisOp>() == Some(&AxisOp::Rm(1)) {
                        return Some(out0(rm));
                    }
                }
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
    let op = sm.op_as::<Softmax>()?;
    let [logits] = sm.inputs.as_slice() else {
        return None;
    };
    let fact = model.outlet_fact(*logits).ok()?;
    if op.axes.as_slice() != [1]
        || op.kind != SoftmaxKind::Softmax
        || op.quant_output_dt.is_some()
        || fact.rank() != 2
        || fact.datum_type != f32::datum_type()
    {
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
        if bin_name(fill_node) != Some("Mul") || bin_name(masked_node) != Some("Mul") {
            continue;
        }
        let [f0, f1] = fill_node.inputs.as_slice() else {
            continue;
        };
        let (sub, f) = match (scalar_f32(model, *f0), scalar_f32(model, *f1)) {
            (None, Some(f)) => (*f0, f),
            (Some(f), None) => (*f1, f),
            _ => continue,
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
    let mul = model.node(s.node);
    if bin_name(mul) != Some("Mul") {
        return None;
    }
    let [a, b] = mul.inputs.as_slice() else {
        return None;
    };
    let (dots, scale) = match (scalar_f32(model, *a), scalar_f32(model, *b)) {
        (None, Some(c)) => (*a, c),
        (Some(c), None) => (*b, c),
        _ => return None,
    };
    let rm = model.node(dots.node);
    if rm.op_as::<AxisOp>() != Some(&AxisOp::Rm(2)) {
        return None;
    }
    let red = model.node(rm.inputs.first()?.node);
    if !is_sum_over(red, 2) {
        return None;
    }
    let mm = model.node(red.inputs.first()?.node);
    if !is_einsum_batched(mm) {
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

/// The ONNX `Mod(x, B)` expansion ending at `iff`: `(x, B)`.
fn match_mod(model: &TypedModel, iff: &TypedNode) -> Option<(OutletId, i64)> {
    iff.op_as::<Iff>()?;
    let [cond, adjusted, rem] = iff.inputs.as_slice() else {
        return None;
    };
    let rem_node = model.node(rem.node);
    if bin_name(rem_node) != Some("Rem") {
        return None;
    }
    let [x, b] = rem_node.inputs.as_slice() else {
        return None;
    };
    let modulus = scalar_i64(model, *b)?;
    let add = model.node(adjusted.node);
    if bin_name(add) != Some("Add")
        || other_input(add, *rem).and_then(|o| scalar_i64(model, o)) != Some(modulus)
    {
        return None;
    }
    // cond = Or(And(0 > r, true), And(0 < r, false)) (B > 0): true exactly when r < 0.
    let or = model.node(cond.node);
    if bin_name(or) != Some("Or") || or.inputs.len() != 2 {
        return None;
    }
    let mut seen_neg = false;
    let mut seen_pos = false;
    for &branch in &or.inputs {
        let and = model.node(branch.node);
        if bin_name(and) != Some("And") {
            return None;
        }
        let [c0, c1] = and.inputs.as_slice() else {
            return None;
        };
        let (cmp, flag) = match (scalar_bool(model, *c0), scalar_bool(model, *c1)) {
            (None, Some(f)) => (*c0, f),
            (Some(f), None) => (*c1, f),
            _ => return None,
        };
        let cmp_node = model.node(cmp.node);
        let [z, r] = cmp_node.inputs.as_slice() else {
            return None;
        };
        if *r != *rem || scalar_i64(model, *z) != Some(0) {
            return None;
        }
        match (bin_name(cmp_node), flag) {
            (Some("GT"), true) => seen_neg = true,
            (Some("LT"), false) => seen_pos = true,
            _ => return None,
        }
    }
    (seen_neg && seen_pos && modulus > 0).then_some((*x, modulus))
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
    let (ids, index) = match match_mod(model, model.node(src.node)) {
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
    let ones = model.node(cs.inputs.first()?.node);
    if bin_name(ones) != Some("Add") {
        return None;
    }
    let [a, b] = ones.inputs.as_slice() else {
        return None;
    };
    let zeros = match (scalar_f32(model, *a), scalar_f32(model, *b)) {
        (None, Some(1.0)) => *a,
        (Some(1.0), None) => *b,
        _ => return None,
    };
    let zn = model.node(zeros.node);
    if bin_name(zn) != Some("Mul") {
        return None;
    }
    let [z0, z1] = zn.inputs.as_slice() else {
        return None;
    };
    let rows_f = match (scalar_f32(model, *z0), scalar_f32(model, *z1)) {
        (None, Some(0.0)) => *z0,
        (Some(0.0), None) => *z1,
        _ => return None,
    };
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

/// Applies one match to a copy of `model`; `None` when tract refuses the rewiring.
fn apply(model: &TypedModel, m: &Match) -> Option<TypedModel> {
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
    let mut out = model.clone();
    patch.apply(&mut out).ok()?;
    out.compact().ok()?;
    Some(out)
}

/// Rewrites every recognised target-attention sub-graph of `model` into one [`UieAttention`]
/// node; returns how many it rewrote. A sub-graph that is not recognised is left unchanged.
pub fn fuse_attentions(model: &mut TypedModel) -> TractResult<usize> {
    let softmaxes: Vec<String> = model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<Softmax>())
        .map(|n| n.name.clone())
        .collect();
    let mut fused = 0;
    for name in softmaxes {
        // Node ids change as the model is compacted: find the softmax again by its name.
        let Some(sm) = model
            .nodes()
            .iter()
            .find(|n| n.name == name && n.op_is::<Softmax>())
        else {
            continue;
        };
        let Some(m) = match_attention(model, sm) else {
            continue;
        };
        if let Some(rewritten) = apply(model, &m) {
            *model = rewritten;
            fused += 1;
        }
    }
    Ok(fused)
}

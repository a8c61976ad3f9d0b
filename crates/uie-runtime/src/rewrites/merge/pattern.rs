//! Finding the same-input linear layers in a typed tract model and merging them: several
//! `x · W_i (+ b_i)` reading the same `x` become one `x · [W_1 | W_2 | …] (+ [b_1 | b_2 | …])`
//! followed by one column `Slice` per member.
//!
//! In a PLE level every expert's first layer and every gate's linear layer read the level's input
//! (the backbone row at level 0, each task's / the shared mix at level 1), so a level runs a dozen
//! small MatMuls over the same row. One wider MatMul packs `x` once and runs one kernel.
//!
//! Match (typed model before declutter, by structure and constants only): groups of at least two
//! 2-D f32 `EinSum mk,kn->mn` (ONNX `MatMul`, no quantisation) with the same non-constant left
//! input and a constant f32 `[K, W_i]` right input. When every member's MatMul output feeds
//! exactly one consumer, an `Add` with a constant f32 bias of `W_i` values (`[W_i]` or
//! `[1, W_i]`, possibly as `AddAxis(0)` of a constant `[W_i]`) whose output has the MatMul's
//! shape, the biases are merged too; otherwise they stay where they were. Whatever followed each
//! member (its ReLU, the gate mix, …) reads its slice.

use std::collections::BTreeMap;

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::Slice;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::einsum::EinSum;

use crate::rewrites::graph::{bin_name, consumers, is_f32_einsum, is_used, other_input, out0};
use crate::rewrites::Patch;

/// One member of a group: its MatMul, its weights, if matched its bias Add, and if matched its
/// activation.
struct Member {
    matmul: usize,
    weights: Tensor,
    bias: Option<(usize, Vec<f32>)>,
    tail: Option<Tail>,
}

/// An element-wise activation with a scalar constant (ReLU is `Max(y, 0)` in the typed model):
/// the node, its constant and on which side it sits, and a signature equal for equal
/// activations.
struct Tail {
    node: usize,
    konst: Arc<Tensor>,
    konst_first: bool,
    signature: String,
}

/// The member's activation: the single consumer of `y`, a binary op whose other input is a
/// one-value f32 constant, with `y`'s shape.
fn tail(model: &TypedModel, y: OutletId) -> Option<Tail> {
    if model.outputs.contains(&y) {
        return None;
    }
    let succ = consumers(model, y);
    let [node] = succ.as_slice() else {
        return None;
    };
    let op = node.op_as::<TypedBinOp>()?;
    let c = other_input(node, y)?;
    let konst = model.outlet_fact(c).ok()?.konst.clone()?;
    if konst.len() != 1
        || konst.datum_type() != f32::datum_type()
        || konst.rank() != 2
        || model.outlet_fact(out0(node)).ok()?.shape != model.outlet_fact(y).ok()?.shape
    {
        return None;
    }
    let konst_first = node.inputs.first() == Some(&c);
    let value = konst.cast_to_scalar::<f32>().ok()?;
    Some(Tail {
        node: node.id,
        signature: format!("{op:?} {:08x} {konst_first}", value.to_bits()),
        konst,
        konst_first,
    })
}

/// A constant f32 tensor of the given rank.
fn konst_f32(model: &TypedModel, outlet: OutletId, rank: usize) -> Option<Tensor> {
    let t = model.outlet_fact(outlet).ok()?.konst.clone()?;
    (t.datum_type() == f32::datum_type() && t.rank() == rank).then(|| (*t).clone())
}

/// The MatMul's constant `[K, W]` weights if `node` is a plain 2-D f32 MatMul with a non-constant
/// left input.
fn matmul_weights(model: &TypedModel, node: &TypedNode) -> Option<(OutletId, Tensor)> {
    if !is_f32_einsum(node, "mk,kn->mn") {
        return None;
    }
    let [a, w] = node.inputs.as_slice() else {
        return None;
    };
    let af = model.outlet_fact(*a).ok()?;
    if af.konst.is_some() || af.datum_type != f32::datum_type() || af.rank() != 2 {
        return None;
    }
    let weights = konst_f32(model, *w, 2)?;
    if af.shape[1].to_usize().ok()? != weights.shape()[0] || weights.shape()[1] == 0 {
        return None;
    }
    Some((*a, weights))
}

/// The member's bias Add: the single consumer of the MatMul output, an `Add` with a constant of
/// `W` f32 values, same output shape.
fn bias_add(model: &TypedModel, node: &TypedNode, width: usize) -> Option<(usize, Vec<f32>)> {
    let y = out0(node);
    if model.outputs.contains(&y) {
        return None;
    }
    let succ = consumers(model, y);
    let [add] = succ.as_slice() else {
        return None;
    };
    if bin_name(add) != Some("Add") {
        return None;
    }
    let b = other_input(add, y)?;
    let t = bias_const(model, b)?;
    let shape_ok = t.shape() == [width] || t.shape() == [1, width];
    if t.datum_type() != f32::datum_type() || !shape_ok {
        return None;
    }
    if model.outlet_fact(out0(add)).ok()?.shape != model.outlet_fact(y).ok()?.shape {
        return None;
    }
    let values = t
        .to_plain_array_view::<f32>()
        .ok()?
        .iter()
        .copied()
        .collect();
    Some((add.id, values))
}

/// The constant behind a bias outlet: a constant itself, or `AddAxis(0)` of a constant (how the
/// typed model broadcasts an ONNX `[W]` bias to `[1, W]`).
fn bias_const(model: &TypedModel, b: OutletId) -> Option<Arc<Tensor>> {
    if let Some(t) = model.outlet_fact(b).ok()?.konst.clone() {
        return Some(t);
    }
    let node = model.node(b.node);
    match (node.op_as::<AxisOp>()?, node.inputs.as_slice()) {
        (AxisOp::Add(0), [input]) => model.outlet_fact(*input).ok()?.konst.clone(),
        _ => None,
    }
}

/// Column-concatenates `[K, W_i]` f32 tensors into `[K, ΣW_i]`.
fn concat_columns(parts: &[&Tensor]) -> TractResult<Tensor> {
    let views = parts
        .iter()
        .map(|t| t.to_plain_array_view::<f32>())
        .collect::<TractResult<Vec<_>>>()?;
    let joined = tract_ndarray::concatenate(tract_ndarray::Axis(1), &views)?;
    Ok(joined.into_tensor())
}

/// The patch merging one group (all reading `a`); `None` when tract refuses it.
fn merge_group(model: &TypedModel, a: OutletId, members: &[Member]) -> Option<TypedModelPatch> {
    let first = model.node(members.first()?.matmul);
    let name = format!("{}.merged", first.name);
    let with_bias = members.iter().all(|m| m.bias.is_some());
    let with_tail = members.iter().all(|m| m.tail.is_some());
    let weights = concat_columns(&members.iter().map(|m| &m.weights).collect::<Vec<_>>()).ok()?;
    let total = weights.shape()[1];
    let mut patch = TypedModelPatch::new(format!("merge linear {name}"));
    let x = patch.tap_model(model, a).ok()?;
    let w = patch.add_const(format!("{name}.weights"), weights).ok()?;
    let op = first.op_as::<EinSum>()?.clone();
    let mut y = patch.wire_node(&name, op, &[x, w]).ok()?[0];
    if with_bias {
        let mut bias = Vec::with_capacity(total);
        for m in members {
            bias.extend_from_slice(&m.bias.as_ref()?.1);
        }
        let b = tensor1(&bias).into_shape(&[1, total]).ok()?;
        let b = patch.add_const(format!("{name}.bias"), b).ok()?;
        y = patch
            .wire_node(
                format!("{name}.add"),
                tract_onnx::tract_core::ops::math::add(),
                &[y, b],
            )
            .ok()?[0];
    }
    if let (true, Some(t)) = (with_tail, members.first().and_then(|m| m.tail.as_ref())) {
        let node = model.node(t.node);
        let c = patch
            .add_const(format!("{name}.act.konst"), (*t.konst).clone())
            .ok()?;
        let ins = if t.konst_first { [c, y] } else { [y, c] };
        y = patch
            .wire_node(format!("{name}.act"), node.op.clone(), &ins)
            .ok()?[0];
    }
    let mut start = 0;
    for m in members {
        let width = m.weights.shape()[1];
        let old = match (&m.bias, &m.tail) {
            (Some(_), Some(t)) if with_bias && with_tail => OutletId::new(t.node, 0),
            (Some((add, _)), _) if with_bias => OutletId::new(*add, 0),
            _ => OutletId::new(m.matmul, 0),
        };
        let slice = Slice::new(1, start, start + width);
        let s = patch
            .wire_node(format!("{}.slice", model.node(old.node).name), slice, &[y])
            .ok()?[0];
        patch.shunt_outside(model, old, s).ok()?;
        start += width;
    }
    Some(patch)
}

/// The patch merging the group of same-input linear layers that the MatMul node `anchor` belongs
/// to, counting the MatMuls it merges away (members minus one); `None` when the group has fewer
/// than two members or tract refuses the merge.
pub(super) fn patch(model: &TypedModel, anchor: &TypedNode) -> Option<Patch> {
    let (a, members) = groups(model)
        .into_iter()
        .find(|(_, m)| m.iter().any(|m| m.matmul == anchor.id))?;
    if members.len() < 2 {
        return None;
    }
    Some(Patch {
        patch: merge_group(model, a, &members)?,
        count: members.len() - 1,
    })
}

/// The same-input linear layers of `model` grouped by input, all of a group with a bias or all
/// without, and all with the same activation or all without; members in node order.
fn groups(model: &TypedModel) -> Vec<(OutletId, Vec<Member>)> {
    type Key = (String, usize, bool, Option<String>);
    let mut groups: BTreeMap<Key, (OutletId, Vec<Member>)> = BTreeMap::new();
    for node in model.nodes() {
        if !is_used(model, out0(node)) {
            continue;
        }
        let Some((a, weights)) = matmul_weights(model, node) else {
            continue;
        };
        let bias = bias_add(model, node, weights.shape()[1]);
        // Only members with a bias can carry a merged activation (after the bias).
        let tail = bias
            .as_ref()
            .and_then(|(add, _)| tail(model, OutletId::new(*add, 0)));
        let key = (
            model.node(a.node).name.clone(),
            a.slot,
            bias.is_some(),
            tail.as_ref().map(|t| t.signature.clone()),
        );
        let entry = groups.entry(key).or_insert_with(|| (a, Vec::new()));
        entry.1.push(Member {
            matmul: node.id,
            weights,
            bias,
            tail,
        });
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrites::{apply, apply_one, merge::MergeRewrite, RewriteName, RewriteSet};
    use tract_onnx::tract_core::ops::math::{add, max};

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + seed) * 0.37).sin()).collect()
    }

    fn konst(model: &mut TypedModel, name: &str, shape: &[usize], seed: f32) -> OutletId {
        let n = shape.iter().product();
        let t = tract_ndarray::ArrayD::from_shape_vec(shape, values(n, seed))
            .expect("shape")
            .into_tensor();
        model.add_const(name, t).expect("const")
    }

    /// `relu(x · W_i + b_i)` for each width, plus `x · W + b` (a gate, no activation) twice, plus
    /// one MatMul reading another input.
    fn model() -> TypedModel {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([3, 4])).expect("source");
        let other = m.add_source("other", f32::fact([3, 4])).expect("source");
        let einsum = EinSum::new("mk,kn->mn".parse().expect("axes"), f32::datum_type());
        let mut outs = Vec::new();
        for (i, (w, relu)) in [(5, true), (2, false), (6, true), (3, false)]
            .into_iter()
            .enumerate()
        {
            let wt = konst(&mut m, &format!("w{i}"), &[4, w], i as f32);
            let y = m
                .wire_node(format!("mm{i}"), einsum.clone(), &[x, wt])
                .expect("mm")[0];
            let b = konst(&mut m, &format!("b{i}"), &[1, w], 10.0 + i as f32);
            let mut y = m.wire_node(format!("add{i}"), add(), &[y, b]).expect("add")[0];
            if relu {
                let z = m
                    .add_const(format!("zero{i}"), tensor2(&[[0f32]]))
                    .expect("zero");
                y = m
                    .wire_node(format!("relu{i}"), max(), &[y, z])
                    .expect("relu")[0];
            }
            outs.push(y);
        }
        let wt = konst(&mut m, "w_other", &[4, 7], 20.0);
        outs.push(m.wire_node("mm_other", einsum, &[other, wt]).expect("mm")[0]);
        m.select_output_outlets(&outs).expect("outputs");
        m
    }

    fn run(model: TypedModel) -> Vec<Vec<f32>> {
        let x = tract_ndarray::ArrayD::from_shape_vec(vec![3, 4], values(12, 3.0))
            .expect("shape")
            .into_tensor();
        let other = tract_ndarray::ArrayD::from_shape_vec(vec![3, 4], values(12, 5.0))
            .expect("shape")
            .into_tensor();
        model
            .into_runnable()
            .expect("runnable")
            .run(tvec!(x.into_tvalue(), other.into_tvalue()))
            .expect("run")
            .iter()
            .map(|t| {
                t.to_plain_array_view::<f32>()
                    .expect("f32")
                    .iter()
                    .copied()
                    .collect()
            })
            .collect()
    }

    #[test]
    fn merged_layers_give_the_same_outputs() {
        let plain = model();
        let mut merged = model();
        // Two groups: the two ReLU layers, the two gates; the other input's MatMul stays.
        assert_eq!(apply_one(&mut merged, &MergeRewrite), 2);
        let matmuls = merged
            .nodes()
            .iter()
            .filter(|n| n.op_is::<EinSum>())
            .count();
        assert_eq!(matmuls, 3);
        let want = run(plain);
        let got = run(merged);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.len(), w.len());
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
            }
        }
        assert!(want[0].contains(&0.0), "the ReLU clips something");
    }

    /// The driver runs the merge unless it is disabled, and reports it under its name.
    #[test]
    fn the_driver_skips_the_merge_when_disabled() {
        let mut m = model();
        let before = format!("{m}");
        let others = RewriteSet::ALL.without(RewriteName::Merge);
        let counts = apply(&mut m, RewriteSet::NONE.with(RewriteName::Merge));
        assert_eq!(counts.get(RewriteName::Merge), 0);
        assert_eq!(format!("{m}"), before);
        let counts = apply(&mut m, others);
        assert_eq!(counts.get(RewriteName::Merge), 2);
        assert_ne!(format!("{m}"), before);
    }

    #[test]
    fn nothing_to_merge_leaves_the_model_unchanged() {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([3, 4])).expect("source");
        let einsum = EinSum::new("mk,kn->mn".parse().expect("axes"), f32::datum_type());
        let w = konst(&mut m, "w", &[4, 5], 1.0);
        let y = m.wire_node("mm", einsum.clone(), &[x, w]).expect("mm")[0];
        let w2 = konst(&mut m, "w2", &[5, 2], 2.0);
        let z = m.wire_node("mm2", einsum, &[y, w2]).expect("mm")[0];
        m.select_output_outlets(&[z]).expect("outputs");
        let before = format!("{m}");
        assert_eq!(apply_one(&mut m, &MergeRewrite), 0);
        assert_eq!(format!("{m}"), before);
    }
}

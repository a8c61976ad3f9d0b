//! What the rewrites' matchers share: reading a typed tract model's structure and constants
//! (consumers, binary ops, one-element constants, the ops `uie-compile`'s lowering uses) and the
//! expansion tract-onnx makes of ONNX `Mod`, which both the lookup and the attention rewrites
//! read through.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::logic::Iff;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, Softmax, SoftmaxKind};

/// Output 0 of a node.
pub(crate) fn out0(node: &TypedNode) -> OutletId {
    OutletId::new(node.id, 0)
}

/// Nodes consuming `outlet`.
pub(crate) fn consumers(model: &TypedModel, outlet: OutletId) -> Vec<&TypedNode> {
    model
        .outlet_successors(outlet)
        .iter()
        .map(|inlet| model.node(inlet.node))
        .collect()
}

/// Whether an outlet is used at all (a consumer or a model output).
pub(crate) fn is_used(model: &TypedModel, outlet: OutletId) -> bool {
    !model.outlet_successors(outlet).is_empty() || model.outputs.contains(&outlet)
}

/// The name of a binary op node (`Mul`, `Add`, `Sub`, `GT`, `Rem`, `And`, `Or`, …).
pub(crate) fn bin_name(node: &TypedNode) -> Option<&'static str> {
    node.op_as::<TypedBinOp>().map(|b| b.0.name())
}

/// For a two-input node with `x` as one input, the other input.
pub(crate) fn other_input(node: &TypedNode, x: OutletId) -> Option<OutletId> {
    match node.inputs.as_slice() {
        [a, b] if *a == x => Some(*b),
        [a, b] if *b == x => Some(*a),
        _ => None,
    }
}

/// A binary node named `op` consuming `x` whose other input satisfies `pred`.
pub(crate) fn find_bin<'m>(
    model: &'m TypedModel,
    x: OutletId,
    op: &str,
    pred: impl Fn(OutletId) -> bool,
) -> Option<&'m TypedNode> {
    consumers(model, x)
        .into_iter()
        .find(|n| bin_name(n) == Some(op) && other_input(n, x).is_some_and(&pred))
}

/// The single f32 value of a one-element f32 constant outlet.
pub(crate) fn scalar_f32(model: &TypedModel, outlet: OutletId) -> Option<f32> {
    let t = model.outlet_fact(outlet).ok()?.konst.clone()?;
    if t.len() != 1 || t.datum_type() != f32::datum_type() {
        return None;
    }
    t.cast_to_scalar::<f32>().ok()
}

/// For a binary node named `op` with exactly one input a one-element f32 constant: the other
/// input and the constant's value.
pub(crate) fn by_scalar(model: &TypedModel, node: &TypedNode, op: &str) -> Option<(OutletId, f32)> {
    if bin_name(node) != Some(op) {
        return None;
    }
    let [a, b] = node.inputs.as_slice() else {
        return None;
    };
    match (scalar_f32(model, *a), scalar_f32(model, *b)) {
        (None, Some(c)) => Some((*a, c)),
        (Some(c), None) => Some((*b, c)),
        _ => None,
    }
}

/// A constant outlet's values as i64 (any integer or bool type), if it is constant.
fn konst_i64(model: &TypedModel, outlet: OutletId) -> Option<Vec<i64>> {
    let t = model.outlet_fact(outlet).ok()?.konst.clone()?;
    let t = t.cast_to::<i64>().ok()?;
    let v = t.to_plain_array_view::<i64>().ok()?;
    Some(v.iter().copied().collect())
}

/// The single value of a one-element integer constant.
pub(crate) fn scalar_i64(model: &TypedModel, outlet: OutletId) -> Option<i64> {
    match konst_i64(model, outlet)?.as_slice() {
        [v] => Some(*v),
        _ => None,
    }
}

/// A constant boolean outlet that is `value` everywhere.
fn all_bool(model: &TypedModel, outlet: OutletId, value: bool) -> bool {
    let Some(t) = model.outlet_fact(outlet).ok().and_then(|f| f.konst.clone()) else {
        return false;
    };
    if t.datum_type() != bool::datum_type() {
        return false;
    }
    t.to_plain_array_view::<bool>()
        .is_ok_and(|v| !v.is_empty() && v.iter().all(|&b| b == value))
}

/// Whether `node` is a `Cast` to `dt`.
pub(crate) fn is_cast_to(node: &TypedNode, dt: DatumType) -> bool {
    node.op_as::<Cast>().is_some_and(|c| c.to == dt)
}

/// The outlet behind any i64 → i64 `Cast`s.
pub(crate) fn through_casts(model: &TypedModel, mut outlet: OutletId) -> OutletId {
    loop {
        let node = model.node(outlet.node);
        let same = is_cast_to(node, i64::datum_type())
            && node.inputs.len() == 1
            && model
                .outlet_fact(node.inputs[0])
                .is_ok_and(|f| f.datum_type == i64::datum_type());
        if !same {
            return outlet;
        }
        outlet = node.inputs[0];
    }
}

/// Whether `node` is a plain (not log, not quantised) softmax over axis 1.
pub(crate) fn is_softmax_1(node: &TypedNode) -> bool {
    node.op_as::<Softmax>().is_some_and(|s| {
        s.axes.as_slice() == [1] && s.kind == SoftmaxKind::Softmax && s.quant_output_dt.is_none()
    })
}

/// Whether `node` is a `Reduce<Sum>` over `axis` alone.
pub(crate) fn is_sum_over(node: &TypedNode, axis: usize) -> bool {
    node.op_as::<Reduce>()
        .is_some_and(|r| r.axes.as_slice() == [axis] && r.reducer == Reducer::Sum)
}

/// Whether `node` is an unquantised f32 `EinSum` with the given axes (`mk,kn->mn`: ONNX's 2-D
/// `MatMul`; `amk,akn->amn`: its batched form).
pub(crate) fn is_f32_einsum(node: &TypedNode, axes: &str) -> bool {
    node.op_as::<EinSum>().is_some_and(|e| {
        e.q_params.is_none() && e.operating_dt == f32::datum_type() && e.axes.to_string() == axes
    })
}

/// `RmAxis(1)(Reduce<Sum>[1](x))`, the sum over axis 1 with the axis dropped, as `uie-compile`
/// lowers a `ReduceSum` without `keepdims`: its outlet, if some consumer of `x` is that.
pub(crate) fn summed_over_1(model: &TypedModel, x: OutletId) -> Option<OutletId> {
    consumers(model, x)
        .into_iter()
        .filter(|red| is_sum_over(red, 1))
        .flat_map(|red| consumers(model, out0(red)))
        .find(|rm| rm.op_as::<AxisOp>() == Some(&AxisOp::Rm(1)))
        .map(out0)
}

/// Whether `outlet` is `r < 0`: `GT(0, r)` or `LT(r, 0)` (through i64 casts).
fn is_negative_test(model: &TypedModel, outlet: OutletId, r: OutletId) -> bool {
    let node = model.node(outlet.node);
    let is_zero = |o: OutletId| {
        konst_i64(model, o).is_some_and(|v| !v.is_empty() && v.iter().all(|&x| x == 0))
    };
    match (bin_name(node), node.inputs.as_slice()) {
        (Some("GT" | "CompGT"), [z, x]) => through_casts(model, *x) == r && is_zero(*z),
        (Some("LT" | "CompLT"), [x, z]) => through_casts(model, *x) == r && is_zero(*z),
        _ => false,
    }
}

/// Whether `outlet` is exactly `r < 0` given the constants: `Or` of a constant-false `And` and
/// `And(true, r < 0)`, in any order.
fn is_sign_fix_condition(model: &TypedModel, outlet: OutletId, r: OutletId) -> bool {
    let or = model.node(outlet.node);
    if bin_name(or) != Some("Or") || or.inputs.len() != 2 {
        return false;
    }
    let dead = |o: OutletId| {
        let n = model.node(o.node);
        bin_name(n) == Some("And") && n.inputs.iter().any(|&i| all_bool(model, i, false))
    };
    let live = |o: OutletId| {
        let n = model.node(o.node);
        match (bin_name(n), n.inputs.as_slice()) {
            (Some("And"), [a, b]) => {
                (all_bool(model, *a, true) && is_negative_test(model, *b, r))
                    || (all_bool(model, *b, true) && is_negative_test(model, *a, r))
            }
            _ => false,
        }
    };
    let (a, b) = (or.inputs[0], or.inputs[1]);
    (dead(a) && live(b)) || (live(a) && dead(b))
}

/// The ids and modulus `H` of an ONNX `Mod(ids, H)` (`fmod = 0`, `H` a one-element constant
/// `> 0`, `ids` i64) as tract-onnx expands it, ending in the `Iff` node `iff`:
/// `Iff(Or(And(r > 0, H < 0), And(r < 0, H > 0)), Add(r, H), r)` with `r = Rem(ids, H)` (ONNX
/// Runtime's sign fix). With the constants folded the condition is exactly `r < 0`, so the `Iff`
/// is `ids.rem_euclid(H)`. Casts i64 → i64 between the nodes are looked through.
pub(crate) fn hashed_mod(model: &TypedModel, iff: &TypedNode) -> Option<(OutletId, i64)> {
    if !iff.op_is::<Iff>() || iff.outputs.len() != 1 {
        return None;
    }
    let [cond, then, other] = iff.inputs.as_slice() else {
        return None;
    };
    let r = through_casts(model, *other);
    let rem = model.node(r.node);
    let [ids, h_in] = rem.inputs.as_slice() else {
        return None;
    };
    if bin_name(rem) != Some("Rem") {
        return None;
    }
    let h = scalar_i64(model, *h_in)?;
    if h <= 0 || model.outlet_fact(*ids).ok()?.datum_type != i64::datum_type() {
        return None;
    }
    let add = model.node(then.node);
    let add_ok = bin_name(add) == Some("Add")
        && match add.inputs.as_slice() {
            [a, b] => {
                (through_casts(model, *a) == r && scalar_i64(model, *b) == Some(h))
                    || (through_casts(model, *b) == r && scalar_i64(model, *a) == Some(h))
            }
            _ => false,
        };
    if !add_ok || !is_sign_fix_condition(model, *cond, r) {
        return None;
    }
    Some((*ids, h))
}

//! Finding the PLE gate mixes in a typed tract model and replacing each by one [`UieGateMix`].
//!
//! `uie-compile` lowers a gate mix as `g = Softmax_1(logits)`, `stack = Concat_1(Unsqueeze_1(e_j)
//! …)` `[N, E, W]`, `RmAxis_1(ReduceSum_1(Unsqueeze_2(g) · stack))`: six nodes per gate plus an
//! `[N, E, W]` stack and product. The fused op reads the logits `[N, E]` and the `E` expert
//! outputs `[N, W]` in place and writes the mix, one row at a time. The gate's linear layer
//! (`h · W + b`) stays a tract MatMul.
//!
//! Match (typed model before declutter, by structure only): `RmAxis(1)(Reduce<Sum>[1](Mul(a, b)))`
//! with, in either order, `a = AddAxis(2)(Softmax[1](logits))` (plain softmax, f32 `[N, E]`) and
//! `b = Concat(axis 1)(AddAxis(1)(e_1), …, AddAxis(1)(e_E))` with every `e_j` f32 `[N, W]`, the
//! same `W`, and `E` equal to the logits' width.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::TypedConcat;
use tract_onnx::tract_core::ops::change_axes::AxisOp;

use super::op::UieGateMix;
use crate::rewrites::graph::{bin_name, consumers, is_softmax_1, is_sum_over, is_used, out0};
use crate::rewrites::Patch;

/// One matched gate mix: the logits, the experts, the mixed outlet.
struct Match {
    name: String,
    logits: OutletId,
    experts: Vec<OutletId>,
    mixed: OutletId,
}

fn match_gate(model: &TypedModel, red: &TypedNode) -> Option<Match> {
    if !is_sum_over(red, 1) {
        return None;
    }
    let mixed = consumers(model, out0(red))
        .into_iter()
        .find(|n| n.op_as::<AxisOp>() == Some(&AxisOp::Rm(1)))?;
    let mul = model.node(red.inputs.first()?.node);
    if bin_name(mul) != Some("Mul") {
        return None;
    }
    let [a, b] = mul.inputs.as_slice() else {
        return None;
    };
    for (g3, stack) in [(*a, *b), (*b, *a)] {
        let g3n = model.node(g3.node);
        let cat = model.node(stack.node);
        if g3n.op_as::<AxisOp>() != Some(&AxisOp::Add(2))
            || cat.op_as::<TypedConcat>().is_none_or(|c| c.axis != 1)
        {
            continue;
        }
        let sm = model.node(g3n.inputs.first()?.node);
        if !is_softmax_1(sm) {
            continue;
        }
        let logits = *sm.inputs.first()?;
        let lf = model.outlet_fact(logits).ok()?;
        if lf.datum_type != f32::datum_type()
            || lf.rank() != 2
            || lf.shape[1] != TDim::from(cat.inputs.len())
        {
            continue;
        }
        let mut experts = Vec::new();
        for &i in &cat.inputs {
            let unsq = model.node(i.node);
            if unsq.op_as::<AxisOp>() != Some(&AxisOp::Add(1)) {
                return None;
            }
            let e = *unsq.inputs.first()?;
            let ef = model.outlet_fact(e).ok()?;
            if ef.datum_type != f32::datum_type() || ef.rank() != 2 {
                return None;
            }
            experts.push(e);
        }
        let f0 = model.outlet_fact(*experts.first()?).ok()?.clone();
        for &e in &experts {
            if model.outlet_fact(e).ok()?.shape != f0.shape {
                return None;
            }
        }
        if f0.shape[0] != lf.shape[0] {
            return None;
        }
        return Some(Match {
            name: format!("{}.fused_gate", red.name),
            logits,
            experts,
            mixed: out0(mixed),
        });
    }
    None
}

/// The patch replacing the gate mix anchored at the `Reduce` node `red` by one [`UieGateMix`]
/// node (counting one); `None` when it does not match or tract refuses the rewiring.
pub(super) fn patch(model: &TypedModel, red: &TypedNode) -> Option<Patch> {
    let m = match_gate(model, red)?;
    if !is_used(model, m.mixed) {
        return None;
    }
    let mut patch = TypedModelPatch::new(format!("fuse gate {}", m.name));
    let mut ins = vec![patch.tap_model(model, m.logits).ok()?];
    for &e in &m.experts {
        ins.push(patch.tap_model(model, e).ok()?);
    }
    let op = UieGateMix {
        experts: m.experts.len(),
    };
    let wired = patch.wire_node(&m.name, op, &ins).ok()?;
    patch.shunt_outside(model, m.mixed, *wired.first()?).ok()?;
    Some(Patch { patch, count: 1 })
}

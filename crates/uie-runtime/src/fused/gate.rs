//! The fused PLE gate mix: `Σ_j softmax(logits)_j · expert_j` (`uie-model.md` §1, the gates of a
//! PLE level) as one kernel ([`gate_mix`]), one tract op ([`UieGateMix`]) and its structural
//! match ([`fuse_gate_mixes`]).
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

use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
use tract_onnx::tract_core::internal::*;

use super::values;
use tract_onnx::tract_core::ops::array::TypedConcat;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, Softmax, SoftmaxKind};

use super::pattern::{bin_name, consumers, is_used, out0};

/// `out[n] = Σ_j softmax(logits[n])_j · experts[j][n]`: `logits` `[N, E]`, each of the `E`
/// experts `[N, W]`, `out` `[N, W]` (overwritten). Returns `None` when the lengths disagree.
pub fn gate_mix(logits: &[f32], experts: &[&[f32]], w: usize, out: &mut [f32]) -> Option<()> {
    let e = experts.len();
    if e == 0 || !logits.len().is_multiple_of(e) {
        return None;
    }
    let n = logits.len() / e;
    if out.len() != n * w || experts.iter().any(|x| x.len() != n * w) {
        return None;
    }
    let mut g = vec![0f32; e];
    for row in 0..n {
        let l = &logits[row * e..(row + 1) * e];
        let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for (gj, &x) in g.iter_mut().zip(l) {
            *gj = (x - max).exp();
            sum += *gj;
        }
        for gj in g.iter_mut() {
            *gj /= sum;
        }
        let acc = &mut out[row * w..(row + 1) * w];
        acc.iter_mut().for_each(|a| *a = 0.0);
        for (gj, x) in g.iter().zip(experts) {
            for (a, &v) in acc.iter_mut().zip(&x[row * w..(row + 1) * w]) {
                *a += gj * v;
            }
        }
    }
    Some(())
}

/// The fused gate mix as a tract op: inputs the logits f32 `[N, E]` then the `E` experts f32
/// `[N, W]`; one output f32 `[N, W]`. No declutter or codegen rule of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UieGateMix {
    /// `E`, the number of experts mixed.
    pub experts: usize,
}

impl Op for UieGateMix {
    fn name(&self) -> StaticName {
        "UieGateMix".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("E = {}", self.experts)])
    }

    op_as_typed_op!();
}

impl EvalOp for UieGateMix {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let Some((logits, experts)) = inputs.split_first() else {
            bail!("UieGateMix takes the logits and the experts");
        };
        if experts.len() != self.experts || logits.rank() != 2 || experts[0].rank() != 2 {
            bail!(
                "UieGateMix: expected [N, {}] logits and that many [N, W] experts",
                self.experts
            );
        }
        let (n, w) = (experts[0].shape()[0], experts[0].shape()[1]);
        let l = values::<f32>(logits)?;
        let xs = experts
            .iter()
            .map(|x| values::<f32>(x))
            .collect::<TractResult<Vec<_>>>()?;
        let refs: Vec<&[f32]> = xs.iter().map(|x| x.as_ref()).collect();
        let mut out = vec![0f32; n * w];
        if gate_mix(&l, &refs, w, &mut out).is_none() {
            bail!(
                "UieGateMix: logits {:?} and experts {:?} disagree",
                logits.shape(),
                experts
                    .iter()
                    .map(|x| x.shape().to_vec())
                    .collect::<Vec<_>>()
            );
        }
        let t: Tensor = ArrayD::from_shape_vec(IxDyn(&[n, w]), out)?.into();
        Ok(tvec!(t.into_tvalue()))
    }
}

impl TypedOp for UieGateMix {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let Some((logits, experts)) = inputs.split_first() else {
            bail!("UieGateMix takes the logits and the experts");
        };
        if experts.len() != self.experts
            || experts.is_empty()
            || logits.rank() != 2
            || experts
                .iter()
                .any(|x| x.rank() != 2 || x.datum_type != f32::datum_type())
        {
            bail!("UieGateMix: expected [N, E] logits and E [N, W] f32 experts");
        }
        Ok(tvec!(f32::fact([
            experts[0].shape[0].clone(),
            experts[0].shape[1].clone()
        ])))
    }

    as_op!();
}

/// One matched gate mix: the logits, the experts, the mixed outlet.
struct Match {
    name: String,
    logits: OutletId,
    experts: Vec<OutletId>,
    mixed: OutletId,
}

fn match_gate(model: &TypedModel, red: &TypedNode) -> Option<Match> {
    let r = red.op_as::<Reduce>()?;
    if r.axes.as_slice() != [1] || r.reducer != Reducer::Sum {
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
        let ok = sm.op_as::<Softmax>().is_some_and(|s| {
            s.axes.as_slice() == [1]
                && s.kind == SoftmaxKind::Softmax
                && s.quant_output_dt.is_none()
        });
        if !ok {
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

/// Rewrites every recognised gate mix of `model` into one [`UieGateMix`] node; returns how many
/// it rewrote. A sub-graph that is not recognised is left unchanged.
pub fn fuse_gate_mixes(model: &mut TypedModel) -> TractResult<usize> {
    let reduces: Vec<String> = model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<Reduce>())
        .map(|n| n.name.clone())
        .collect();
    let mut fused = 0;
    for name in reduces {
        let Some(red) = model
            .nodes()
            .iter()
            .find(|n| n.name == name && n.op_is::<Reduce>())
        else {
            continue;
        };
        let Some(m) = match_gate(model, red) else {
            continue;
        };
        if !is_used(model, m.mixed) {
            continue;
        }
        let mut patch = TypedModelPatch::new(format!("fuse gate {}", m.name));
        let mut ins = vec![patch.tap_model(model, m.logits)?];
        for &e in &m.experts {
            ins.push(patch.tap_model(model, e)?);
        }
        let op = UieGateMix {
            experts: m.experts.len(),
        };
        let wired = patch.wire_node(&m.name, op, &ins)?;
        patch.shunt_outside(model, m.mixed, wired[0])?;
        let mut out = model.clone();
        if patch.apply(&mut out).is_ok() && out.compact().is_ok() {
            *model = out;
            fused += 1;
        }
    }
    Ok(fused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_matches_softmax_then_weighted_sum() {
        let (n, e, w) = (3, 4, 5);
        let logits: Vec<f32> = (0..n * e).map(|i| (i as f32 * 0.7).sin() * 3.0).collect();
        let xs: Vec<Vec<f32>> = (0..e)
            .map(|j| {
                (0..n * w)
                    .map(|i| ((i + 7 * j) as f32 * 0.31).cos())
                    .collect()
            })
            .collect();
        let refs: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
        let mut out = vec![f32::NAN; n * w];
        gate_mix(&logits, &refs, w, &mut out).expect("shapes agree");
        for row in 0..n {
            let l = &logits[row * e..(row + 1) * e];
            let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let s: f32 = l.iter().map(|x| (x - m).exp()).sum();
            for k in 0..w {
                let want: f32 = (0..e)
                    .map(|j| (l[j] - m).exp() / s * xs[j][row * w + k])
                    .sum();
                let got = out[row * w + k];
                assert!(
                    (got - want).abs() <= 1e-6 + 1e-5 * want.abs(),
                    "{got} vs {want}"
                );
            }
        }
        assert!(gate_mix(&logits, &refs, w + 1, &mut out).is_none());
        assert!(gate_mix(&logits[1..], &refs, w, &mut out).is_none());
    }
}

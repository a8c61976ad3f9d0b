//! The fused PLE gate mix `Σ_j softmax(logits)_j · expert_j` (`docs/model.md` §6, the gates of a
//! PLE level) as one kernel ([`gate_mix`]) and one tract op ([`UieGateMix`]).

use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
use tract_onnx::tract_core::internal::*;

use crate::rewrites::values;

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

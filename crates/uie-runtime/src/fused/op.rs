//! [`UieRetrieval`]: the fused retrieval as a tract op (`TypedOp` + `EvalOp` + `Op`).
//!
//! One input: the scores `q · Mᵀ` `[B, N]` f32 when `scored` (what the rewrite builds: the
//! graph's MatMul computes them), else the query `[B, d]` f32 (scored in the op by the blocked
//! kernel); one output per [`RetrievalOutput`] it was built with, in that order. The op has no declutter or codegen rule of its own, so tract's optimiser leaves it
//! as it is and optimises around it.

use std::sync::Arc;

use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
use tract_onnx::tract_core::internal::*;

use super::kernel::{retrieve, retrieve_scored, CentreTable, Wants};

/// One value of the standard retrieval sub-graph that the fused op can stand in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetrievalOutput {
    /// TopK's values `[B, K]` f32.
    Values,
    /// TopK's indices `[B, K]` i64.
    Indices,
    /// `Cast(values > 0)` `[B, K]` f32.
    Keep,
    /// The masked-softmax weights `[B, K]` f32.
    Weights,
    /// `Σ_k weights_k · M[i_k]` `[B, d]` f32.
    Sum,
    /// `Gather(M, indices)` `[B, K, d]` f32.
    Gathered,
}

/// The fused op: `R(query, M, K)` of `uie-model.md` §5 in one pass per row.
#[derive(Debug, Clone, PartialEq)]
pub struct UieRetrieval {
    /// K, the number of centres retrieved per row.
    pub k: usize,
    /// The centre table `M` (both layouts).
    pub centres: Arc<CentreTable>,
    /// Whether the masked-softmax weights (and so the weighted sum) are computed.
    pub with_weights: bool,
    /// The outputs, in output-slot order.
    pub outputs: Vec<RetrievalOutput>,
    /// The input is the scores `q · Mᵀ` `[B, N]` (computed by the graph's MatMul) rather than
    /// the query `[B, d]`.
    pub scored: bool,
}

impl Eq for UieRetrieval {}

impl UieRetrieval {
    fn wants(&self) -> Wants {
        let mut w = Wants::default();
        for o in &self.outputs {
            match o {
                RetrievalOutput::Values => w.values = true,
                RetrievalOutput::Indices => w.indices = true,
                RetrievalOutput::Keep => w.keep = true,
                RetrievalOutput::Weights => w.weights = self.with_weights,
                RetrievalOutput::Sum => w.sum = self.with_weights,
                RetrievalOutput::Gathered => w.gathered = true,
            }
        }
        w
    }
}

impl Op for UieRetrieval {
    fn name(&self) -> StaticName {
        "UieRetrieval".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "N = {}, d = {}, K = {}, outputs {:?}",
            self.centres.centres(),
            self.centres.width(),
            self.k,
            self.outputs
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for UieRetrieval {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        if inputs.len() != 1 {
            bail!("UieRetrieval takes one input, got {}", inputs.len());
        }
        let q = &inputs[0];
        let d = self.centres.width();
        let width = if self.scored {
            self.centres.centres()
        } else {
            d
        };
        if q.datum_type() != f32::datum_type() || q.rank() != 2 || q.shape()[1] != width {
            bail!(
                "UieRetrieval: input must be f32 [B, {width}], got {:?} {:?}",
                q.datum_type(),
                q.shape()
            );
        }
        let b = q.shape()[0];
        let view = q.to_plain_array_view::<f32>()?;
        let owned;
        let data = match view.as_slice() {
            Some(s) => s,
            None => {
                owned = view.iter().copied().collect::<Vec<f32>>();
                &owned
            }
        };
        let mut got = if self.scored {
            retrieve_scored(&self.centres, self.k, data, self.wants())?
        } else {
            retrieve(&self.centres, self.k, data, self.wants())?
        };
        let k = self.k;
        let mut out = TVec::new();
        for o in &self.outputs {
            let t: Tensor = match o {
                RetrievalOutput::Values => {
                    ArrayD::from_shape_vec(IxDyn(&[b, k]), std::mem::take(&mut got.values))?.into()
                }
                RetrievalOutput::Indices => {
                    ArrayD::from_shape_vec(IxDyn(&[b, k]), std::mem::take(&mut got.indices))?.into()
                }
                RetrievalOutput::Keep => {
                    ArrayD::from_shape_vec(IxDyn(&[b, k]), std::mem::take(&mut got.keep))?.into()
                }
                RetrievalOutput::Weights => {
                    ArrayD::from_shape_vec(IxDyn(&[b, k]), std::mem::take(&mut got.weights))?.into()
                }
                RetrievalOutput::Sum => {
                    ArrayD::from_shape_vec(IxDyn(&[b, d]), std::mem::take(&mut got.sum))?.into()
                }
                RetrievalOutput::Gathered => {
                    ArrayD::from_shape_vec(IxDyn(&[b, k, d]), std::mem::take(&mut got.gathered))?
                        .into()
                }
            };
            out.push(t.into_tvalue());
        }
        Ok(out)
    }
}

impl TypedOp for UieRetrieval {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let [q] = inputs else {
            bail!("UieRetrieval takes one input, got {}", inputs.len());
        };
        if q.datum_type != f32::datum_type() || q.rank() != 2 {
            bail!("UieRetrieval: query must be f32 [B, d], got {q:?}");
        }
        let b = q.shape[0].clone();
        let k = TDim::from(self.k);
        let d = TDim::from(self.centres.width());
        Ok(self
            .outputs
            .iter()
            .map(|o| match o {
                RetrievalOutput::Indices => i64::fact([b.clone(), k.clone()]),
                RetrievalOutput::Values | RetrievalOutput::Keep | RetrievalOutput::Weights => {
                    f32::fact([b.clone(), k.clone()])
                }
                RetrievalOutput::Sum => f32::fact([b.clone(), d.clone()]),
                RetrievalOutput::Gathered => f32::fact([b.clone(), k.clone(), d.clone()]),
            })
            .collect())
    }

    as_op!();
}

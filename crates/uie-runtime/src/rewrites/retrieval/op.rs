//! [`UieRetrieval`]: the fused retrieval as a tract op (`TypedOp` + `EvalOp` + `Op`).
//!
//! One input, per [`RetrievalInput`]: the scores `q · Mᵀ` `[B, N]` f32 computed by the graph's
//! MatMul (what the rewrite builds for small tables), or the query `[B, d]` f32, scored in the op
//! a block of rows at a time by tract's own matrix kernels (what the rewrite builds for large
//! tables: no `[B, N]` tensor); one output per [`RetrievalOutput`] it was built with, in that
//! order. The op has no declutter or codegen rule
//! of its own, so tract's optimiser leaves it as it is and optimises around it.

use std::sync::Arc;

use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
use tract_onnx::tract_core::internal::*;

use super::kernel::{retrieve_scored, CentreTable, Retrieved, ScoredRows, Wants};
use crate::rewrites::values;

/// Bytes of scores one block of [`RetrievalInput::QueryBlocks`] holds at most (rows `= max(1,
/// this / 4C)` for a chunk of `C` centres): small enough to stay in the L2 cache and in the
/// allocator's reused heap, large enough that the per-block run costs little.
pub const BLOCK_BYTES: usize = 1 << 20;

/// One chunk of the centre table with the runnable one-node plan scoring query rows against it:
/// `q · Mᵀ[:, first..first + len]` `[R, len]` with tract's matrix kernels (the graph's own MatMul
/// on a column slice of its constant table).
#[derive(Clone)]
pub struct ChunkScorer {
    /// The chunk's first centre.
    pub first: usize,
    /// Centres in the chunk.
    pub len: usize,
    /// The plan: input the query rows `[R, d]`, output their scores `[R, len]`.
    pub plan: Arc<TypedSimplePlan>,
}

impl std::fmt::Debug for ChunkScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkScorer({}..{})", self.first, self.first + self.len)
    }
}

impl PartialEq for ChunkScorer {
    fn eq(&self, other: &Self) -> bool {
        self.first == other.first && self.len == other.len && Arc::ptr_eq(&self.plan, &other.plan)
    }
}

/// Batches whose whole scores `[B, N]` take at most this many bytes are scored in one run of the
/// whole-table plan (a few rows against a large table: one run instead of one per chunk).
pub const WHOLE_BYTES: usize = 2 << 20;

/// The scorers of [`RetrievalInput::QueryBlocks`]: the whole table, and its column chunks in
/// order (the whole table again when it is one chunk).
#[derive(Debug, Clone, PartialEq)]
pub struct BlockScorers {
    /// All `N` centres.
    pub whole: ChunkScorer,
    /// Chunks of centres covering `0..N` in order.
    pub chunks: Vec<ChunkScorer>,
}

/// What the op's one input is, and how it gets its scores.
#[derive(Debug, Clone, PartialEq)]
pub enum RetrievalInput {
    /// The scores `q · Mᵀ` `[B, N]`, computed by the graph's MatMul.
    Scores,
    /// The query `[B, d]`, scored chunk of centres by chunk of centres (in order), a block of
    /// rows at a time ([`BLOCK_BYTES`] of scores per block), each block folded into its rows' K
    /// best before the next is scored: no `[B, N]` tensor, and the table chunk stays in cache
    /// while every row block is scored against it.
    QueryBlocks(BlockScorers),
}

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

/// The fused op: `R(query, M, K)` of `docs/model.md` §5 in one pass per row.
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
    /// The input and how the op gets its scores.
    pub input: RetrievalInput,
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

impl UieRetrieval {
    /// [`RetrievalInput::QueryBlocks`]: for each chunk of centres in order, scores the rows a
    /// block at a time with the chunk's plan and folds each block into the rows' K best (a
    /// batch small enough, [`WHOLE_BYTES`], in one run of the whole-table plan).
    fn score_blocks(&self, scorers: &BlockScorers, q: &TValue, b: usize) -> TractResult<Retrieved> {
        let mut acc = ScoredRows::new(&self.centres, self.k, self.wants(), b)?;
        let whole = b.saturating_mul(4 * self.centres.centres()) <= WHOLE_BYTES;
        let chunks = if whole {
            std::slice::from_ref(&scorers.whole)
        } else {
            &scorers.chunks[..]
        };
        for chunk in chunks {
            let rows = if whole {
                b
            } else {
                (BLOCK_BYTES / (4 * chunk.len.max(1))).max(1)
            };
            let mut state = chunk.plan.spawn()?;
            let mut start = 0;
            while start < b {
                let end = (start + rows).min(b);
                let block = if start == 0 && end == b {
                    q.clone()
                } else {
                    q.slice(0, start, end)?.into_tvalue()
                };
                let scores = state.run(tvec![block])?;
                // The matrix kernel leaves the upper vector state dirty (see `crate::upper`).
                crate::upper::clear();
                let [s] = scores.as_slice() else {
                    bail!(
                        "UieRetrieval: a chunk scorer returned {} values",
                        scores.len()
                    );
                };
                acc.push(&values::<f32>(s)?, chunk.len, start, chunk.first)?;
                start = end;
            }
        }
        Ok(acc.finish()?)
    }
}

impl Op for UieRetrieval {
    fn name(&self) -> StaticName {
        "UieRetrieval".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let input = match self.input {
            RetrievalInput::Scores => "scores from the graph",
            RetrievalInput::QueryBlocks(_) => "query, scored in row blocks by tract's kernels",
        };
        Ok(vec![format!(
            "N = {}, d = {}, K = {}, outputs {:?}, input: {input}",
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
        let width = match self.input {
            RetrievalInput::Scores => self.centres.centres(),
            RetrievalInput::QueryBlocks(_) => d,
        };
        if q.datum_type() != f32::datum_type() || q.rank() != 2 || q.shape()[1] != width {
            bail!(
                "UieRetrieval: input must be f32 [B, {width}], got {:?} {:?}",
                q.datum_type(),
                q.shape()
            );
        }
        let b = q.shape()[0];
        let mut got = match &self.input {
            RetrievalInput::QueryBlocks(scorers) => self.score_blocks(scorers, q, b)?,
            RetrievalInput::Scores => {
                retrieve_scored(&self.centres, self.k, &values::<f32>(q)?, self.wants())?
            }
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

//! The centre-retrieval rewrite: a retrieval sub-graph of `uie-compile`'s lowering (`MatMul` →
//! `TopK` → `Greater` → `Cast` → masked `Softmax` → `Gather` → weighted sum) becomes one
//! [`UieRetrieval`] op.
//!
//! tract's TopK sorts every row of the `[B, N]` scores; this is what made tract ~8× slower than
//! ONNX Runtime at batch 256. The fused op's kernel ([`kernel::retrieve_scored`]) scans each row
//! of scores once keeping the K best and does the mask, the softmax, the gather and the weighted
//! sum in the same pass. For tables of [`BLOCKED_MIN_CENTRES`] centres and more the op scores the
//! query itself with the graph's MatMul split by chunks of centres and blocks of rows, so no
//! `[B, N]` scores tensor exists ([`op::RetrievalInput`]). The match rules are in [`pattern`]; it
//! is anchored on every `Topk` node, and counts one per fused retrieval.

use tract_onnx::tract_core::ops::array::Topk;

use super::RewriteName;

pub mod kernel;
pub mod op;
pub mod pattern;

pub use kernel::{retrieve_scored, CentreTable, KernelError, Retrieved, ScoredRows, Wants};
pub use op::{RetrievalInput, RetrievalOutput, UieRetrieval};
pub use pattern::{BLOCKED_MIN_CENTRES, CHUNK_TABLE_BYTES};

anchored_rewrite!(
    /// The centre-retrieval rewrite ([`RewriteName::Retrieval`]).
    RetrievalRewrite,
    RewriteName::Retrieval,
    Topk
);

//! Fused centre retrieval for the embedded runtime (issue 8).
//!
//! The ONNX file `uie-compile` writes stays standard: retrieval is `MatMul` → `TopK` →
//! `Greater` → `Cast` → masked `Softmax` → `Gather` → weighted sum, which every runtime runs. After
//! loading, [`fuse_retrievals`] finds each such sub-graph in tract's typed model by structure and
//! constants and replaces everything after the MatMul with one op of this crate, [`UieRetrieval`],
//! whose kernel ([`kernel::retrieve_scored`]) scans each row of scores once keeping the K best and
//! does the mask, the softmax, the gather and the weighted sum in the same pass
//! ([`kernel::retrieve`] also scores queries itself, with a blocked safe-Rust kernel; measured
//! slower than tract's MatMul at batch 16 and 256, so the rewrite keeps the MatMul). For tables of
//! [`pattern::BLOCKED_MIN_CENTRES`] centres and more the op scores the query itself with that
//! MatMul split by chunks of centres and blocks of rows, so no `[B, N]` scores tensor exists
//! ([`op::RetrievalInput`]). tract's TopK sorts every row of `[B, N]` scores; this is what made
//! tract ~8× slower than ONNX Runtime at batch 256.
//!
//! [`Engine`](crate::Engine) applies the rewrite on load unless
//! [`EngineOptions::fuse_retrieval`](crate::EngineOptions::fuse_retrieval) is false, and reports
//! the count with [`Engine::fused_retrievals`](crate::Engine::fused_retrievals). The match rules
//! are in [`pattern`].
//!
//! The same way, [`fuse_attentions`] replaces each target attention over gathered table rows (the
//! behaviour-sequence attention with UCSE's history sum, UCSE's attention over the kept centres)
//! by [`UieAttention`] (module [`attention`], rules in [`attention_pattern`]), unless
//! [`EngineOptions::fuse_attention`](crate::EngineOptions::fuse_attention) is false, and
//! [`fuse_gate_mixes`] replaces each PLE gate mix (softmax, stack, weighted sum) by [`UieGateMix`]
//! (module [`gate`]) unless [`EngineOptions::fuse_gates`](crate::EngineOptions::fuse_gates) is
//! false.
//!
//! The same way, [`fuse_lookups`] replaces each hashed-embedding lookup `Gather(E, Mod(ids, H))`
//! (eight element-wise nodes plus the `Gather` once tract has expanded the `Mod`) by one
//! [`UieHashedLookup`] doing the modulo and the row copy in one pass ([`lookup`],
//! [`lookup_pattern`]); [`EngineOptions::fuse_lookups`](crate::EngineOptions::fuse_lookups) turns
//! it off.
//!
//! Last, [`merge_linear`] merges the linear layers that read the same input (a PLE level's first
//! expert layers and gates) into one MatMul plus a column slice per layer ([`merge`]);
//! [`EngineOptions::merge_linear`](crate::EngineOptions::merge_linear) turns it off.

use std::borrow::Cow;

use tract_onnx::tract_core::internal::{Datum, Tensor, TractResult};

pub mod attention;
pub mod attention_pattern;
pub mod gate;
pub mod kernel;
pub mod lookup;
pub mod lookup_pattern;
pub mod merge;
pub mod op;
pub mod pattern;

pub use attention::{attend, AttentionError, AttentionOutput, UieAttention};
pub use attention_pattern::fuse_attentions;
pub use gate::{fuse_gate_mixes, UieGateMix};
pub use kernel::{retrieve, retrieve_scored, CentreTable, KernelError, Retrieved, Wants};
pub use lookup::{EmbeddingTable, LookupError, UieHashedLookup};
pub use lookup_pattern::fuse_lookups;
pub use merge::merge_linear;
pub use op::{RetrievalOutput, UieRetrieval};
pub use pattern::fuse_retrievals;

/// A tensor's values in row-major order: borrowed when the tensor is laid out contiguously (the
/// usual case), copied otherwise. What every fused op reads its inputs through.
pub(crate) fn values<T: Datum + Copy>(t: &Tensor) -> TractResult<Cow<'_, [T]>> {
    let view = t.to_plain_array_view::<T>()?;
    Ok(match view.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(view.iter().copied().collect()),
    })
}

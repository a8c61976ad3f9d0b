//! The target-attention rewrite: each target attention over gathered table rows (the
//! behaviour-sequence attention with UCSE's masked history sum, UCSE's attention over the kept
//! centres) becomes one [`UieAttention`] op, which reads the table rows in place instead of
//! gathering an `[N, L, d]` tensor. Kernel and op in [`op`], match rules in [`pattern`]; anchored
//! on every `Softmax` node, one count per fused attention.

use tract_onnx::tract_core::ops::nn::Softmax;

use super::RewriteName;

pub mod op;
pub mod pattern;

pub use op::{attend, AttentionError, AttentionOutput, UieAttention};

anchored_rewrite!(
    /// The target-attention rewrite ([`RewriteName::Attention`]).
    AttentionRewrite,
    RewriteName::Attention,
    Softmax
);

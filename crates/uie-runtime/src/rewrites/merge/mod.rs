//! The same-input linear merge: the linear layers that read the same input (a PLE level's first
//! expert layers and gates) become one MatMul plus a column slice per layer, so the input is
//! packed once and one kernel runs. No op of its own (tract's MatMul and Slice); match rules in
//! [`pattern`]. Anchored on every `EinSum` node (the group it belongs to is merged), counting the
//! MatMuls merged away (members minus one per group).
//!
//! tract's declutter pass `PushSliceUp` would push each member's slice back into the merged
//! MatMul's weights and so split it again, so [`crate::Engine`] leaves that pass out when this
//! rewrite merged anything ([`crate::declutter`]).

use tract_onnx::tract_core::ops::einsum::EinSum;

use super::RewriteName;

pub mod pattern;

anchored_rewrite!(
    /// The same-input linear merge ([`RewriteName::Merge`]).
    MergeRewrite,
    RewriteName::Merge,
    EinSum
);

//! The PLE gate-mix rewrite: each gate mix (softmax of the gate's logits, stack of the experts,
//! weighted sum) becomes one [`UieGateMix`] op. Kernel and op in [`op`], match rules in
//! [`pattern`]; anchored on every `Reduce` node, one count per fused gate.

use tract_onnx::tract_core::ops::nn::Reduce;

use super::RewriteName;

pub mod op;
pub mod pattern;

pub use op::{gate_mix, UieGateMix};

anchored_rewrite!(
    /// The PLE gate-mix rewrite ([`RewriteName::Gate`]).
    GateRewrite,
    RewriteName::Gate,
    Reduce
);

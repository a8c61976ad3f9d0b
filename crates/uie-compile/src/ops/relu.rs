//! `Relu`: `max(x, 0)` element-wise on an f32 tensor.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Relu.html>. Minimum opset 14 (the current
//! definition). No attributes; one input.

use uie_model::Tensor;

use super::{unary_f32_eval, unary_f32_infer, Arg, Emission, OpError};
use crate::ir::TensorType;

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 14;

/// Shape rule: same type as the input (f32).
pub(crate) fn infer(args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    unary_f32_infer("Relu", args)
}

/// Reference: `max(x, 0)`.
pub(crate) fn eval(inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    unary_f32_eval("Relu", inputs, |x| if x > 0.0 { x } else { 0.0 })
}

/// ONNX encoding: op type only.
pub(crate) fn emit() -> Emission {
    Emission::plain("Relu")
}

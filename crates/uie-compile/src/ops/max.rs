//! `Max`: element-wise maximum of two f32 tensors with multidirectional broadcasting (the clamp
//! `max(hist_len, 1)` of the UCSE mean).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Max.html>. Minimum opset 13 (the current
//! definition). No attributes; ONNX takes one or more inputs (variadic), this IR exactly two.
//! NaN handling is not relied on (the lowering never feeds NaN).

use uie_model::Tensor;

use super::{broadcast, Arg, Emission, OpError};
use crate::ir::{Dtype, TensorType};

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 13;

/// Shape rule: the broadcast of both shapes; both operands f32.
pub(crate) fn infer(args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    broadcast::infer("Max", args, Dtype::F32)
}

/// Reference: `max(a, b)` element by element.
pub(crate) fn eval(inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    broadcast::eval_f32("Max", inputs, f32::max)
}

/// ONNX encoding: op type only.
pub(crate) fn emit() -> Emission {
    Emission::plain("Max")
}

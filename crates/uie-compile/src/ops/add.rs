//! `Add`: element-wise sum `a + b` of two f32 tensors with multidirectional broadcasting.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Add.html>. Minimum opset 14 (the current
//! definition; unchanged through 17). No attributes; both operands are inputs.

use uie_model::Tensor;

use super::{broadcast, Arg, Emission, OpError};
use crate::ir::{Dtype, TensorType};

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 14;

/// Shape rule: the broadcast of both shapes; both operands f32.
pub(crate) fn infer(args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    broadcast::infer("Add", args, Dtype::F32)
}

/// Reference: `a + b` element by element.
pub(crate) fn eval(inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    broadcast::eval_f32("Add", inputs, |a, b| a + b)
}

/// ONNX encoding: op type only.
pub(crate) fn emit() -> Emission {
    Emission::plain("Add")
}

//! `Less`: element-wise `a < b` with multidirectional broadcasting, a bool output (the history
//! mask `j < hist_len`, cast to f32 right after).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Less.html>. Minimum opset 13 (the current
//! definition up to 17). No attributes; both operands are inputs, both f32 or both int64. The
//! reference evaluator stores the bool result as i64 `0`/`1`.

use uie_model::Tensor;

use super::{broadcast, Arg, Emission, OpError};
use crate::ir::TensorType;

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 13;

/// Shape rule: the broadcast of both shapes; one numeric dtype in, bool out.
pub(crate) fn infer(args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    broadcast::compare_infer("Less", args)
}

/// Reference: `a < b` element by element (false when either is NaN).
pub(crate) fn eval(inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    broadcast::compare_eval("Less", inputs, |a, b| a < b, |a, b| a < b)
}

/// ONNX encoding: op type only.
pub(crate) fn emit() -> Emission {
    Emission::plain("Less")
}

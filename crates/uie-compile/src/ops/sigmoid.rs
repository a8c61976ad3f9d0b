//! `Sigmoid`: `1 / (1 + exp(−x))` element-wise on an f32 tensor.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Sigmoid.html>. Minimum opset 13 (the current
//! definition). No attributes; one input. tract approximates it: compare with the tolerance of
//! `docs/model.md` §7.

use uie_model::Tensor;

use super::{unary_f32_eval, unary_f32_infer, Arg, Emission, OpError};
use crate::ir::TensorType;

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 13;

/// Shape rule: same type as the input (f32).
pub(crate) fn infer(args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    unary_f32_infer("Sigmoid", args)
}

/// Reference: computed in f64 and rounded, stable for large |x|.
pub(crate) fn eval(inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    unary_f32_eval("Sigmoid", inputs, |x| {
        let x = f64::from(x);
        let y = if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        };
        y as f32
    })
}

/// ONNX encoding: op type only.
pub(crate) fn emit() -> Emission {
    Emission::plain("Sigmoid")
}

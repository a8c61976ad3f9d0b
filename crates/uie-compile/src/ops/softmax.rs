//! `Softmax`: `exp(x − max) / Σ exp(x − max)` along one axis of an f32 tensor (the gates).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Softmax.html>. Minimum opset 13 (from 13 on, the
//! normalisation runs along the single `axis`; before, over all trailing dims flattened).
//! Attribute `axis` (int, default −1, always emitted); one input.

use uie_model::Tensor;

use super::{
    arity, f32_tensor, f32s, norm_axis, prod, unary_f32_infer, Arg, AttrValue, Emission, OpError,
};
use crate::ir::TensorType;

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 13;

/// Shape rule: same type as the input (f32); the axis must exist.
pub(crate) fn infer(axis: i64, args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    let ty = unary_f32_infer("Softmax", args)?;
    norm_axis(axis, ty.shape.len())?;
    Ok(ty)
}

/// Reference: max-shifted, computed in f64.
pub(crate) fn eval(axis: i64, inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    arity("Softmax", inputs, 1)?;
    let x = f32s(inputs[0], "input")?;
    let shape = &inputs[0].shape;
    let a = norm_axis(axis, shape.len())?;
    let (outer, dim, inner) = (prod(&shape[..a]), shape[a], prod(&shape[a + 1..]));
    let mut out = vec![0f32; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * dim + j) * inner + i;
            let max = (0..dim)
                .map(|j| f64::from(x[at(j)]))
                .fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..dim).map(|j| (f64::from(x[at(j)]) - max).exp()).sum();
            for j in 0..dim {
                out[at(j)] = ((f64::from(x[at(j)]) - max).exp() / sum) as f32;
            }
        }
    }
    Ok(f32_tensor(shape.clone(), out))
}

/// ONNX encoding: attribute `axis`.
pub(crate) fn emit(axis: i64) -> Emission {
    Emission {
        op_type: "Softmax",
        attributes: vec![("axis", AttrValue::Int(axis))],
    }
}

//! `Unsqueeze`: inserts size-1 axes (expert outputs `[N, D] → [N, 1, D]`, gate weights
//! `[N, E] → [N, E, 1]`).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Unsqueeze.html>. Minimum opset 13 (from 13 on, the
//! axes are the second input, an int64 1-D tensor; tract needs it constant, so it must be an
//! initializer). No attributes. Axes index the output's dims and may be negative.

use uie_model::Tensor;

use super::{arity, axes_from, const_axes, Arg, Emission, OpError};
use crate::ir::{Dim, Dtype, TensorType};

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 13;

fn insert<T: Clone>(shape: &[T], axes: &[usize], one: T) -> Vec<T> {
    let mut out = Vec::with_capacity(shape.len() + axes.len());
    let mut rest = shape.iter();
    for d in 0..shape.len() + axes.len() {
        if axes.contains(&d) {
            out.push(one.clone());
        } else if let Some(x) = rest.next() {
            out.push(x.clone());
        }
    }
    out
}

/// Shape rule: the input's dims with a 1 at every (output-indexed) axis.
pub(crate) fn infer(args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    arity("Unsqueeze", args, 2)?;
    super::expect_dtype(&args[1], Dtype::I64, "axes")?;
    let n_axes = args[1]
        .constant
        .map(|t| t.shape.iter().product::<usize>())
        .unwrap_or(0);
    let axes = const_axes(&args[1], args[0].ty.shape.len() + n_axes)?;
    Ok(TensorType {
        dtype: args[0].ty.dtype,
        shape: insert(&args[0].ty.shape, &axes, Dim::Fixed(1)),
    })
}

/// Reference: same data, new shape.
pub(crate) fn eval(inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    arity("Unsqueeze", inputs, 2)?;
    let n_axes = inputs[1].shape.iter().product::<usize>();
    let axes = axes_from(inputs[1], inputs[0].shape.len() + n_axes)?;
    Ok(Tensor {
        shape: insert(&inputs[0].shape, &axes, 1),
        data: inputs[0].data.clone(),
    })
}

/// ONNX encoding: op type only (axes are an input).
pub(crate) fn emit() -> Emission {
    Emission::plain("Unsqueeze")
}

//! `CumSum`: running sum along one axis (with `exclusive = 1` on a tensor of ones, the positions
//! `j = 0, 1, …, L−1` of a dynamic-length history, for the mask `j < hist_len`).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__CumSum.html>. Minimum opset 14 (the current
//! definition; 11 was the first). Attributes `exclusive` (int 0/1) and `reverse` (always 0), both
//! emitted; the axis is the second input, a scalar int64 that tract needs constant, so it must be
//! an initializer. Data f32 or i64.

use uie_model::{Tensor, TensorData};

use super::{arity, i64s, norm_axis, op_err, prod, Arg, AttrValue, Emission, OpError};
use crate::ir::{Dtype, TensorType};

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 14;

fn axis_of(t: &Tensor, rank: usize) -> Result<usize, OpError> {
    let v = i64s(t, "axis")?;
    match v {
        [a] if t.shape.is_empty() => norm_axis(*a, rank),
        _ => op_err(format!(
            "CumSum: axis must be a scalar, got shape {:?}",
            t.shape
        )),
    }
}

/// Shape rule: same type as the data (f32 or i64); the axis a constant scalar.
pub(crate) fn infer(args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    arity("CumSum", args, 2)?;
    if args[0].ty.dtype == Dtype::Bool {
        return op_err("CumSum: data must be f32 or i64");
    }
    let axis = args[1]
        .constant
        .ok_or_else(|| OpError("CumSum: the axis must be a constant (an initializer)".into()))?;
    axis_of(axis, args[0].ty.shape.len())?;
    Ok(args[0].ty.clone())
}

fn scan<T: Copy + std::ops::Add<Output = T>>(
    x: &[T],
    shape: &[usize],
    a: usize,
    exclusive: bool,
    zero: T,
) -> Vec<T> {
    let (outer, dim, inner) = (prod(&shape[..a]), shape[a], prod(&shape[a + 1..]));
    let mut out = vec![zero; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = zero;
            for j in 0..dim {
                let at = (o * dim + j) * inner + i;
                if exclusive {
                    out[at] = acc;
                    acc = acc + x[at];
                } else {
                    acc = acc + x[at];
                    out[at] = acc;
                }
            }
        }
    }
    out
}

/// Reference: sequential running sum in index order.
pub(crate) fn eval(exclusive: bool, inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    arity("CumSum", inputs, 2)?;
    let x = inputs[0];
    let a = axis_of(inputs[1], x.shape.len())?;
    let data = match &x.data {
        TensorData::F32(v) => TensorData::F32(scan(v, &x.shape, a, exclusive, 0.0)),
        TensorData::I64(v) => TensorData::I64(scan(v, &x.shape, a, exclusive, 0)),
    };
    Ok(Tensor {
        shape: x.shape.clone(),
        data,
    })
}

/// ONNX encoding: attributes `exclusive` and `reverse = 0`.
pub(crate) fn emit(exclusive: bool) -> Emission {
    Emission {
        op_type: "CumSum",
        attributes: vec![
            ("exclusive", AttrValue::Int(i64::from(exclusive))),
            ("reverse", AttrValue::Int(0)),
        ],
    }
}

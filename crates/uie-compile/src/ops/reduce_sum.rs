//! `ReduceSum`: sum of an f32 tensor over some axes (the gate mix `Σ_j g_j · expert_j` over the
//! stacked-experts axis).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__ReduceSum.html>. Minimum opset 13 (from 13 on, the
//! axes are the optional second input, an int64 1-D tensor; tract needs it constant, so it must be
//! an initializer, and this IR requires it non-empty). Attribute `keepdims` (int 0/1, always
//! emitted); `noop_with_empty_axes` is left at its default.

use uie_model::Tensor;

use super::{
    arity, axes_from, const_axes, expect_dtype, f32_tensor, f32s, op_err, Arg, AttrValue, Emission,
    OpError,
};
use crate::ir::{Dim, Dtype, TensorType};

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 13;

fn reduced<T: Clone>(shape: &[T], axes: &[usize], keepdims: bool, one: T) -> Vec<T> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(d, x)| match (axes.contains(&d), keepdims) {
            (false, _) => Some(x.clone()),
            (true, true) => Some(one.clone()),
            (true, false) => None,
        })
        .collect()
}

/// Shape rule: reduced axes dropped (or kept as 1 with `keepdims`); f32.
pub(crate) fn infer(keepdims: bool, args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    arity("ReduceSum", args, 2)?;
    expect_dtype(&args[0], Dtype::F32, "data")?;
    expect_dtype(&args[1], Dtype::I64, "axes")?;
    let axes = const_axes(&args[1], args[0].ty.shape.len())?;
    if axes.is_empty() {
        return op_err("ReduceSum: empty axes are not supported");
    }
    Ok(TensorType {
        dtype: Dtype::F32,
        shape: reduced(&args[0].ty.shape, &axes, keepdims, Dim::Fixed(1)),
    })
}

/// Reference: accumulates every element into its output cell, in f64.
pub(crate) fn eval(keepdims: bool, inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    arity("ReduceSum", inputs, 2)?;
    let x = f32s(inputs[0], "data")?;
    let shape = &inputs[0].shape;
    let axes = axes_from(inputs[1], shape.len())?;
    if axes.is_empty() {
        return op_err("ReduceSum: empty axes are not supported");
    }
    let kept = reduced(shape, &axes, true, 1);
    let mut acc = vec![0f64; kept.iter().product()];
    let mut idx = vec![0usize; shape.len()];
    for &v in x {
        let mut o = 0;
        for d in 0..shape.len() {
            o = o * kept[d] + if axes.contains(&d) { 0 } else { idx[d] };
        }
        acc[o] += f64::from(v);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(f32_tensor(
        reduced(shape, &axes, keepdims, 1),
        acc.into_iter().map(|v| v as f32).collect(),
    ))
}

/// ONNX encoding: attribute `keepdims`.
pub(crate) fn emit(keepdims: bool) -> Emission {
    Emission {
        op_type: "ReduceSum",
        attributes: vec![("keepdims", AttrValue::Int(i64::from(keepdims)))],
    }
}

//! `TopK`: the `K` largest entries along the last axis, sorted, with their int64 indices (the
//! centre retrieval of `docs/model.md` §5).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__TopK.html>. Minimum opset 11 (adds `largest` and
//! `sorted`; K became an input in 10). Attributes `axis = -1`, `largest = 1`, `sorted = 1`, always
//! emitted. Inputs: the f32 data and K, a `[1]` int64 tensor that tract needs constant, so it must
//! be an initializer. Outputs: values (f32) and indices (int64), both `[…, K]`. Among equal values
//! the lower index comes first, as ONNX specifies (tract's stable sort and ONNX Runtime agree).
//! The last axis must have a fixed size `C ≥ K ≥ 1`.

use std::cmp::Ordering;

use uie_model::{Tensor, TensorData};

use super::{arity, expect_dtype, f32s, i64s, op_err, Arg, AttrValue, Emission, OpError};
use crate::ir::{Dim, Dtype, TensorType};

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 11;

fn k_of(t: &Tensor) -> Result<usize, OpError> {
    match (i64s(t, "K")?, t.shape.as_slice()) {
        ([k], [1]) if *k >= 1 => Ok(*k as usize),
        _ => op_err(format!(
            "TopK: K must be a [1] int64 ≥ 1, got shape {:?}",
            t.shape
        )),
    }
}

/// Shape rule: values f32 and indices i64, the last dim replaced by K.
pub(crate) fn infer(args: &[Arg<'_>]) -> Result<Vec<TensorType>, OpError> {
    arity("TopK", args, 2)?;
    expect_dtype(&args[0], Dtype::F32, "data")?;
    expect_dtype(&args[1], Dtype::I64, "K")?;
    let k = k_of(
        args[1]
            .constant
            .ok_or_else(|| OpError("TopK: K must be a constant (an initializer)".into()))?,
    )?;
    let mut shape = args[0].ty.shape.clone();
    match shape.last_mut() {
        Some(last @ Dim::Fixed(_)) => {
            if let Dim::Fixed(c) = last {
                if k > *c {
                    return op_err(format!("TopK: K = {k} exceeds the axis size {c}"));
                }
            }
            *last = Dim::Fixed(k);
        }
        Some(Dim::Sym(s)) => return op_err(format!("TopK: the last axis is symbolic ({s})")),
        None => return op_err("TopK: the data must have rank ≥ 1"),
    }
    Ok(vec![
        TensorType {
            dtype: Dtype::F32,
            shape: shape.clone(),
        },
        TensorType {
            dtype: Dtype::I64,
            shape,
        },
    ])
}

/// Reference: per row, a stable sort by descending value (ties keep the lower index first).
pub(crate) fn eval(inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
    arity("TopK", inputs, 2)?;
    let x = f32s(inputs[0], "data")?;
    let k = k_of(inputs[1])?;
    let shape = &inputs[0].shape;
    let c = *shape
        .last()
        .ok_or_else(|| OpError("TopK: the data must have rank ≥ 1".into()))?;
    if k > c {
        return op_err(format!("TopK: K = {k} exceeds the axis size {c}"));
    }
    let rows = x.len().checked_div(c).unwrap_or(0);
    let mut values = Vec::with_capacity(rows * k);
    let mut indices = Vec::with_capacity(rows * k);
    let mut order: Vec<usize> = Vec::with_capacity(c);
    for row in x.chunks_exact(c.max(1)).take(rows) {
        order.clear();
        order.extend(0..c);
        order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap_or(Ordering::Equal));
        for &j in &order[..k] {
            values.push(row[j]);
            indices.push(j as i64);
        }
    }
    let mut out_shape = shape.clone();
    if let Some(last) = out_shape.last_mut() {
        *last = k;
    }
    Ok(vec![
        Tensor {
            shape: out_shape.clone(),
            data: TensorData::F32(values),
        },
        Tensor {
            shape: out_shape,
            data: TensorData::I64(indices),
        },
    ])
}

/// ONNX encoding: `axis = -1`, `largest = 1`, `sorted = 1`.
pub(crate) fn emit() -> Emission {
    Emission {
        op_type: "TopK",
        attributes: vec![
            ("axis", AttrValue::Int(-1)),
            ("largest", AttrValue::Int(1)),
            ("sorted", AttrValue::Int(1)),
        ],
    }
}

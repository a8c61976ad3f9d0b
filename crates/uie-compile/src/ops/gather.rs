//! `Gather`: slices of the data along `axis` picked by int64 indices (embedding lookup with
//! `axis = 0` on a `[rows, width]` table).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Gather.html>. Minimum opset 13 (the current
//! definition). Attribute `axis` (int); data and indices are inputs. Output shape:
//! `data[..axis] ++ indices ++ data[axis+1..]`. An index outside `[-dim, dim)` is an error here
//! (tract panics, ONNX Runtime errors), which the `Mod` in front of every lookup rules out.

use uie_model::{Tensor, TensorData};

use super::{
    arity, expect_dtype, i64s, norm_axis, op_err, prod, Arg, AttrValue, Emission, OpError,
};
use crate::ir::{Dim, Dtype, TensorType};

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 13;

/// Shape rule: `data[..axis] ++ indices ++ data[axis+1..]`; indices i64.
pub(crate) fn infer(axis: i64, args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    arity("Gather", args, 2)?;
    expect_dtype(&args[1], Dtype::I64, "indices")?;
    let data = &args[0].ty.shape;
    let a = norm_axis(axis, data.len())?;
    let mut shape: Vec<Dim> = data[..a].to_vec();
    shape.extend(args[1].ty.shape.iter().cloned());
    shape.extend(data[a + 1..].iter().cloned());
    Ok(TensorType {
        dtype: args[0].ty.dtype,
        shape,
    })
}

fn gather<T: Copy>(data: &[T], shape: &[usize], a: usize, idx: &[i64]) -> Result<Vec<T>, OpError> {
    let outer = prod(&shape[..a]);
    let dim = shape[a];
    let inner = prod(&shape[a + 1..]);
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            let r = if i < 0 { i + dim as i64 } else { i };
            if r < 0 || r >= dim as i64 {
                return op_err(format!(
                    "Gather: index {i} is out of range for a dim of {dim}"
                ));
            }
            let start = (o * dim + r as usize) * inner;
            out.extend_from_slice(&data[start..start + inner]);
        }
    }
    Ok(out)
}

/// Reference: copies the selected slices.
pub(crate) fn eval(axis: i64, inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    arity("Gather", inputs, 2)?;
    let (data, indices) = (inputs[0], inputs[1]);
    let idx = i64s(indices, "indices")?;
    let a = norm_axis(axis, data.shape.len())?;
    let mut shape = data.shape[..a].to_vec();
    shape.extend(&indices.shape);
    shape.extend(&data.shape[a + 1..]);
    let data = match &data.data {
        TensorData::F32(v) => TensorData::F32(gather(v, &data.shape, a, idx)?),
        TensorData::I64(v) => TensorData::I64(gather(v, &data.shape, a, idx)?),
    };
    Ok(Tensor { shape, data })
}

/// ONNX encoding: attribute `axis`.
pub(crate) fn emit(axis: i64) -> Emission {
    Emission {
        op_type: "Gather",
        attributes: vec![("axis", AttrValue::Int(axis))],
    }
}

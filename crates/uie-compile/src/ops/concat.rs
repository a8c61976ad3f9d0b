//! `Concat`: joins tensors of one dtype and rank along `axis` (the backbone input, the stacked
//! experts, the output columns).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Concat.html>. Minimum opset 13 (the current
//! definition). Attribute `axis` (int, required); one or more inputs. The joined axis must have a
//! fixed size in every input; the others must agree.

use uie_model::{Tensor, TensorData};

use super::{norm_axis, op_err, prod, same_dim, Arg, AttrValue, Emission, OpError};
use crate::ir::{Dim, TensorType};

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 13;

/// Shape rule: other dims equal, the joined dim the sum of the inputs' (fixed) sizes.
pub(crate) fn infer(axis: i64, args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    let first = args
        .first()
        .ok_or_else(|| OpError("Concat needs at least one input".into()))?;
    let rank = first.ty.shape.len();
    let a = norm_axis(axis, rank)?;
    let mut total = 0;
    for (i, arg) in args.iter().enumerate() {
        if arg.ty.dtype != first.ty.dtype || arg.ty.shape.len() != rank {
            return op_err(format!(
                "Concat: input {i} is {}, input 0 is {}",
                arg.ty, first.ty
            ));
        }
        for (d, (x, y)) in arg.ty.shape.iter().zip(&first.ty.shape).enumerate() {
            if d != a {
                same_dim(x, y, &format!("Concat input {i} dim {d}"))?;
            }
        }
        match &arg.ty.shape[a] {
            Dim::Fixed(n) => total += n,
            Dim::Sym(s) => {
                return op_err(format!(
                    "Concat: the joined axis of input {i} is symbolic ({s})"
                ))
            }
        }
    }
    let mut shape = first.ty.shape.clone();
    shape[a] = Dim::Fixed(total);
    Ok(TensorType {
        dtype: first.ty.dtype,
        shape,
    })
}

fn join<T: Copy>(parts: &[(&[T], &[usize])], a: usize) -> Vec<T> {
    let outer = parts.first().map(|(_, s)| prod(&s[..a])).unwrap_or(0);
    let mut out = Vec::new();
    for o in 0..outer {
        for (data, shape) in parts {
            let chunk = prod(&shape[a..]);
            out.extend_from_slice(&data[o * chunk..(o + 1) * chunk]);
        }
    }
    out
}

/// Reference: copies each input's slab per outer index.
pub(crate) fn eval(axis: i64, inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    let first = inputs
        .first()
        .ok_or_else(|| OpError("Concat needs at least one input".into()))?;
    let a = norm_axis(axis, first.shape.len())?;
    let mut shape = first.shape.clone();
    shape[a] = 0;
    for (i, t) in inputs.iter().enumerate() {
        let ok = t.dtype() == first.dtype()
            && t.shape.len() == first.shape.len()
            && t.shape
                .iter()
                .zip(&first.shape)
                .enumerate()
                .all(|(d, (x, y))| d == a || x == y);
        if !ok {
            return op_err(format!(
                "Concat: input {i} {:?} does not fit input 0 {:?}",
                t.shape, first.shape
            ));
        }
        shape[a] += t.shape[a];
    }
    let data = match &first.data {
        TensorData::F32(_) => {
            let parts: Vec<(&[f32], &[usize])> = inputs
                .iter()
                .filter_map(|t| t.as_f32().map(|v| (v, t.shape.as_slice())))
                .collect();
            TensorData::F32(join(&parts, a))
        }
        TensorData::I64(_) => {
            let parts: Vec<(&[i64], &[usize])> = inputs
                .iter()
                .filter_map(|t| t.as_i64().map(|v| (v, t.shape.as_slice())))
                .collect();
            TensorData::I64(join(&parts, a))
        }
    };
    Ok(Tensor { shape, data })
}

/// ONNX encoding: attribute `axis`.
pub(crate) fn emit(axis: i64) -> Emission {
    Emission {
        op_type: "Concat",
        attributes: vec![("axis", AttrValue::Int(axis))],
    }
}

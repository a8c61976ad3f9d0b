//! Multidirectional (numpy-style) broadcasting shared by the element-wise binary ops.
//!
//! Shapes are aligned on their trailing dims; each pair of dims must be equal or one of them 1.
//! See <https://onnx.ai/onnx/repo-docs/Broadcasting.html>.

use uie_model::{Tensor, TensorData};

use super::{arity, op_err, Arg, OpError};
use crate::ir::{Dim, Dtype, TensorType};

/// The broadcast of two symbolic shapes.
pub(crate) fn broadcast_dims(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, OpError> {
    let rank = a.len().max(b.len());
    let one = Dim::Fixed(1);
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            &a[i + a.len() - rank]
        } else {
            &one
        };
        let db = if i + b.len() >= rank {
            &b[i + b.len() - rank]
        } else {
            &one
        };
        let d = if da == db || *db == one {
            da.clone()
        } else if *da == one {
            db.clone()
        } else {
            return op_err(format!("cannot broadcast dim {da} with {db}"));
        };
        out.push(d);
    }
    Ok(out)
}

/// The shape rule of a binary element-wise op on `dtype` operands.
pub(crate) fn infer(what: &str, args: &[Arg<'_>], dtype: Dtype) -> Result<TensorType, OpError> {
    arity(what, args, 2)?;
    for (i, a) in args.iter().enumerate() {
        if a.ty.dtype != dtype {
            return op_err(format!("{what}: input {i} must be {dtype}, got {}", a.ty));
        }
    }
    Ok(TensorType {
        dtype,
        shape: broadcast_dims(&args[0].ty.shape, &args[1].ty.shape)?,
    })
}

fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    let to_dims = |s: &[usize]| s.iter().map(|&d| Dim::Fixed(d)).collect::<Vec<_>>();
    broadcast_dims(&to_dims(a), &to_dims(b))?
        .into_iter()
        .map(|d| match d {
            Dim::Fixed(n) => Ok(n),
            Dim::Sym(s) => op_err(format!("unexpected symbolic dim {s}")),
        })
        .collect()
}

/// Row-major strides of `shape` as seen from an output of rank `rank` (0 on broadcast dims).
fn strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let rank = out.len();
    let mut s = vec![0; rank];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        let o = i + rank - shape.len();
        s[o] = if shape[i] == 1 && out[o] != 1 { 0 } else { acc };
        acc *= shape[i];
    }
    s
}

/// Applies `f` element-wise to two broadcast operands.
pub(crate) fn apply<T: Copy>(
    a: &[T],
    ashape: &[usize],
    b: &[T],
    bshape: &[usize],
    f: impl Fn(T, T) -> Result<T, OpError>,
) -> Result<(Vec<usize>, Vec<T>), OpError> {
    let out = broadcast_shape(ashape, bshape)?;
    let (sa, sb) = (strides(ashape, &out), strides(bshape, &out));
    let n: usize = out.iter().product();
    let mut data = Vec::with_capacity(n);
    let mut idx = vec![0usize; out.len()];
    for _ in 0..n {
        let ia: usize = idx.iter().zip(&sa).map(|(i, s)| i * s).sum();
        let ib: usize = idx.iter().zip(&sb).map(|(i, s)| i * s).sum();
        data.push(f(a[ia], b[ib])?);
        for d in (0..out.len()).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok((out, data))
}

/// Evaluates a binary f32 op.
pub(crate) fn eval_f32(
    what: &str,
    inputs: &[&Tensor],
    f: impl Fn(f32, f32) -> f32,
) -> Result<Tensor, OpError> {
    arity(what, inputs, 2)?;
    let a = super::f32s(inputs[0], "input 0")?;
    let b = super::f32s(inputs[1], "input 1")?;
    let (shape, data) = apply(a, &inputs[0].shape, b, &inputs[1].shape, |x, y| Ok(f(x, y)))?;
    Ok(Tensor {
        shape,
        data: TensorData::F32(data),
    })
}

/// The shape rule of a comparison (`Greater`, `Less`): two operands of one numeric dtype (f32 or
/// i64), broadcast; the output is bool.
pub(crate) fn compare_infer(what: &str, args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    arity(what, args, 2)?;
    let dtype = args[0].ty.dtype;
    if dtype == Dtype::Bool || args[1].ty.dtype != dtype {
        return op_err(format!(
            "{what}: operands must both be f32 or both i64, got {} and {}",
            args[0].ty, args[1].ty
        ));
    }
    Ok(TensorType {
        dtype: Dtype::Bool,
        shape: broadcast_dims(&args[0].ty.shape, &args[1].ty.shape)?,
    })
}

/// Evaluates a comparison on two f32 or two i64 operands; the bool result is stored as i64
/// `0`/`1` (the evaluator's representation of bool values).
pub(crate) fn compare_eval(
    what: &str,
    inputs: &[&Tensor],
    f32_cmp: impl Fn(f32, f32) -> bool,
    i64_cmp: impl Fn(i64, i64) -> bool,
) -> Result<Tensor, OpError> {
    arity(what, inputs, 2)?;
    let (a, b) = (inputs[0], inputs[1]);
    let (shape, data) = match (&a.data, &b.data) {
        (TensorData::F32(x), TensorData::F32(y)) => {
            let (shape, flags) = apply(x, &a.shape, y, &b.shape, |p, q| {
                Ok(if f32_cmp(p, q) { 1.0 } else { 0.0 })
            })?;
            (shape, flags.into_iter().map(|v| v as i64).collect())
        }
        (TensorData::I64(x), TensorData::I64(y)) => apply(x, &a.shape, y, &b.shape, |p, q| {
            Ok(i64::from(i64_cmp(p, q)))
        })?,
        _ => {
            return op_err(format!(
                "{what}: operands must have one dtype, got {} and {}",
                a.dtype(),
                b.dtype()
            ))
        }
    };
    Ok(Tensor {
        shape,
        data: TensorData::I64(data),
    })
}

//! `MatMul`: the product of two 2-D f32 matrices `[M, K] · [K, P] → [M, P]` (the linear layers:
//! activations times an `[in, out]` weight).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__MatMul.html>. Minimum opset 13 (the current
//! definition). No attributes; both operands are inputs. ONNX also defines batched and 1-D
//! forms; this IR only uses (and only accepts) the 2-D one.

use uie_model::Tensor;

use super::{arity, expect_dtype, f32_tensor, f32s, op_err, same_dim, Arg, Emission, OpError};
use crate::ir::{Dtype, TensorType};

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 13;

/// Shape rule: `[M, K] · [K, P] → [M, P]`, both f32.
pub(crate) fn infer(args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    arity("MatMul", args, 2)?;
    expect_dtype(&args[0], Dtype::F32, "A")?;
    expect_dtype(&args[1], Dtype::F32, "B")?;
    let (a, b) = (&args[0].ty.shape, &args[1].ty.shape);
    if a.len() != 2 || b.len() != 2 {
        return op_err(format!(
            "MatMul: only 2-D operands are supported, got {} and {}",
            args[0].ty, args[1].ty
        ));
    }
    same_dim(&a[1], &b[0], "MatMul inner dims")?;
    Ok(TensorType {
        dtype: Dtype::F32,
        shape: vec![a[0].clone(), b[1].clone()],
    })
}

/// Reference: triple loop, accumulated in f64.
pub(crate) fn eval(inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    arity("MatMul", inputs, 2)?;
    let (a, b) = (f32s(inputs[0], "A")?, f32s(inputs[1], "B")?);
    let (sa, sb) = (&inputs[0].shape, &inputs[1].shape);
    if sa.len() != 2 || sb.len() != 2 || sa[1] != sb[0] {
        return op_err(format!("MatMul: shapes {sa:?} and {sb:?} do not multiply"));
    }
    let (m, k, p) = (sa[0], sa[1], sb[1]);
    let mut out = Vec::with_capacity(m * p);
    for i in 0..m {
        for j in 0..p {
            let mut acc = 0f64;
            for t in 0..k {
                acc += f64::from(a[i * k + t]) * f64::from(b[t * p + j]);
            }
            out.push(acc as f32);
        }
    }
    Ok(f32_tensor(vec![m, p], out))
}

/// ONNX encoding: op type only.
pub(crate) fn emit() -> Emission {
    Emission::plain("MatMul")
}

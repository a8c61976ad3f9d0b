//! `MatMul`: the product of two 2-D f32 matrices `[M, K] · [K, P] → [M, P]` (the linear layers:
//! activations times an `[in, out]` weight), or the batched product of two 3-D tensors with the
//! same leading (batch) dim `[N, M, K] · [N, K, P] → [N, M, P]` (attention scores and weighted
//! sums over a sequence, the PLE gate mix).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__MatMul.html>. Minimum opset 13 (the current
//! definition). No attributes; both operands are inputs. ONNX also defines 1-D and broadcasting
//! batched forms; this IR only uses (and only accepts) the two above.

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
    match (a.len(), b.len()) {
        (2, 2) => {
            same_dim(&a[1], &b[0], "MatMul inner dims")?;
            Ok(TensorType {
                dtype: Dtype::F32,
                shape: vec![a[0].clone(), b[1].clone()],
            })
        }
        (3, 3) => {
            same_dim(&a[0], &b[0], "MatMul batch dims")?;
            same_dim(&a[2], &b[1], "MatMul inner dims")?;
            Ok(TensorType {
                dtype: Dtype::F32,
                shape: vec![a[0].clone(), a[1].clone(), b[2].clone()],
            })
        }
        _ => op_err(format!(
            "MatMul: only 2-D by 2-D or batched 3-D by 3-D operands (same batch) are supported, \
             got {} and {}",
            args[0].ty, args[1].ty
        )),
    }
}

pub(crate) fn eval(inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    arity("MatMul", inputs, 2)?;
    let (a, b) = (f32s(inputs[0], "A")?, f32s(inputs[1], "B")?);
    let (sa, sb) = (&inputs[0].shape, &inputs[1].shape);
    let (batch, m, k, p, out_shape) = match (sa.as_slice(), sb.as_slice()) {
        ([m, k], [k2, p]) if k == k2 => (1, *m, *k, *p, vec![*m, *p]),
        ([n, m, k], [n2, k2, p]) if n == n2 && k == k2 => (*n, *m, *k, *p, vec![*n, *m, *p]),
        _ => return op_err(format!("MatMul: shapes {sa:?} and {sb:?} do not multiply")),
    };
    let mut out = Vec::with_capacity(batch * m * p);
    for bi in 0..batch {
        let (a, b) = (&a[bi * m * k..], &b[bi * k * p..]);
        for i in 0..m {
            for j in 0..p {
                let mut acc = 0f64;
                for t in 0..k {
                    acc += f64::from(a[i * k + t]) * f64::from(b[t * p + j]);
                }
                out.push(acc as f32);
            }
        }
    }
    Ok(f32_tensor(out_shape, out))
}

pub(crate) fn emit() -> Emission {
    Emission::plain("MatMul")
}

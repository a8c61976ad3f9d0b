//! `Mod` with `fmod = 0`: integer remainder with the sign of the divisor (Python's `%`), the rule
//! that maps any int64 id into `[0, H_f)` (`docs/model.md` §1).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Mod.html>. Minimum opset 13 (the current
//! definition). Attribute `fmod` (int) is always emitted as 0; both operands are inputs (the
//! divisor is an int64 initializer, a scalar in the lowering). Multidirectional broadcasting.

use uie_model::{Tensor, TensorData};

use super::{arity, broadcast, i64s, op_err, Arg, AttrValue, Emission, OpError};
use crate::ir::{Dtype, TensorType};

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 13;

/// Shape rule: the broadcast of both shapes; both operands i64.
pub(crate) fn infer(args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    broadcast::infer("Mod", args, Dtype::I64)
}

/// Python modulo of one pair; a zero divisor is an error.
pub(crate) fn python_mod(a: i64, b: i64) -> Result<i64, OpError> {
    if b == 0 {
        return op_err("Mod: division by zero");
    }
    let r = a.wrapping_rem(b);
    Ok(if r != 0 && ((r < 0) != (b < 0)) {
        r + b
    } else {
        r
    })
}

/// Reference: [`python_mod`] element by element.
pub(crate) fn eval(inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    arity("Mod", inputs, 2)?;
    let a = i64s(inputs[0], "input 0")?;
    let b = i64s(inputs[1], "input 1")?;
    let (shape, data) = broadcast::apply(a, &inputs[0].shape, b, &inputs[1].shape, python_mod)?;
    Ok(Tensor {
        shape,
        data: TensorData::I64(data),
    })
}

/// ONNX encoding: `Mod` with `fmod = 0`.
pub(crate) fn emit() -> Emission {
    Emission {
        op_type: "Mod",
        attributes: vec![("fmod", AttrValue::Int(0))],
    }
}

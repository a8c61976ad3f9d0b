//! `Cast`: converts a tensor to another element type (bool masks to f32, int64 lengths to f32,
//! f32 to int64).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Cast.html>. Minimum opset 13 (the definition
//! current through opset 18; 19 only adds `saturate` for float8). Attribute `to` (int, the ONNX
//! `TensorProto.DataType` number: `FLOAT = 1`, `INT64 = 7`); one input. The only target accepted is
//! f32 (from f32, i64 or bool): tract 0.23 turns a Cast to int64 into a symbolic-dim (`TDim`)
//! tensor that it cannot return as an output, and the lowering never needs one.

use uie_model::{Tensor, TensorData};

use super::{arity, op_err, Arg, AttrValue, Emission, OpError};
use crate::ir::{Dtype, TensorType};

/// First opset with this definition.
pub(crate) const MIN_OPSET: i64 = 13;

/// `TensorProto.DataType.FLOAT`.
const ONNX_FLOAT: i64 = 1;
/// `TensorProto.DataType.INT64`.
const ONNX_INT64: i64 = 7;

fn check(from: Dtype, to: Dtype) -> Result<(), OpError> {
    match to {
        Dtype::F32 => Ok(()),
        _ => op_err(format!(
            "Cast: {from} → {to} is not supported (the only target is f32)"
        )),
    }
}

/// Shape rule: same shape, dtype `to`.
pub(crate) fn infer(to: Dtype, args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    arity("Cast", args, 1)?;
    check(args[0].ty.dtype, to)?;
    Ok(TensorType {
        dtype: to,
        shape: args[0].ty.shape.clone(),
    })
}

/// Reference: element-wise `as` conversion to f32 (bool values arrive as i64 `0`/`1`).
pub(crate) fn eval(to: Dtype, inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    arity("Cast", inputs, 1)?;
    let x = inputs[0];
    check(x.dtype().into(), to)?;
    let data = match &x.data {
        TensorData::F32(v) => TensorData::F32(v.clone()),
        TensorData::I64(v) => TensorData::F32(v.iter().map(|&a| a as f32).collect()),
    };
    Ok(Tensor {
        shape: x.shape.clone(),
        data,
    })
}

/// ONNX encoding: attribute `to` (the `TensorProto.DataType` number).
pub(crate) fn emit(to: Dtype) -> Emission {
    let code = match to {
        Dtype::F32 => ONNX_FLOAT,
        // Refused by the shape rule; the encoding is still well defined.
        Dtype::I64 | Dtype::Bool => ONNX_INT64,
    };
    Emission {
        op_type: "Cast",
        attributes: vec![("to", AttrValue::Int(code))],
    }
}

//! The closed set of operations of the IR, one file per op.
//!
//! Each op file documents the ONNX op it produces (spec link, minimum opset, how attributes and
//! inputs are encoded) and holds three functions: `infer` (its shape rule), `eval` (a naive
//! reference implementation with plain loops) and `emit` (its ONNX op type and attributes, which
//! [`crate::onnx`] turns into a `NodeProto`). The `match`es below are exhaustive: an op without a
//! shape rule, an evaluator or an emitter does not compile. The data-driven op cases that test
//! them live in the dev-only crate `uie-op-cases`.

mod add;
pub(crate) mod broadcast;
mod cast;
mod concat;
mod cumsum;
mod div;
mod gather;
mod greater;
mod less;
mod matmul;
mod max;
mod modulo;
mod mul;
mod reduce_sum;
mod relu;
mod sigmoid;
mod softmax;
mod sub;
mod topk;
mod unsqueeze;

use std::fmt;

use uie_model::{Tensor, TensorData};

use crate::ir::{Dim, Dtype, TensorType};

/// An operation and its attributes. Constant operands that ONNX takes as inputs (Unsqueeze and
/// ReduceSum axes, the Mod divisor) are initializer inputs of the node, not fields here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Integer modulo with the Python rule (sign of the divisor): ONNX `Mod`, `fmod = 0`.
    Mod,
    /// Rows (slices along `axis`) of the data selected by int64 indices.
    Gather {
        /// Axis of the data that the indices select along.
        axis: i64,
    },
    /// 2-D matrix product `[M, K] · [K, P]`.
    MatMul,
    /// Element-wise sum with broadcasting.
    Add,
    /// Element-wise difference with broadcasting.
    Sub,
    /// Element-wise product with broadcasting.
    Mul,
    /// Element-wise quotient with broadcasting.
    Div,
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + exp(−x))`.
    Sigmoid,
    /// Softmax along one axis.
    Softmax {
        /// The axis normalised over.
        axis: i64,
    },
    /// Concatenation along an axis.
    Concat {
        /// The axis joined along.
        axis: i64,
    },
    /// Inserts size-1 axes; the axes are a constant int64 second input.
    Unsqueeze,
    /// Sum over the axes given as a constant int64 second input.
    ReduceSum {
        /// Keep the reduced axes as size 1.
        keepdims: bool,
    },
    /// The K largest entries along the last axis, sorted, ties to the lower index; K is a
    /// constant `[1]` int64 second input. Two outputs: values (f32) and indices (i64).
    TopK,
    /// Element-wise `a > b` (f32 or i64), bool output.
    Greater,
    /// Element-wise `a < b` (f32 or i64), bool output.
    Less,
    /// Element-wise conversion to another element type.
    Cast {
        /// Target element type (only f32 is accepted, see `ops/cast.rs`).
        to: Dtype,
    },
    /// Element-wise maximum of two f32 tensors with broadcasting.
    Max,
    /// Running sum along the axis given as a constant scalar int64 second input.
    CumSum {
        /// Exclude the current element (position `j` gets the sum of `0..j`).
        exclusive: bool,
    },
}

/// An error of one op: its inputs have the wrong count, type or shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct OpError(pub String);

pub(crate) fn op_err<T>(message: impl Into<String>) -> Result<T, OpError> {
    Err(OpError(message.into()))
}

/// An operand as shape inference sees it: its type, and its value when it is a constant.
#[derive(Debug, Clone, Copy)]
pub struct Arg<'a> {
    /// Type of the operand.
    pub ty: &'a TensorType,
    /// The value, if the operand is an initializer.
    pub constant: Option<&'a Tensor>,
}

/// Value of an ONNX attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    /// A single int64 (`AttributeProto.i`).
    Int(i64),
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Int(i) => write!(f, "{i}"),
        }
    }
}

/// What an op becomes in ONNX: the op type (default domain) and its attributes, in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emission {
    /// ONNX `op_type`.
    pub op_type: &'static str,
    /// Attributes as `(name, value)`.
    pub attributes: Vec<(&'static str, AttrValue)>,
}

impl Emission {
    pub(crate) fn plain(op_type: &'static str) -> Emission {
        Emission {
            op_type,
            attributes: Vec::new(),
        }
    }
}

impl Op {
    /// The ONNX op type.
    pub fn op_type(&self) -> &'static str {
        self.emit().op_type
    }

    /// The lowest default-domain opset whose definition of the op this crate emits.
    pub fn min_opset(&self) -> i64 {
        match self {
            Op::Mod => modulo::MIN_OPSET,
            Op::Gather { .. } => gather::MIN_OPSET,
            Op::MatMul => matmul::MIN_OPSET,
            Op::Add => add::MIN_OPSET,
            Op::Sub => sub::MIN_OPSET,
            Op::Mul => mul::MIN_OPSET,
            Op::Div => div::MIN_OPSET,
            Op::Relu => relu::MIN_OPSET,
            Op::Sigmoid => sigmoid::MIN_OPSET,
            Op::Softmax { .. } => softmax::MIN_OPSET,
            Op::Concat { .. } => concat::MIN_OPSET,
            Op::Unsqueeze => unsqueeze::MIN_OPSET,
            Op::ReduceSum { .. } => reduce_sum::MIN_OPSET,
            Op::TopK => topk::MIN_OPSET,
            Op::Greater => greater::MIN_OPSET,
            Op::Less => less::MIN_OPSET,
            Op::Cast { .. } => cast::MIN_OPSET,
            Op::Max => max::MIN_OPSET,
            Op::CumSum { .. } => cumsum::MIN_OPSET,
        }
    }

    /// The shape rule: output types from input types (and constant inputs), one per output.
    pub fn infer(&self, args: &[Arg<'_>]) -> Result<Vec<TensorType>, OpError> {
        let one = match self {
            Op::TopK => return topk::infer(args),
            Op::Greater => greater::infer(args),
            Op::Less => less::infer(args),
            Op::Cast { to } => cast::infer(*to, args),
            Op::Max => max::infer(args),
            Op::CumSum { .. } => cumsum::infer(args),
            Op::Mod => modulo::infer(args),
            Op::Gather { axis } => gather::infer(*axis, args),
            Op::MatMul => matmul::infer(args),
            Op::Add => add::infer(args),
            Op::Sub => sub::infer(args),
            Op::Mul => mul::infer(args),
            Op::Div => div::infer(args),
            Op::Relu => relu::infer(args),
            Op::Sigmoid => sigmoid::infer(args),
            Op::Softmax { axis } => softmax::infer(*axis, args),
            Op::Concat { axis } => concat::infer(*axis, args),
            Op::Unsqueeze => unsqueeze::infer(args),
            Op::ReduceSum { keepdims } => reduce_sum::infer(*keepdims, args),
        }?;
        Ok(vec![one])
    }

    /// The reference evaluator: output tensors from input tensors, one per output.
    pub fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
        let one = match self {
            Op::TopK => return topk::eval(inputs),
            Op::Greater => greater::eval(inputs),
            Op::Less => less::eval(inputs),
            Op::Cast { to } => cast::eval(*to, inputs),
            Op::Max => max::eval(inputs),
            Op::CumSum { exclusive } => cumsum::eval(*exclusive, inputs),
            Op::Mod => modulo::eval(inputs),
            Op::Gather { axis } => gather::eval(*axis, inputs),
            Op::MatMul => matmul::eval(inputs),
            Op::Add => add::eval(inputs),
            Op::Sub => sub::eval(inputs),
            Op::Mul => mul::eval(inputs),
            Op::Div => div::eval(inputs),
            Op::Relu => relu::eval(inputs),
            Op::Sigmoid => sigmoid::eval(inputs),
            Op::Softmax { axis } => softmax::eval(*axis, inputs),
            Op::Concat { axis } => concat::eval(*axis, inputs),
            Op::Unsqueeze => unsqueeze::eval(inputs),
            Op::ReduceSum { keepdims } => reduce_sum::eval(*keepdims, inputs),
        }?;
        Ok(vec![one])
    }

    /// The ONNX op type and attributes.
    pub fn emit(&self) -> Emission {
        match self {
            Op::Mod => modulo::emit(),
            Op::Gather { axis } => gather::emit(*axis),
            Op::MatMul => matmul::emit(),
            Op::Add => add::emit(),
            Op::Sub => sub::emit(),
            Op::Mul => mul::emit(),
            Op::Div => div::emit(),
            Op::Relu => relu::emit(),
            Op::Sigmoid => sigmoid::emit(),
            Op::Softmax { axis } => softmax::emit(*axis),
            Op::Concat { axis } => concat::emit(*axis),
            Op::Unsqueeze => unsqueeze::emit(),
            Op::ReduceSum { keepdims } => reduce_sum::emit(*keepdims),
            Op::TopK => topk::emit(),
            Op::Greater => greater::emit(),
            Op::Less => less::emit(),
            Op::Cast { to } => cast::emit(*to),
            Op::Max => max::emit(),
            Op::CumSum { exclusive } => cumsum::emit(*exclusive),
        }
    }
}

impl fmt::Display for Op {
    /// `OpType` or `OpType(attr=value,...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.emit();
        f.write_str(e.op_type)?;
        if !e.attributes.is_empty() {
            let attrs: Vec<String> = e
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(f, "({})", attrs.join(","))?;
        }
        Ok(())
    }
}

// ---- helpers shared by the op files ----

pub(crate) fn arity<T>(what: &str, items: &[T], n: usize) -> Result<(), OpError> {
    if items.len() != n {
        return op_err(format!("{what} takes {n} inputs, got {}", items.len()));
    }
    Ok(())
}

pub(crate) fn expect_dtype(arg: &Arg<'_>, dtype: Dtype, what: &str) -> Result<(), OpError> {
    if arg.ty.dtype != dtype {
        return op_err(format!("{what} must be {dtype}, got {}", arg.ty));
    }
    Ok(())
}

pub(crate) fn f32s<'a>(t: &'a Tensor, what: &str) -> Result<&'a [f32], OpError> {
    t.as_f32()
        .ok_or_else(|| OpError(format!("{what} must be f32, got {}", t.dtype())))
}

pub(crate) fn i64s<'a>(t: &'a Tensor, what: &str) -> Result<&'a [i64], OpError> {
    t.as_i64()
        .ok_or_else(|| OpError(format!("{what} must be i64, got {}", t.dtype())))
}

/// Resolves a possibly negative axis against a rank.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return op_err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// The axes of a constant int64 axes operand, resolved against `rank`, sorted, no duplicates.
pub(crate) fn const_axes(arg: &Arg<'_>, rank: usize) -> Result<Vec<usize>, OpError> {
    let t = arg
        .constant
        .ok_or_else(|| OpError("axes must be a constant (an initializer)".into()))?;
    axes_from(t, rank)
}

pub(crate) fn axes_from(t: &Tensor, rank: usize) -> Result<Vec<usize>, OpError> {
    if t.shape.len() != 1 {
        return op_err(format!("axes must be 1-D, got shape {:?}", t.shape));
    }
    let mut axes = i64s(t, "axes")?
        .iter()
        .map(|&a| norm_axis(a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    let n = axes.len();
    axes.sort_unstable();
    axes.dedup();
    if axes.len() != n {
        return op_err("axes repeat an axis");
    }
    Ok(axes)
}

/// Row-major size of the dims in `range`.
pub(crate) fn prod(shape: &[usize]) -> usize {
    shape.iter().product()
}

pub(crate) fn f32_tensor(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
    Tensor {
        shape,
        data: TensorData::F32(data),
    }
}

/// The unary f32 shape rule: one f32 input, same type out.
pub(crate) fn unary_f32_infer(what: &str, args: &[Arg<'_>]) -> Result<TensorType, OpError> {
    arity(what, args, 1)?;
    expect_dtype(&args[0], Dtype::F32, "input")?;
    Ok(args[0].ty.clone())
}

/// Applies `f` to every element of a single f32 input.
pub(crate) fn unary_f32_eval(
    what: &str,
    inputs: &[&Tensor],
    f: impl Fn(f32) -> f32,
) -> Result<Tensor, OpError> {
    arity(what, inputs, 1)?;
    let x = f32s(inputs[0], "input")?;
    Ok(f32_tensor(
        inputs[0].shape.clone(),
        x.iter().map(|&v| f(v)).collect(),
    ))
}

/// Two dims that must be equal (fixed and equal, or the same symbol).
pub(crate) fn same_dim(a: &Dim, b: &Dim, what: &str) -> Result<(), OpError> {
    if a != b {
        return op_err(format!("{what}: {a} does not match {b}"));
    }
    Ok(())
}

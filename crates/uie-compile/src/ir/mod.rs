//! A small typed graph between the checkpoint and the ONNX file.
//!
//! Values are addressed by [`ValueId`]; each value is defined exactly once, by a graph input, an
//! initializer or a node output. Nodes are stored in construction order, and a node may only use
//! values defined before it, so the node list is always a topological order. Every node carries a
//! closed [`Op`] whose variants hold their attributes; constant operands that ONNX takes as inputs
//! (axes of Unsqueeze and ReduceSum, the divisor of Mod) are int64 initializers here too, so the IR
//! maps one-to-one onto ONNX nodes.
//!
//! - [`validate`](Graph::validate): every value defined once before use, names unique, outputs set.
//! - [`infer_shapes`](Graph::infer_shapes): every op's shape rule, dtypes checked, symbolic dims
//!   (like `N`, the batch) carried through.
//! - [`dump`](Graph::dump): a deterministic text rendering (see [`dump`]).

pub mod dump;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use uie_model::Tensor;

use crate::error::CompileError;
pub use crate::ops::Op;

/// Element type of an IR value. `Bool` only ever types internal values (the outputs of
/// `Greater`/`Less`, consumed by `Cast`): graph inputs, outputs and initializers are f32 or i64.
/// The reference evaluator stores a bool value as i64 `0`/`1` data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// 64-bit signed integer.
    I64,
    /// Boolean (ONNX `BOOL`).
    Bool,
}

impl From<uie_model::schema::Dtype> for Dtype {
    fn from(d: uie_model::schema::Dtype) -> Dtype {
        match d {
            uie_model::schema::Dtype::F32 => Dtype::F32,
            uie_model::schema::Dtype::I64 => Dtype::I64,
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::I64 => "i64",
            Dtype::Bool => "bool",
        })
    }
}

/// One dimension of a value's shape.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dim {
    /// A known size.
    Fixed(usize),
    /// A size known only at run time, named (e.g. `N`, the batch size).
    Sym(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// Element type and shape of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorType {
    /// Element type.
    pub dtype: Dtype,
    /// Shape; rank is always known.
    pub shape: Vec<Dim>,
}

impl TensorType {
    /// A type with only fixed dims.
    pub fn fixed(dtype: Dtype, shape: &[usize]) -> TensorType {
        TensorType {
            dtype,
            shape: shape.iter().map(|&d| Dim::Fixed(d)).collect(),
        }
    }

    /// The type of a concrete tensor.
    pub fn of(t: &Tensor) -> TensorType {
        TensorType::fixed(t.dtype().into(), &t.shape)
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Index of a value in its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueId(usize);

impl ValueId {
    /// Position of the value in [`Graph::values`].
    pub fn index(self) -> usize {
        self.0
    }
}

/// What defines a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A graph input, fed at run time.
    Input,
    /// A constant stored in the model.
    Initializer(Tensor),
    /// Output of the node at this index of [`Graph::nodes`].
    Node(usize),
}

/// A value: its unique name, its type (known after shape inference) and its definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    /// Unique name (the ONNX value name).
    pub name: String,
    /// Type; inputs and initializers have one from the start, node outputs after inference.
    pub ty: Option<TensorType>,
    /// What defines it.
    pub source: Source,
}

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique, readable name, e.g. `ple.l0.income.expert1.fc0/MatMul`.
    pub name: String,
    /// The operation and its attributes.
    pub op: Op,
    /// Operands, in ONNX input order.
    pub inputs: Vec<ValueId>,
    /// Results, in ONNX output order.
    pub outputs: Vec<ValueId>,
}

/// A whole model graph.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    /// Graph name (the ONNX graph name).
    pub name: String,
    /// Model metadata (`metadata_props`), in key order.
    pub metadata: BTreeMap<String, String>,
    values: Vec<ValueInfo>,
    nodes: Vec<Node>,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
    names: BTreeSet<String>,
    node_names: BTreeSet<String>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    fn add_value(
        &mut self,
        name: &str,
        ty: Option<TensorType>,
        source: Source,
    ) -> Result<ValueId, CompileError> {
        if name.is_empty() {
            return Err(CompileError::InvalidGraph("empty value name".into()));
        }
        if !self.names.insert(name.to_string()) {
            return Err(CompileError::InvalidGraph(format!(
                "value {name:?} is defined twice"
            )));
        }
        self.values.push(ValueInfo {
            name: name.to_string(),
            ty,
            source,
        });
        Ok(ValueId(self.values.len() - 1))
    }

    /// Declares a graph input.
    pub fn add_input(&mut self, name: &str, ty: TensorType) -> Result<ValueId, CompileError> {
        let id = self.add_value(name, Some(ty), Source::Input)?;
        self.inputs.push(id);
        Ok(id)
    }

    /// Adds a constant.
    pub fn add_initializer(&mut self, name: &str, tensor: Tensor) -> Result<ValueId, CompileError> {
        let len = match &tensor.data {
            uie_model::TensorData::F32(v) => v.len(),
            uie_model::TensorData::I64(v) => v.len(),
        };
        if len != tensor.shape.iter().product::<usize>() {
            return Err(CompileError::InvalidGraph(format!(
                "initializer {name}: {len} values for shape {:?}",
                tensor.shape
            )));
        }
        let ty = TensorType::of(&tensor);
        self.add_value(name, Some(ty), Source::Initializer(tensor))
    }

    /// Adds a node with one output per name in `outputs`; returns the output ids.
    pub fn add_node(
        &mut self,
        name: &str,
        op: Op,
        inputs: &[ValueId],
        outputs: &[&str],
    ) -> Result<Vec<ValueId>, CompileError> {
        if let Some(bad) = inputs.iter().find(|v| v.0 >= self.values.len()) {
            return Err(CompileError::InvalidGraph(format!(
                "node {name}: input #{} does not exist",
                bad.0
            )));
        }
        if !self.node_names.insert(name.to_string()) {
            return Err(CompileError::InvalidGraph(format!(
                "node name {name:?} is used twice"
            )));
        }
        let index = self.nodes.len();
        let outs = outputs
            .iter()
            .map(|o| self.add_value(o, None, Source::Node(index)))
            .collect::<Result<Vec<_>, _>>()?;
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
            outputs: outs.clone(),
        });
        Ok(outs)
    }

    /// Adds a one-output node named `<prefix>/<OpType>` whose output is `out`.
    pub fn add_op(
        &mut self,
        prefix: &str,
        op: Op,
        inputs: &[ValueId],
        out: &str,
    ) -> Result<ValueId, CompileError> {
        let name = format!("{prefix}/{}", op.op_type());
        let outs = self.add_node(&name, op, inputs, &[out])?;
        outs.first()
            .copied()
            .ok_or_else(|| CompileError::InvalidGraph(format!("node {name}: no output")))
    }

    /// Marks a value as a graph output (in call order).
    pub fn add_output(&mut self, id: ValueId) -> Result<(), CompileError> {
        if id.0 >= self.values.len() {
            return Err(CompileError::InvalidGraph(format!(
                "output #{} does not exist",
                id.0
            )));
        }
        self.outputs.push(id);
        Ok(())
    }

    /// Renames a value (e.g. to expose it as a `debug.*` output under a stable name).
    pub fn rename_value(&mut self, id: ValueId, name: &str) -> Result<(), CompileError> {
        if id.0 >= self.values.len() {
            return Err(CompileError::InvalidGraph(format!(
                "value #{} does not exist",
                id.0
            )));
        }
        if name.is_empty() || self.names.contains(name) {
            return Err(CompileError::InvalidGraph(format!(
                "cannot rename to {name:?}: empty or already used"
            )));
        }
        let old = std::mem::replace(&mut self.values[id.0].name, name.to_string());
        self.names.remove(&old);
        self.names.insert(name.to_string());
        Ok(())
    }

    /// Every value, indexed by [`ValueId::index`].
    pub fn values(&self) -> &[ValueInfo] {
        &self.values
    }

    /// One value. Ids are only minted by this graph's builders; an id of another graph that is
    /// out of range panics (a programming error, never a consequence of input data).
    pub fn value(&self, id: ValueId) -> &ValueInfo {
        &self.values[id.0]
    }

    /// The nodes, in topological (construction) order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The graph inputs, in declaration order.
    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }

    /// The graph outputs, in declaration order.
    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }

    /// The initializers as `(name, tensor)`, sorted by name.
    pub fn initializers(&self) -> Vec<(&str, &Tensor)> {
        let mut out: Vec<(&str, &Tensor)> = self
            .values
            .iter()
            .filter_map(|v| match &v.source {
                Source::Initializer(t) => Some((v.name.as_str(), t)),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// The tensor of an initializer value, `None` for inputs and node outputs.
    pub fn initializer(&self, id: ValueId) -> Option<&Tensor> {
        match &self.values.get(id.0)?.source {
            Source::Initializer(t) => Some(t),
            _ => None,
        }
    }

    /// Moves every initializer's tensor out of the graph (leaving empty `[0]` tensors in their
    /// place), keyed by value id: how the passes rebuild a graph without copying its tables.
    pub(crate) fn take_initializers(&mut self) -> BTreeMap<ValueId, Tensor> {
        let mut out = BTreeMap::new();
        for (i, v) in self.values.iter_mut().enumerate() {
            if let Source::Initializer(t) = &mut v.source {
                let t = std::mem::replace(t, Tensor::f32(vec![0], Vec::new()));
                out.insert(ValueId(i), t);
            }
        }
        out
    }

    /// The type of a value, or an error naming it if shape inference has not typed it.
    pub fn type_of(&self, id: ValueId) -> Result<&TensorType, CompileError> {
        let v = &self.values[id.0];
        v.ty.as_ref().ok_or_else(|| {
            CompileError::InvalidGraph(format!("value {} has no type (run infer_shapes)", v.name))
        })
    }
}

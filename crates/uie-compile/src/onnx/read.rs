//! ONNX bytes → [`ModelSummary`]: what `uie-compile inspect` prints (inputs and outputs with dims,
//! op counts, initializer count and bytes, metadata).

use std::collections::BTreeMap;
use std::fmt;

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::dimension;
use onnx_protobuf::{type_proto, Message, ModelProto, TensorProto, ValueInfoProto};

use crate::error::CompileError;

/// One graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueSummary {
    /// Value name.
    pub name: String,
    /// Element type (`f32`, `i64`, or the ONNX data type number).
    pub dtype: String,
    /// Dims: numbers, or the symbolic name.
    pub dims: Vec<String>,
}

/// The facts of an ONNX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSummary {
    /// `ir_version`.
    pub ir_version: i64,
    /// `(domain, version)` of every imported opset.
    pub opsets: Vec<(String, i64)>,
    /// `producer_name` and `producer_version`.
    pub producer: String,
    /// Graph name.
    pub graph_name: String,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<ValueSummary>,
    /// Graph outputs.
    pub outputs: Vec<ValueSummary>,
    /// Node count per op type.
    pub op_counts: BTreeMap<String, usize>,
    /// Number of nodes.
    pub nodes: usize,
    /// Every initializer, in file order.
    pub initializers: Vec<InitializerSummary>,
    /// Bytes of initializer data.
    pub initializer_bytes: usize,
    /// `metadata_props`, by key.
    pub metadata: BTreeMap<String, String>,
}

/// Name, type, shape and size of one initializer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitializerSummary {
    /// Initializer name.
    pub name: String,
    /// Element type (`f32`, `i64`, ...).
    pub dtype: String,
    /// Dimensions.
    pub dims: Vec<i64>,
    /// Bytes of data held in the file.
    pub bytes: usize,
}

fn dtype_name(t: i32) -> String {
    if t == DataType::FLOAT as i32 {
        "f32".into()
    } else if t == DataType::INT64 as i32 {
        "i64".into()
    } else {
        format!("onnx-type-{t}")
    }
}

fn value(v: &ValueInfoProto) -> ValueSummary {
    let (dtype, dims) = match v.type_.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => (
            dtype_name(t.elem_type),
            t.shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(dimension::Value::DimValue(n)) => n.to_string(),
                            Some(dimension::Value::DimParam(p)) => p.clone(),
                            _ => "?".into(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => ("?".into(), Vec::new()),
    };
    ValueSummary {
        name: v.name.clone(),
        dtype,
        dims,
    }
}

fn tensor_bytes(t: &TensorProto) -> usize {
    t.raw_data.len()
        + t.float_data.len() * 4
        + t.int64_data.len() * 8
        + t.int32_data.len() * 4
        + t.double_data.len() * 8
        + t.uint64_data.len() * 8
}

/// Decodes ONNX model bytes into a summary.
pub fn summarize(bytes: &[u8]) -> Result<ModelSummary, CompileError> {
    let model = ModelProto::parse_from_bytes(bytes)
        .map_err(|e| CompileError::Onnx(format!("not an ONNX model: {e}")))?;
    let g = model
        .graph
        .as_ref()
        .ok_or_else(|| CompileError::Onnx("the model has no graph".into()))?;
    let inits: std::collections::BTreeSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut op_counts = BTreeMap::new();
    for n in &g.node {
        *op_counts.entry(n.op_type.clone()).or_insert(0) += 1;
    }
    Ok(ModelSummary {
        ir_version: model.ir_version,
        opsets: model
            .opset_import
            .iter()
            .map(|o| (o.domain.clone(), o.version))
            .collect(),
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string(),
        graph_name: g.name.clone(),
        inputs: g
            .input
            .iter()
            .filter(|v| !inits.contains(v.name.as_str()))
            .map(value)
            .collect(),
        outputs: g.output.iter().map(value).collect(),
        op_counts,
        nodes: g.node.len(),
        initializers: g
            .initializer
            .iter()
            .map(|t| InitializerSummary {
                name: t.name.clone(),
                dtype: dtype_name(t.data_type),
                dims: t.dims.clone(),
                bytes: tensor_bytes(t),
            })
            .collect(),
        initializer_bytes: g.initializer.iter().map(tensor_bytes).sum(),
        metadata: model
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect(),
    })
}

impl fmt::Display for ValueSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}[{}]", self.name, self.dtype, self.dims.join(","))
    }
}

impl fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "graph {}", self.graph_name)?;
        writeln!(f, "producer {}", self.producer)?;
        let opsets: Vec<String> = self
            .opsets
            .iter()
            .map(|(d, v)| format!("{}:{v}", if d.is_empty() { "ai.onnx" } else { d }))
            .collect();
        writeln!(
            f,
            "ir_version {} opset {}",
            self.ir_version,
            opsets.join(" ")
        )?;
        for v in &self.inputs {
            writeln!(f, "input {v}")?;
        }
        for v in &self.outputs {
            writeln!(f, "output {v}")?;
        }
        writeln!(f, "nodes {}", self.nodes)?;
        for (op, n) in &self.op_counts {
            writeln!(f, "  {op} {n}")?;
        }
        writeln!(
            f,
            "initializers {} ({} bytes)",
            self.initializers.len(),
            self.initializer_bytes
        )?;
        for t in &self.initializers {
            let dims: Vec<String> = t.dims.iter().map(i64::to_string).collect();
            writeln!(
                f,
                "  {} {}[{}] {} bytes",
                t.name,
                t.dtype,
                dims.join(","),
                t.bytes
            )?;
        }
        for (k, v) in &self.metadata {
            writeln!(f, "meta {k} = {v}")?;
        }
        Ok(())
    }
}

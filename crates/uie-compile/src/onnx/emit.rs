//! IR graph → `ModelProto` → bytes.
//!
//! Graph inputs and outputs get full value infos (dtype, fixed dims as `dim_value`, symbolic ones
//! as `dim_param`); initializers are stored in name order as little-endian `raw_data`; nodes in
//! the IR's topological order with their attributes as [`crate::ops::Op::emit`] lists them.
//! Nothing depends on hash order or time, so the bytes are a function of the graph.
//!
//! [`model_proto`] is the shared builder: each initializer is placed inline (its bytes copied into
//! `raw_data`), external (`data_location = EXTERNAL` with `location`, `offset`, `length` entries and
//! no bytes; [`super::external`] streams the bytes into the data file), or left empty (only used to
//! measure the model's skeleton size).

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::{DataLocation, DataType};
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use uie_model::{Tensor, TensorData};

use super::version::{IR_VERSION, OPSET, PRODUCER};
use crate::error::CompileError;
use crate::ir::{Dim, Dtype, Graph, TensorType, ValueId};
use crate::ops::AttrValue;

fn data_type(d: Dtype) -> i32 {
    match d {
        Dtype::F32 => DataType::FLOAT as i32,
        Dtype::I64 => DataType::INT64 as i32,
        Dtype::Bool => DataType::BOOL as i32,
    }
}

fn value_info(name: &str, ty: &TensorType) -> ValueInfoProto {
    let dims = ty
        .shape
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
                Dim::Sym(s) => dimension::Value::DimParam(s.clone()),
            }),
            ..Dimension::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: data_type(ty.dtype),
        shape: Some(TensorShapeProto {
            dim: dims,
            ..TensorShapeProto::default()
        })
        .into(),
        ..type_proto::Tensor::default()
    };
    ValueInfoProto {
        name: name.to_string(),
        type_: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..TypeProto::default()
        })
        .into(),
        ..ValueInfoProto::default()
    }
}

/// Where one initializer's bytes live in the external data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExternalRef {
    /// The data file's name, relative to the model's directory.
    pub location: String,
    /// Byte offset of the tensor in the data file.
    pub offset: u64,
    /// Byte length of the tensor.
    pub length: u64,
}

/// How [`model_proto`] stores one initializer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Placement<'a> {
    /// Bytes copied into `raw_data`.
    Inline,
    /// Bytes in the external data file at this place.
    External(&'a ExternalRef),
    /// No bytes at all (for measuring the skeleton's size).
    Empty,
}

fn tensor_proto(name: &str, t: &Tensor, placement: Placement<'_>) -> TensorProto {
    let mut proto = TensorProto {
        name: name.to_string(),
        dims: t.shape.iter().map(|&d| d as i64).collect(),
        data_type: data_type(t.dtype().into()),
        ..TensorProto::default()
    };
    match placement {
        Placement::Inline => {
            proto.raw_data = match &t.data {
                TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            };
        }
        Placement::External(r) => {
            proto.data_location = DataLocation::EXTERNAL.into();
            proto.external_data = [
                ("location", r.location.clone()),
                ("offset", r.offset.to_string()),
                ("length", r.length.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.to_string(),
                value: v,
                ..StringStringEntryProto::default()
            })
            .collect();
        }
        Placement::Empty => {}
    }
    proto
}

fn attribute(name: &str, value: &AttrValue) -> AttributeProto {
    match value {
        AttrValue::Int(i) => AttributeProto {
            name: name.to_string(),
            type_: AttributeType::INT.into(),
            i: *i,
            ..AttributeProto::default()
        },
    }
}

fn typed_info(graph: &Graph, id: ValueId) -> Result<ValueInfoProto, CompileError> {
    let v = graph.value(id);
    Ok(value_info(&v.name, graph.type_of(id)?))
}

/// Encodes a validated, shape-inferred graph as ONNX model bytes, every initializer inline.
pub fn to_model_bytes(graph: &Graph) -> Result<Vec<u8>, CompileError> {
    model_proto(graph, |_, _| Placement::Inline)?
        .write_to_bytes()
        .map_err(|e| CompileError::Onnx(format!("encoding the model: {e}")))
}

/// Builds the `ModelProto` of a validated, shape-inferred graph; `place` decides, per initializer
/// (name, tensor), where its bytes go.
pub(crate) fn model_proto<'p>(
    graph: &Graph,
    place: impl Fn(&str, &Tensor) -> Placement<'p>,
) -> Result<ModelProto, CompileError> {
    let mut g = GraphProto {
        name: graph.name.clone(),
        ..GraphProto::default()
    };
    for &id in graph.inputs() {
        g.input.push(typed_info(graph, id)?);
    }
    for &id in graph.outputs() {
        g.output.push(typed_info(graph, id)?);
    }
    for (name, t) in graph.initializers() {
        g.initializer.push(tensor_proto(name, t, place(name, t)));
    }
    for node in graph.nodes() {
        if node.op.min_opset() > OPSET {
            return Err(CompileError::Op {
                node: node.name.clone(),
                message: format!("needs opset {}, the target is {OPSET}", node.op.min_opset()),
            });
        }
        let e = node.op.emit();
        g.node.push(NodeProto {
            name: node.name.clone(),
            op_type: e.op_type.to_string(),
            input: node
                .inputs
                .iter()
                .map(|&i| graph.value(i).name.clone())
                .collect(),
            output: node
                .outputs
                .iter()
                .map(|&o| graph.value(o).name.clone())
                .collect(),
            attribute: e.attributes.iter().map(|(k, v)| attribute(k, v)).collect(),
            ..NodeProto::default()
        });
    }
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..OperatorSetIdProto::default()
        }],
        producer_name: PRODUCER.to_string(),
        producer_version: env!("CARGO_PKG_VERSION").to_string(),
        graph: Some(g).into(),
        metadata_props: graph
            .metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.clone(),
                value: v.clone(),
                ..StringStringEntryProto::default()
            })
            .collect(),
        ..ModelProto::default()
    };
    Ok(model)
}

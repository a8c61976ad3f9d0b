//! ONNX bytes → [`ModelSummary`]: what `uie-compile inspect` prints (inputs and outputs with dims,
//! op counts, node counts per UIE sub-graph, initializers with their size and place (inline or
//! external data), the memory tables, metadata).
//!
//! Only the model file is decoded: external data is never loaded. [`summarize_file`] also checks,
//! from file sizes alone, that every referenced data file exists and is long enough.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use onnx_protobuf::tensor_proto::{DataLocation, DataType};
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
    /// Bytes of initializer data (inline and external).
    pub initializer_bytes: usize,
    /// Node count per sub-graph name prefix ([`SUBGRAPH_PREFIXES`], then `other`); prefixes
    /// without nodes are left out.
    pub subgraphs: Vec<(String, usize)>,
    /// The external data files the initializers reference, in first-use order.
    pub external_files: Vec<ExternalFileSummary>,
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
    /// Bytes of data (held in the model file, or in the external data file).
    pub bytes: usize,
    /// Where the bytes are when they are in an external data file; `None` when inline.
    pub external: Option<ExternalLocation>,
}

impl InitializerSummary {
    /// Whether this initializer is a memory table (`memory.*`, `docs/model.md` §4).
    pub fn is_memory_table(&self) -> bool {
        self.name.starts_with(MEMORY_PREFIX)
    }
}

/// The `external_data` entries of one initializer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalLocation {
    /// The data file, relative to the model's directory.
    pub location: String,
    /// Byte offset in the data file.
    pub offset: u64,
    /// Byte length (`None` when the entry is absent: the rest of the file).
    pub length: Option<u64>,
}

/// One external data file referenced by a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalFileSummary {
    /// The file, relative to the model's directory.
    pub location: String,
    /// Number of initializers stored in it.
    pub tensors: usize,
    /// The end of the furthest tensor (offset + length) in it.
    pub needed_bytes: u64,
    /// Its size on disk, when known ([`summarize_file`] looks; `None` if missing or not looked).
    pub size_on_disk: Option<u64>,
}

/// Name prefix of the memory tables.
pub const MEMORY_PREFIX: &str = "memory.";

/// The sub-graphs `inspect` counts nodes of, by node-name prefix (longest first where nested).
pub const SUBGRAPH_PREFIXES: [&str; 9] = [
    "seq", "aux.user", "aux.item", "uie.upe", "uie.ucbe", "uie.ucse", "ple", "tower", "embed",
];

/// The sub-graph a node belongs to: the prefix its name starts with (followed by `.` or `/`).
fn subgraph_of(node_name: &str) -> Option<&'static str> {
    SUBGRAPH_PREFIXES.iter().copied().find(|p| {
        node_name
            .strip_prefix(p)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('/'))
    })
}

fn dtype_name(t: i32) -> String {
    if t == DataType::FLOAT as i32 {
        "f32".into()
    } else if t == DataType::INT64 as i32 {
        "i64".into()
    } else if t == DataType::BOOL as i32 {
        "bool".into()
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

fn elem_size(t: i32) -> usize {
    if t == DataType::FLOAT as i32 || t == DataType::INT32 as i32 || t == DataType::UINT32 as i32 {
        4
    } else if t == DataType::INT64 as i32
        || t == DataType::DOUBLE as i32
        || t == DataType::UINT64 as i32
    {
        8
    } else if t == DataType::FLOAT16 as i32
        || t == DataType::BFLOAT16 as i32
        || t == DataType::INT16 as i32
        || t == DataType::UINT16 as i32
    {
        2
    } else {
        1
    }
}

fn external_location(t: &TensorProto) -> Result<Option<ExternalLocation>, CompileError> {
    if t.data_location.value() != DataLocation::EXTERNAL as i32 {
        return Ok(None);
    }
    let entry = |key: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    };
    let number = |key: &str| -> Result<Option<u64>, CompileError> {
        entry(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    CompileError::Onnx(format!(
                        "initializer {}: external_data {key} = {v:?} is not a number",
                        t.name
                    ))
                })
            })
            .transpose()
    };
    let location = entry("location").ok_or_else(|| {
        CompileError::Onnx(format!(
            "initializer {}: external data without a location",
            t.name
        ))
    })?;
    Ok(Some(ExternalLocation {
        location: location.to_string(),
        offset: number("offset")?.unwrap_or(0),
        length: number("length")?,
    }))
}

fn tensor_bytes(t: &TensorProto) -> usize {
    if t.data_location.value() == DataLocation::EXTERNAL as i32 {
        let n: i64 = t.dims.iter().product();
        return usize::try_from(n).unwrap_or(0) * elem_size(t.data_type);
    }
    t.raw_data.len()
        + t.float_data.len() * 4
        + t.int64_data.len() * 8
        + t.int32_data.len() * 4
        + t.double_data.len() * 8
        + t.uint64_data.len() * 8
}

/// Decodes ONNX model bytes into a summary.
pub fn summarize(bytes: &[u8]) -> Result<ModelSummary, CompileError> {
    if bytes.is_empty() {
        return Err(CompileError::Onnx(
            "not an ONNX model: the file is empty".into(),
        ));
    }
    let model = ModelProto::parse_from_bytes(bytes)
        .map_err(|e| CompileError::Onnx(format!("not an ONNX model: {e}")))?;
    let g = model
        .graph
        .as_ref()
        .ok_or_else(|| CompileError::Onnx("the model has no graph".into()))?;
    let inits: std::collections::BTreeSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut op_counts = BTreeMap::new();
    let mut per_prefix: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &g.node {
        *op_counts.entry(n.op_type.clone()).or_insert(0) += 1;
        *per_prefix
            .entry(subgraph_of(&n.name).unwrap_or("other"))
            .or_insert(0) += 1;
    }
    let subgraphs = SUBGRAPH_PREFIXES
        .iter()
        .chain(std::iter::once(&"other"))
        .filter_map(|p| per_prefix.get(p).map(|&n| (p.to_string(), n)))
        .collect();
    let mut initializers = Vec::with_capacity(g.initializer.len());
    let mut external_files: Vec<ExternalFileSummary> = Vec::new();
    for t in &g.initializer {
        let external = external_location(t)?;
        let bytes = tensor_bytes(t);
        if let Some(x) = &external {
            let end = x.offset + x.length.unwrap_or(bytes as u64);
            match external_files.iter_mut().find(|f| f.location == x.location) {
                Some(f) => {
                    f.tensors += 1;
                    f.needed_bytes = f.needed_bytes.max(end);
                }
                None => external_files.push(ExternalFileSummary {
                    location: x.location.clone(),
                    tensors: 1,
                    needed_bytes: end,
                    size_on_disk: None,
                }),
            }
        }
        initializers.push(InitializerSummary {
            name: t.name.clone(),
            dtype: dtype_name(t.data_type),
            dims: t.dims.clone(),
            bytes,
            external,
        });
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
        initializer_bytes: initializers.iter().map(|t| t.bytes).sum(),
        initializers,
        subgraphs,
        external_files,
        metadata: model
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect(),
    })
}

/// Reads a model file (never its external data) and summarises it; also records the on-disk size
/// of every external data file it references (resolved beside the model).
pub fn summarize_file(path: &Path) -> Result<ModelSummary, CompileError> {
    let bytes = std::fs::read(path).map_err(|e| CompileError::io(path, e))?;
    let mut summary = summarize(&bytes)?;
    let dir = super::write::parent_dir(path);
    for f in &mut summary.external_files {
        f.size_on_disk = std::fs::metadata(dir.join(&f.location))
            .ok()
            .map(|m| m.len());
    }
    Ok(summary)
}

impl ModelSummary {
    /// The memory tables (`memory.*` initializers), in file order.
    pub fn memory_tables(&self) -> Vec<&InitializerSummary> {
        self.initializers
            .iter()
            .filter(|t| t.is_memory_table())
            .collect()
    }

    /// The text `inspect` prints; `per_initializer = false` (`--summary`) leaves out the list of
    /// every initializer (the memory tables are still listed).
    pub fn render(&self, per_initializer: bool) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.write_to(&mut out, per_initializer);
        out
    }

    fn write_to(&self, f: &mut impl fmt::Write, per_initializer: bool) -> fmt::Result {
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
        writeln!(f, "subgraphs")?;
        for (p, n) in &self.subgraphs {
            writeln!(f, "  {p} {n} nodes")?;
        }
        writeln!(
            f,
            "initializers {} ({} bytes)",
            self.initializers.len(),
            self.initializer_bytes
        )?;
        if per_initializer {
            for t in &self.initializers {
                writeln!(f, "  {}", InitializerLine(t))?;
            }
        }
        let memory = self.memory_tables();
        writeln!(f, "memory tables {}", memory.len())?;
        for t in memory {
            writeln!(f, "  {}", InitializerLine(t))?;
        }
        for x in &self.external_files {
            let disk = match x.size_on_disk {
                Some(n) if n >= x.needed_bytes => format!("{n} bytes on disk"),
                Some(n) => format!("{n} bytes on disk: TOO SHORT"),
                None => "not checked or MISSING".to_string(),
            };
            writeln!(
                f,
                "external data {}: {} tensors, {} bytes needed, {disk}",
                x.location, x.tensors, x.needed_bytes
            )?;
        }
        for (k, v) in &self.metadata {
            writeln!(f, "meta {k} = {v}")?;
        }
        Ok(())
    }
}

/// One initializer line: `name dtype[dims] N bytes inline|external file@offset`.
struct InitializerLine<'a>(&'a InitializerSummary);

impl fmt::Display for InitializerLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        let dims: Vec<String> = t.dims.iter().map(i64::to_string).collect();
        write!(
            f,
            "{} {}[{}] {} bytes",
            t.name,
            t.dtype,
            dims.join(","),
            t.bytes
        )?;
        match &t.external {
            None => write!(f, " inline"),
            Some(x) => write!(f, " external {}@{}", x.location, x.offset),
        }
    }
}

impl fmt::Display for ValueSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}[{}]", self.name, self.dtype, self.dims.join(","))
    }
}

impl fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f, true)
    }
}

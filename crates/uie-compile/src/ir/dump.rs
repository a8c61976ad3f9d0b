//! A deterministic text rendering of an IR graph, for `uie-compile dump` and snapshot tests.
//!
//! ```text
//! graph <name>
//! meta <key> = <value>                       (metadata, key order)
//! input <name> <type>                        (declaration order)
//! init <name> <type> sha256=<12 hex>         (name order; hash of dtype, shape, LE bytes)
//! node <name> <Op>(<attrs>) <in>:<type>, ... -> <out>:<type>, ...   (topological order)
//! output <name> <type>
//! ```
//!
//! Types print as `f32[N,8]`; an untyped value (before shape inference) prints as `?`.

use std::fmt::Write;

use sha2::{Digest, Sha256};
use uie_model::{Tensor, TensorData};

use super::{Graph, ValueId};

/// First 12 hex digits of the SHA-256 of a tensor's dtype, shape and little-endian bytes.
pub fn tensor_digest(t: &Tensor) -> String {
    let mut h = Sha256::new();
    h.update(t.dtype().to_string().as_bytes());
    for d in &t.shape {
        h.update((*d as u64).to_le_bytes());
    }
    match &t.data {
        TensorData::F32(v) => v.iter().for_each(|x| h.update(x.to_le_bytes())),
        TensorData::I64(v) => v.iter().for_each(|x| h.update(x.to_le_bytes())),
    }
    h.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Graph {
    fn typed(&self, id: ValueId) -> String {
        let v = self.value(id);
        match &v.ty {
            Some(t) => format!("{}:{t}", v.name),
            None => format!("{}:?", v.name),
        }
    }

    /// The text dump (see the module doc).
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "graph {}", self.name);
        for (k, v) in &self.metadata {
            let _ = writeln!(s, "meta {k} = {v}");
        }
        for &id in self.inputs() {
            let _ = writeln!(s, "input {}", self.typed(id).replacen(':', " ", 1));
        }
        for (name, t) in self.initializers() {
            let _ = writeln!(
                s,
                "init {name} {} sha256={}",
                super::TensorType::of(t),
                tensor_digest(t)
            );
        }
        for node in self.nodes() {
            let ins: Vec<String> = node.inputs.iter().map(|&i| self.typed(i)).collect();
            let outs: Vec<String> = node.outputs.iter().map(|&o| self.typed(o)).collect();
            let _ = writeln!(
                s,
                "node {} {} {} -> {}",
                node.name,
                node.op,
                ins.join(", "),
                outs.join(", ")
            );
        }
        for &id in self.outputs() {
            let _ = writeln!(s, "output {}", self.typed(id).replacen(':', " ", 1));
        }
        s
    }
}

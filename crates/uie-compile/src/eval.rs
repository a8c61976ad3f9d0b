//! The reference evaluator of a whole IR graph: runs every node's naive [`Op::eval`] in order.
//!
//! It is the oracle of the op emitters and of the lowering (tract and ONNX Runtime must agree with
//! it within the tolerance of `docs/model.md` §7). Inputs are checked against the declared input
//! types: dtype, rank, fixed dims, and one size per symbolic dim (every `N` the same).
//!
//! [`Op::eval`]: crate::ops::Op::eval

use std::collections::BTreeMap;

use uie_model::Tensor;

use crate::error::CompileError;
use crate::ir::{Dim, Graph, Source};

/// Runs the graph on named inputs; returns the graph outputs as `(name, tensor)` in output order.
pub fn evaluate(
    graph: &Graph,
    inputs: &[(&str, Tensor)],
) -> Result<Vec<(String, Tensor)>, CompileError> {
    let mut slots: Vec<Option<Tensor>> = vec![None; graph.values().len()];
    let mut syms: BTreeMap<String, usize> = BTreeMap::new();
    for &id in graph.inputs() {
        let v = graph.value(id);
        let bad = |message: String| CompileError::Input {
            name: v.name.clone(),
            message,
        };
        let t = inputs
            .iter()
            .find(|(n, _)| *n == v.name)
            .map(|(_, t)| t)
            .ok_or_else(|| bad("missing".into()))?;
        let ty = graph.type_of(id)?;
        if crate::ir::Dtype::from(t.dtype()) != ty.dtype || t.shape.len() != ty.shape.len() {
            return Err(bad(format!(
                "expected {ty}, got {}{:?}",
                t.dtype(),
                t.shape
            )));
        }
        for (d, &n) in ty.shape.iter().zip(&t.shape) {
            match d {
                Dim::Fixed(f) if *f != n => {
                    return Err(bad(format!("expected {ty}, got shape {:?}", t.shape)))
                }
                Dim::Fixed(_) => {}
                Dim::Sym(s) => {
                    let bound = *syms.entry(s.clone()).or_insert(n);
                    if bound != n {
                        return Err(bad(format!(
                            "dim {s} is {n} here but {bound} in another input"
                        )));
                    }
                }
            }
        }
        if t.shape.iter().product::<usize>() != len(t) {
            return Err(bad("data length disagrees with the shape".into()));
        }
        slots[id.index()] = Some(t.clone());
    }
    if let Some((name, _)) = inputs
        .iter()
        .find(|(n, _)| !graph.inputs().iter().any(|&i| graph.value(i).name == *n))
    {
        return Err(CompileError::Input {
            name: name.to_string(),
            message: "is not an input of this graph".into(),
        });
    }
    for (i, v) in graph.values().iter().enumerate() {
        if let Source::Initializer(t) = &v.source {
            slots[i] = Some(t.clone());
        }
    }
    for node in graph.nodes() {
        let args = node
            .inputs
            .iter()
            .map(|&id| {
                slots[id.index()].as_ref().ok_or_else(|| CompileError::Op {
                    node: node.name.clone(),
                    message: format!("input {} has no value", graph.value(id).name),
                })
            })
            .collect::<Result<Vec<&Tensor>, _>>()?;
        let outs = node.op.eval(&args).map_err(|e| CompileError::Op {
            node: node.name.clone(),
            message: e.to_string(),
        })?;
        if outs.len() != node.outputs.len() {
            return Err(CompileError::Op {
                node: node.name.clone(),
                message: format!(
                    "produced {} outputs, {} declared",
                    outs.len(),
                    node.outputs.len()
                ),
            });
        }
        for (&id, t) in node.outputs.iter().zip(outs) {
            slots[id.index()] = Some(t);
        }
    }
    graph
        .outputs()
        .iter()
        .map(|&id| {
            let name = graph.value(id).name.clone();
            slots[id.index()]
                .take()
                .map(|t| (name.clone(), t))
                .ok_or_else(|| {
                    CompileError::InvalidGraph(format!("output {name} was not computed"))
                })
        })
        .collect()
}

fn len(t: &Tensor) -> usize {
    match &t.data {
        uie_model::TensorData::F32(v) => v.len(),
        uie_model::TensorData::I64(v) => v.len(),
    }
}

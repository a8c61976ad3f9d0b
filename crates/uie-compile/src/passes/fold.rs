//! Constant folding: a node whose inputs are all constants (initializers, or outputs of nodes
//! folded before it) is evaluated at compile time with the reference evaluator ([`Op::eval`])
//! and its outputs become initializers under the same names (e.g. a `Transpose` of a centre
//! table). Nodes producing a graph output are kept, so every output stays a node output.
//!
//! [`Op::eval`]: crate::ops::Op::eval

use std::collections::{BTreeMap, BTreeSet};

use uie_model::Tensor;

use super::rebuild;
use crate::error::CompileError;
use crate::ir::{Graph, Source, ValueId};

/// Returns the graph with every foldable node replaced by initializers.
pub fn fold_constants(graph: Graph) -> Result<Graph, CompileError> {
    let outputs: BTreeSet<ValueId> = graph.outputs().iter().copied().collect();
    let mut constants: BTreeMap<ValueId, Tensor> = BTreeMap::new();
    let mut keep = vec![true; graph.nodes().len()];
    for (i, node) in graph.nodes().iter().enumerate() {
        if node.outputs.iter().any(|o| outputs.contains(o)) {
            continue;
        }
        let mut args: Vec<&Tensor> = Vec::with_capacity(node.inputs.len());
        for &id in &node.inputs {
            match (&graph.value(id).source, constants.get(&id)) {
                (_, Some(t)) => args.push(t),
                (Source::Initializer(t), None) => args.push(t),
                _ => break,
            }
        }
        if args.len() != node.inputs.len() {
            continue;
        }
        let outs = node.op.eval(&args).map_err(|e| CompileError::Op {
            node: node.name.clone(),
            message: format!("constant folding: {e}"),
        })?;
        for (&o, t) in node.outputs.iter().zip(outs) {
            constants.insert(o, t);
        }
        keep[i] = false;
    }
    if keep.iter().all(|&k| k) {
        return Ok(graph);
    }
    rebuild(graph, &keep, constants)
}

//! Dead-node removal: nodes whose outputs no graph output depends on are dropped, and so are the
//! initializers only they used.

use std::collections::{BTreeMap, BTreeSet};

use super::rebuild;
use crate::error::CompileError;
use crate::ir::{Graph, ValueId};

/// Returns the graph without the nodes that do not contribute to an output.
pub fn remove_dead(graph: Graph) -> Result<Graph, CompileError> {
    let mut live: BTreeSet<ValueId> = graph.outputs().iter().copied().collect();
    let mut keep = vec![false; graph.nodes().len()];
    for (i, node) in graph.nodes().iter().enumerate().rev() {
        if node.outputs.iter().any(|o| live.contains(o)) {
            keep[i] = true;
            live.extend(node.inputs.iter().copied());
        }
    }
    let unused_initializers = graph.values().len() > live.len() + graph.nodes().len();
    if keep.iter().all(|&k| k) && !unused_initializers {
        return Ok(graph);
    }
    rebuild(graph, &keep, BTreeMap::new())
}

//! Graph passes between shape inference and emission, each in its own file and each switchable
//! through [`PassOptions`]. A pass returns a new graph with the same inputs, outputs (names and
//! values) and metadata; the pipeline validates and shape-infers it again.
//!
//! - [`fold`]: constant folding of nodes whose inputs are all constants.
//! - [`dead`]: removal of nodes (and initializers) that no graph output depends on.

pub mod dead;
pub mod fold;

use std::collections::BTreeMap;

use uie_model::Tensor;

use crate::error::CompileError;
use crate::ir::{Graph, ValueId};

/// Which passes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassOptions {
    /// Fold nodes whose inputs are all initializers into initializers.
    pub constant_folding: bool,
    /// Remove nodes and initializers no output depends on.
    pub dead_nodes: bool,
}

impl PassOptions {
    /// Every pass on.
    pub fn all() -> PassOptions {
        PassOptions {
            constant_folding: true,
            dead_nodes: true,
        }
    }

    /// Every pass off.
    pub fn none() -> PassOptions {
        PassOptions {
            constant_folding: false,
            dead_nodes: false,
        }
    }
}

impl Default for PassOptions {
    fn default() -> PassOptions {
        PassOptions::all()
    }
}

/// Runs the selected passes in order (folding first, so folded-away producers become dead).
pub fn run(mut graph: Graph, options: &PassOptions) -> Result<Graph, CompileError> {
    if options.constant_folding {
        graph = fold::fold_constants(graph)?;
    }
    if options.dead_nodes {
        graph = dead::remove_dead(graph)?;
    }
    Ok(graph)
}

/// Rebuilds `graph` keeping the nodes `keep[i]`, turning the values in `constants` into
/// initializers, and dropping initializers nothing uses. Value names, the input and output order
/// and the metadata are kept. Tensors are moved from the old graph into the new one, never copied.
pub(crate) fn rebuild(
    mut graph: Graph,
    keep: &[bool],
    mut constants: BTreeMap<ValueId, Tensor>,
) -> Result<Graph, CompileError> {
    let mut tensors = graph.take_initializers();
    let graph = graph;
    let mut out = Graph::new(graph.name.clone());
    out.metadata = graph.metadata.clone();
    let mut map: BTreeMap<ValueId, ValueId> = BTreeMap::new();
    for &id in graph.inputs() {
        let v = graph.value(id);
        map.insert(id, out.add_input(&v.name, graph.type_of(id)?.clone())?);
    }
    // Initializers are added on first use, so unused ones disappear.
    let mut resolve = |out: &mut Graph,
                       map: &mut BTreeMap<ValueId, ValueId>,
                       id: ValueId|
     -> Result<ValueId, CompileError> {
        if let Some(&m) = map.get(&id) {
            return Ok(m);
        }
        let v = graph.value(id);
        let t = match constants.remove(&id).or_else(|| tensors.remove(&id)) {
            Some(t) => t,
            None => {
                return Err(CompileError::InvalidGraph(format!(
                    "pass: value {} is used but not defined",
                    v.name
                )))
            }
        };
        let m = out.add_initializer(&v.name, t)?;
        map.insert(id, m);
        Ok(m)
    };
    for (i, node) in graph.nodes().iter().enumerate() {
        if !keep.get(i).copied().unwrap_or(false) {
            continue;
        }
        let inputs = node
            .inputs
            .iter()
            .map(|&id| resolve(&mut out, &mut map, id))
            .collect::<Result<Vec<_>, _>>()?;
        let names: Vec<&str> = node
            .outputs
            .iter()
            .map(|&o| graph.value(o).name.as_str())
            .collect();
        let outs = out.add_node(&node.name, node.op.clone(), &inputs, &names)?;
        for (&o, n) in node.outputs.iter().zip(outs) {
            map.insert(o, n);
        }
    }
    for &id in graph.outputs() {
        let m = resolve(&mut out, &mut map, id)?;
        out.add_output(m)?;
    }
    out.infer_shapes()?;
    Ok(out)
}

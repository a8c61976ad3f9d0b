//! Structural validation and shape inference of an IR graph.

use super::{Graph, Source, TensorType};
use crate::error::CompileError;
use crate::ops::Arg;

impl Graph {
    /// Checks the structure: every node input defined (by an input, an initializer or an earlier
    /// node), every node output defined by that node, at least one graph output, no graph output
    /// or input listed twice.
    pub fn validate(&self) -> Result<(), CompileError> {
        let bad = |m: String| Err(CompileError::InvalidGraph(m));
        for (i, node) in self.nodes.iter().enumerate() {
            for &input in &node.inputs {
                let v = &self.values[input.0];
                match v.source {
                    Source::Input | Source::Initializer(_) => {}
                    Source::Node(j) if j < i => {}
                    Source::Node(_) => {
                        return bad(format!(
                            "node {}: input {} is used before it is defined",
                            node.name, v.name
                        ))
                    }
                }
            }
            for &output in &node.outputs {
                if self.values[output.0].source != Source::Node(i) {
                    return bad(format!(
                        "node {}: output {} is defined elsewhere",
                        node.name, self.values[output.0].name
                    ));
                }
            }
        }
        if self.outputs.is_empty() {
            return bad("the graph has no output".into());
        }
        for (what, list) in [("input", &self.inputs), ("output", &self.outputs)] {
            let mut seen = list.clone();
            seen.sort();
            seen.dedup();
            if seen.len() != list.len() {
                return bad(format!("a graph {what} is listed twice"));
            }
        }
        for &id in &self.inputs {
            if self.values[id.0].ty.is_none() {
                return bad(format!("input {} has no type", self.values[id.0].name));
            }
        }
        Ok(())
    }

    /// Runs every op's shape rule in node order and records the output types. A type already
    /// present on an output must agree with the inferred one.
    pub fn infer_shapes(&mut self) -> Result<(), CompileError> {
        self.validate()?;
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            let mut args = Vec::with_capacity(node.inputs.len());
            for &input in &node.inputs {
                let v = &self.values[input.0];
                let ty = v.ty.as_ref().ok_or_else(|| CompileError::Op {
                    node: node.name.clone(),
                    message: format!("input {} has no type", v.name),
                })?;
                let constant = match &v.source {
                    Source::Initializer(t) => Some(t),
                    _ => None,
                };
                args.push(Arg { ty, constant });
            }
            let types: Vec<TensorType> = node.op.infer(&args).map_err(|e| CompileError::Op {
                node: node.name.clone(),
                message: e.to_string(),
            })?;
            if types.len() != node.outputs.len() {
                return Err(CompileError::Op {
                    node: node.name.clone(),
                    message: format!(
                        "{} outputs declared, the op has {}",
                        node.outputs.len(),
                        types.len()
                    ),
                });
            }
            let outputs = node.outputs.clone();
            let name = node.name.clone();
            for (id, ty) in outputs.into_iter().zip(types) {
                let v = &mut self.values[id.0];
                match &v.ty {
                    Some(old) if *old != ty => {
                        return Err(CompileError::Op {
                            node: name,
                            message: format!("output {} declared {old}, inferred {ty}", v.name),
                        })
                    }
                    _ => v.ty = Some(ty),
                }
            }
        }
        Ok(())
    }
}

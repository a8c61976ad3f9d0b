//! The one orchestrator: read checkpoint → lower → validate → infer shapes → emit → serialise →
//! write. Passes (none yet) slot in between shape inference and emission.

use std::path::Path;

use uie_model::Checkpoint;

use crate::error::CompileError;
use crate::ir::Graph;
use crate::{lower, onnx};

/// Lowers, validates and shape-infers a checkpoint's graph.
pub fn build_graph(checkpoint: &Checkpoint) -> Result<Graph, CompileError> {
    let mut graph = lower::lower(checkpoint)?;
    graph.validate()?;
    graph.infer_shapes()?;
    Ok(graph)
}

/// Compiles a checkpoint to ONNX model bytes.
pub fn compile(checkpoint: &Checkpoint) -> Result<Vec<u8>, CompileError> {
    let graph = build_graph(checkpoint)?;
    onnx::to_model_bytes(&graph)
}

/// Reads the checkpoint directory, compiles it and writes the model to `out` atomically. Returns
/// the number of bytes written.
pub fn compile_to_file(checkpoint_dir: &Path, out: &Path) -> Result<usize, CompileError> {
    let checkpoint = Checkpoint::read(checkpoint_dir)?;
    let bytes = compile(&checkpoint)?;
    onnx::write_atomically(out, &bytes)?;
    Ok(bytes.len())
}

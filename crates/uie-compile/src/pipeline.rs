//! The one orchestrator: read checkpoint → lower → validate → infer shapes → passes → emit →
//! serialise → write.
//!
//! [`CompileOptions`] selects the debug outputs of the lowering
//! ([`LowerOptions::debug_outputs`](crate::lower::LowerOptions)) and the graph passes
//! ([`PassOptions`]); [`compile`] and [`build_graph`] use the defaults (no debug outputs, every
//! pass on).

use std::path::Path;

use uie_model::Checkpoint;

use crate::error::CompileError;
use crate::ir::Graph;
use crate::lower::LowerOptions;
pub use crate::passes::PassOptions;
use crate::{lower, onnx, passes};

/// Everything a compilation can be asked for. The default: no debug outputs, every pass on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompileOptions {
    /// Also output the intermediate UIE values (`debug.*`, see [`uie_model::graph::DEBUG_OUTPUTS`]).
    pub debug_outputs: bool,
    /// Which graph passes run after shape inference.
    pub passes: PassOptions,
}

/// Lowers, validates, shape-infers and optimises a checkpoint's graph with the default options.
pub fn build_graph(checkpoint: &Checkpoint) -> Result<Graph, CompileError> {
    build_graph_with(checkpoint, &CompileOptions::default())
}

/// [`build_graph`] with options.
pub fn build_graph_with(
    checkpoint: &Checkpoint,
    options: &CompileOptions,
) -> Result<Graph, CompileError> {
    let graph = lower::lower_with(checkpoint, lower_options(options))?;
    finish_graph(graph, options)
}

/// [`build_graph_with`] consuming the checkpoint: its tensors move into the graph, so the graph
/// holds the only copy of the weights ([`lower::lower_owned`]). Same graph, same bytes.
pub fn build_graph_owned(
    checkpoint: Checkpoint,
    options: &CompileOptions,
) -> Result<Graph, CompileError> {
    let graph = lower::lower_owned(checkpoint, lower_options(options))?;
    finish_graph(graph, options)
}

fn lower_options(options: &CompileOptions) -> LowerOptions {
    LowerOptions {
        debug_outputs: options.debug_outputs,
    }
}

/// Validation, shape inference and the passes after lowering.
fn finish_graph(mut graph: Graph, options: &CompileOptions) -> Result<Graph, CompileError> {
    graph.validate()?;
    graph.infer_shapes()?;
    let mut graph = passes::run(graph, &options.passes)?;
    graph.validate()?;
    graph.infer_shapes()?;
    Ok(graph)
}

/// Compiles a checkpoint to ONNX model bytes.
pub fn compile(checkpoint: &Checkpoint) -> Result<Vec<u8>, CompileError> {
    compile_with(checkpoint, &CompileOptions::default())
}

/// [`compile`] with options.
pub fn compile_with(
    checkpoint: &Checkpoint,
    options: &CompileOptions,
) -> Result<Vec<u8>, CompileError> {
    let graph = build_graph_with(checkpoint, options)?;
    onnx::to_model_bytes(&graph)
}

/// Reads the checkpoint directory, compiles it and writes the model to `out` atomically. Returns
/// the number of bytes written.
pub fn compile_to_file(checkpoint_dir: &Path, out: &Path) -> Result<usize, CompileError> {
    compile_to_file_with(checkpoint_dir, out, &CompileOptions::default())
}

/// [`compile_to_file`] with options.
pub fn compile_to_file_with(
    checkpoint_dir: &Path,
    out: &Path,
    options: &CompileOptions,
) -> Result<usize, CompileError> {
    let checkpoint = Checkpoint::read_model(checkpoint_dir)?;
    let graph = build_graph_owned(checkpoint, options)?;
    let bytes = onnx::to_model_bytes(&graph)?;
    drop(graph);
    onnx::write_atomically(out, &bytes)?;
    Ok(bytes.len())
}

/// Reads the checkpoint directory, compiles it and writes the model to `out` (and, with external
/// data, `<out>.<hash>.data`) atomically ([`onnx::write_model`]). Memory: the weights are read once
/// (tensor by tensor, producer-private files skipped: [`Checkpoint::read_model`]), hashed as a
/// stream, moved into the graph ([`build_graph_owned`]) and streamed into the data file, so one
/// copy of the weights is held at any time. Past the 2 GiB protobuf limit, external data is used
/// even if `write` does not ask for it.
pub fn compile_to_path(
    checkpoint_dir: &Path,
    out: &Path,
    options: &CompileOptions,
    write: &onnx::WriteOptions,
) -> Result<onnx::WriteReport, CompileError> {
    let checkpoint = Checkpoint::read_model(checkpoint_dir)?;
    let graph = build_graph_owned(checkpoint, options)?;
    onnx::write_model_owned(graph, out, write)
}

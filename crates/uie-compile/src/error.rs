//! The one error type of the compiler library: every failure names the tensor, node or file.

use std::path::PathBuf;

use uie_model::ModelError;

/// Errors from lowering, validating, evaluating, emitting, writing or verifying a model.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The checkpoint or config is invalid (the message names the file, field or tensor).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The config asks for something this compiler cannot lower yet.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The IR graph is malformed (undefined value, duplicate name, missing type, ...).
    #[error("invalid graph: {0}")]
    InvalidGraph(String),
    /// An op rejected its inputs during shape inference or evaluation.
    #[error("node {node}: {message}")]
    Op {
        /// Name of the node.
        node: String,
        /// What is wrong.
        message: String,
    },
    /// Inputs given to the evaluator disagree with the graph's inputs.
    #[error("input {name}: {message}")]
    Input {
        /// Name of the input.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// An ONNX file could not be encoded or decoded.
    #[error("onnx: {0}")]
    Onnx(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The runtime failed to load or run a model.
    #[error("runtime ({engine}): {message}")]
    Runtime {
        /// Which engine.
        engine: String,
        /// The runtime's message.
        message: String,
    },
    /// Verification could not be carried out (e.g. the checkpoint has no golden rows).
    #[error("verify: {0}")]
    Verify(String),
}

impl CompileError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> CompileError {
        CompileError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

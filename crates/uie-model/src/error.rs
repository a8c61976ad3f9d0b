//! The one error type of `uie-model`: every failure names the file, field or tensor at fault.

use std::path::{Path, PathBuf};

/// Errors from reading, validating or writing configs and checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The config is not valid TOML or has unknown or mistyped keys.
    #[error("config syntax: {0}")]
    ConfigSyntax(String),
    /// A config value is impossible.
    #[error("config field {path}: {message}")]
    InvalidConfig {
        /// Dotted path of the field, e.g. `ple.expert_hidden[1]`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// An error inside a named file.
    #[error("{path}: {inner}")]
    InFile {
        /// The file.
        path: PathBuf,
        /// The error.
        inner: Box<ModelError>,
    },
    /// A safetensors file is corrupt or truncated.
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A tensor the config requires is absent.
    #[error("tensor {name}: missing (the config requires shape {expected:?})")]
    MissingTensor {
        /// Tensor name.
        name: String,
        /// Shape the config implies.
        expected: Vec<usize>,
    },
    /// A tensor is present that the config does not explain.
    #[error("tensor {name}: not part of this config's model")]
    UnexpectedTensor {
        /// Tensor name.
        name: String,
    },
    /// A tensor's shape disagrees with the config.
    #[error(
        "tensor {name}: shape {found:?} disagrees with the config, which requires {expected:?}"
    )]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A tensor has the wrong element type.
    #[error("tensor {name}: dtype {found}, expected {expected}")]
    DtypeMismatch {
        /// Tensor name.
        name: String,
        /// Expected dtype.
        expected: String,
        /// Dtype in the file.
        found: String,
    },
    /// A tensor holds NaN or infinity.
    #[error("tensor {name}: element {index} is {value}, not finite")]
    NonFinite {
        /// Tensor name.
        name: String,
        /// Flat index of the first bad element.
        index: usize,
        /// The value.
        value: f32,
    },
    /// The checkpoint's metadata is unreadable.
    #[error("checkpoint metadata: {0}")]
    Meta(String),
    /// A batch of inputs does not fit the model.
    #[error(transparent)]
    Input(#[from] InputError),
}

/// Why a batch of inputs does not fit a model ([`RawBatch::validate`](crate::RawBatch::validate),
/// [`RawBatch::from_tensors`](crate::RawBatch::from_tensors)): every error names the feature or
/// graph input at fault, and says what was expected and what was found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// A feature the model needs is absent from the request.
    #[error("feature {0}: missing from the request")]
    MissingFeature(String),
    /// The request names a feature the model does not have.
    #[error("feature {0}: not an input of this model")]
    UnknownFeature(String),
    /// The request gives a feature twice.
    #[error("feature {0}: given more than once")]
    DuplicateFeature(String),
    /// A feature or graph input has the wrong element type.
    #[error("feature {name}: expected {expected}, got {found}")]
    WrongType {
        /// Feature or graph input name.
        name: String,
        /// What the model takes.
        expected: &'static str,
        /// What the request gave.
        found: &'static str,
    },
    /// A feature's length disagrees with the batch size.
    #[error("feature {name}: {found} values, but the batch has {expected} rows")]
    WrongLength {
        /// Feature name.
        name: String,
        /// Rows in the batch.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// A dense value is NaN or infinite.
    #[error(
        "input {}: row {row}, column {column} ({name}) is {value}, not a finite number",
        crate::graph::DENSE
    )]
    NonFinite {
        /// The dense feature's name.
        name: String,
        /// Row index.
        row: usize,
        /// Column of the feature in the dense input.
        column: usize,
        /// The value.
        value: f32,
    },
    /// A graph input has the wrong shape (rank, a fixed dim, or a value count that does not fit
    /// the batch).
    #[error("input {name}: {message}")]
    BadInput {
        /// Graph input name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The behaviour sequence is wrong: `hist_items` / `hist_len` missing when the model needs
    /// them, given when it has no sequence, of the wrong length, or a `hist_len` outside `[0, L]`.
    #[error("feature {name}: {message}")]
    BadHistory {
        /// `hist_items` or `hist_len`.
        name: String,
        /// What is wrong.
        message: String,
    },
}

impl ModelError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> ModelError {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn in_file(self, path: &Path) -> ModelError {
        ModelError::InFile {
            path: path.to_path_buf(),
            inner: Box::new(self),
        }
    }
}

//! The one error type of `uie-train`: every failure names the file, line, column, feature, task or
//! tensor at fault.

use std::path::PathBuf;

use uie_model::ModelError;

/// Errors from loading data, training, evaluating and predicting.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A config, checkpoint or batch failed `uie-model`'s checks.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A data line is malformed.
    #[error("{path}: line {line}, column {column}: {message}")]
    Data {
        /// The data file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 0-based raw column index.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The config names a feature the data set does not have (or may not be used as a feature).
    #[error("feature {name:?}: {message}")]
    UnknownFeature {
        /// The feature name from the config.
        name: String,
        /// Why it is refused.
        message: String,
    },
    /// The config names a task the data set cannot label.
    #[error("task {name:?}: not a task of this data set (known: {known})")]
    UnknownTask {
        /// The task name from the config.
        name: String,
        /// The tasks the reader knows.
        known: String,
    },
    /// The data set has no usable rows, or a split came out empty.
    #[error("data: {0}")]
    EmptyData(String),
    /// A resume checkpoint does not fit this run.
    #[error("resume from {path}: {message}")]
    Resume {
        /// The checkpoint directory.
        path: PathBuf,
        /// What does not fit.
        message: String,
    },
    /// A tensor the model needs is missing or has the wrong shape or dtype.
    #[error("tensor {name}: {message}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Labels do not match the batch.
    #[error("labels: {0}")]
    Labels(String),
    /// The dfdx device failed (out of memory).
    #[error("dfdx device: {0}")]
    Device(String),
    /// Training diverged.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// The config asks for a part of the model this trainer does not implement yet.
    #[error("{0}")]
    Unsupported(String),
}

impl TrainError {
    /// [`TrainError::Io`] on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> TrainError {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<dfdx::tensor::CpuError> for TrainError {
    fn from(e: dfdx::tensor::CpuError) -> Self {
        TrainError::Device(format!("{e:?}"))
    }
}

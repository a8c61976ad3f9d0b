//! The runtime's error type: every request error names the feature at fault.

use uie_model::InputError;

/// Errors from loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The model file could not be read or is not a valid ONNX model for tract.
    #[error("loading {what}: {message}")]
    Load {
        /// The path, or `"<bytes>"`.
        what: String,
        /// tract's explanation.
        message: String,
    },
    /// The model loaded but lacks the uie metadata (`uie.schema`, `uie.tasks`) or has it malformed.
    #[error("model metadata: {0}")]
    Metadata(String),
    /// A request does not fit the model (see [`InputError`]): the message names the feature or
    /// graph input at fault and says what was expected and what was found.
    #[error(transparent)]
    Input(#[from] InputError),
    /// tract failed (or panicked) while running the model.
    #[error("running the model: {0}")]
    Run(String),
}

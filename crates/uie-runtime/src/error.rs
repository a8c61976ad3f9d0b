//! The runtime's error type: every request error names the feature at fault.

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
    /// A feature the model needs is absent from the request.
    #[error("feature {0}: missing from the request")]
    MissingFeature(String),
    /// The request names a feature the model does not have.
    #[error("feature {0}: not an input of this model")]
    UnknownFeature(String),
    /// The request gives a feature twice.
    #[error("feature {0}: given more than once")]
    DuplicateFeature(String),
    /// A feature has the wrong type (ids for a numeric feature or numbers for a categorical one).
    #[error("feature {name}: expected {expected}, got {found}")]
    WrongType {
        /// Feature name.
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
    /// A numeric feature holds NaN or infinity.
    #[error("feature {name}: row {row} is {value}, not a finite number")]
    NonFinite {
        /// Feature name.
        name: String,
        /// Row index.
        row: usize,
        /// The value.
        value: f32,
    },
    /// A raw engine input is wrong (missing, unknown, wrong dtype or rank).
    #[error("input {name}: {message}")]
    BadInput {
        /// Graph input name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The behaviour sequence of a request is wrong: `hist_items` / `hist_len` missing when the
    /// model needs them, given when it has no sequence, of the wrong length, or a `hist_len`
    /// outside `[0, L]`.
    #[error("feature {name}: {message}")]
    BadHistory {
        /// `hist_items` or `hist_len`.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// tract failed (or panicked) while running the model.
    #[error("running the model: {0}")]
    Run(String),
}

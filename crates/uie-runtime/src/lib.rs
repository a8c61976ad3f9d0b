//! `uie-runtime`: serve a compiled uie model from Rust, through tract.
//!
//! - [`Model`] (module [`model`]): the typed API. Load a `.onnx` written by `uie-compile`, build a
//!   [`Batch`] of named features, get [`Predictions`] per task. Requests are validated first; every
//!   error names the feature at fault.
//! - [`ModelHandle`] (module [`handle`]): a shared model that hot-reloads a new file atomically
//!   while serving; a file that fails to load leaves the old model serving.
//! - [`engine::Engine`]: the low-level engine (named tensors in, named tensors out), used by the
//!   typed API, by `uie-compile verify` and by the parity tests; it runs a model plain or optimised.
//! - [`rewrites`]: the load-time rewrites of tract's typed model into the runtime's fused ops, one
//!   folder per rewrite, one driver; [`EngineOptions`] turns them off by [`RewriteName`].
//!
//! Architecture invariant: this is the only crate that imports tract, and it never links the
//! compiler or the trainer.

pub mod declutter;
pub mod engine;
pub mod error;
pub mod handle;
pub mod model;
pub mod rewrites;
pub mod upper;

pub use engine::{Engine, EngineOptions, Value};
pub use error::RuntimeError;
pub use handle::ModelHandle;
pub use model::{
    Batch, CategoricalSpec, FeatureValues, Model, Predictions, Schema, TensorSpec, TensorType,
};
pub use rewrites::{RewriteCounts, RewriteName, RewriteSet};

/// The id rule for string-valued categorical features (FNV-1a 64 as int64): the trainer's rule,
/// re-exported so that a service sends the ids the model was trained on.
pub use uie_model::error::one_line;
pub use uie_model::hashing::feature_id;

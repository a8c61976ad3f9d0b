//! `uie-runtime`: serve a compiled uie model from Rust, through tract.
//!
//! - [`Model`] (module [`model`]): the typed API. Load a `.onnx` written by `uie-compile`, give it
//!   a [`RawBatch`] (the graph's shape; [`Batch`] builds one from named features), get
//!   [`Predictions`] per task. A request is validated once, before it runs; every error names the
//!   feature at fault.
//! - [`ModelHandle`] (module [`handle`]): a shared model that hot-reloads a new file atomically
//!   while serving; a file that fails to load leaves the old model serving.
//! - [`engine::Engine`]: the low-level engine (named [`Tensor`]s in, named tensors out), used by
//!   the typed API, by `uie-compile verify` and by the parity tests; it runs a model plain or
//!   optimised.
//! - [`rewrites`]: the load-time rewrites of tract's typed model into the runtime's fused ops, one
//!   folder per rewrite, one driver; [`EngineOptions`] turns them off by [`RewriteName`].
//!
//! The model contract (graph input and output names, the `uie.*` metadata, [`RawBatch`], the one
//! tensor type [`Tensor`]) lives in `uie-model` and is re-exported here.
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

pub use engine::{Engine, EngineOptions};
pub use error::RuntimeError;
pub use handle::ModelHandle;
pub use model::{Batch, FeatureValues, Model, Predictions};
pub use rewrites::{RewriteCounts, RewriteName, RewriteSet};
pub use uie_model::graph;
pub use uie_model::graph::{
    CategoricalInput, GraphSchema, ModelMetadata, SequenceInput, TensorSpec,
};
pub use uie_model::{Dtype, History, InputError, RawBatch, Tensor, TensorData};

/// The id rule for string-valued categorical features (FNV-1a 64 as int64): the trainer's rule,
/// re-exported so that a service sends the ids the model was trained on.
pub use uie_model::hashing::feature_id;

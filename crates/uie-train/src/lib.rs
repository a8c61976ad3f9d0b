//! `uie-train`: trains the PLE backbone (`docs/model.md` §1, §6) with dfdx and writes
//! `uie_model` checkpoints.
//!
//! - [`data`]: data readers (Census-Income, Protocol A) and the train/validation/test split.
//! - [`model`]: the forward pass on runtime-shaped dfdx tensors, weight initialisation,
//!   [`predict`] (the parity oracle) and [`evaluate`].
//! - [`metrics`]: ROC AUC and logloss.
//! - [`export`]: the prepared splits and initial weights as safetensors, for other frameworks.
//! - [`train`](mod@train): Adam, the epoch loop, early stopping, checkpoints and resume.
//! - [`observer`]: how a run reports its progress ([`Observer`]); nothing in this library prints.
//! - [`report`]: epoch records and cohort/GAUC evaluation reports.
//! - [`rng`]: the seeded generator behind every split, negative, shuffle and initial weight.
//! - [`uie`]: host-side UIE math (§4–§5): retrieval, stream clustering, personalised memory.

pub mod data;
pub mod error;
pub mod export;
pub mod metrics;
pub mod model;
pub mod observer;
pub mod report;
pub mod rng;
pub mod train;
pub mod uie;

pub use data::{Dataset, Splits};
pub use error::TrainError;
pub use metrics::TaskMetrics;
pub use model::{evaluate, predict};
pub use observer::{Observer, Silent};
pub use train::{eval_checkpoint, train, train_with, TrainOptions, TrainReport};

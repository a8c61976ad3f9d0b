//! The contract between trainer and compiler, free of any ML framework.
//!
//! - [`config`]: the model config file (serde + toml), validated with the field's path in errors.
//! - [`schema`]: the model's structure and the name and shape of every tensor it needs.
//! - [`checkpoint`]: the checkpoint directory (config + safetensors weights), written atomically.
//! - [`hashing`]: how raw values become int64 ids and ids become embedding rows.
//! - [`graph`]: the compiled graph's interface: input and output names, types and shapes, and the
//!   `uie.*` metadata the compiler writes and the runtime reads.
//! - [`batch`]: [`RawBatch`], a batch of inputs in the graph's shape, and its one validation.
//! - [`parity`]: the tolerance engines must agree within.
//!
//! Any trainer that writes a directory following [`checkpoint`] and [`schema`] produces a
//! checkpoint `uie-compile` can compile; `docs/checkpoint-format.md` spells it out.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod graph;
pub mod hashing;
pub mod parity;
pub mod schema;

pub use batch::{History, InputView, RawBatch, ViewData};
pub use checkpoint::{Checkpoint, CheckpointFiles, CheckpointMeta, Tensor, TensorData, TensorMap};
pub use config::Config;
pub use error::{InputError, ModelError};
pub use graph::{GraphSchema, ModelMetadata, TensorSpec};
pub use schema::{Dtype, Plan};

/// The fixture configs the unit tests edit and parse (dev-dependency `uie-testkit`).
#[cfg(test)]
pub(crate) mod test_support {
    pub(crate) use uie_testkit::configs::{TINY_CENSUS as SMALL, TINY_UIE as SMALL_UIE};
}

//! Test support shared by the tests of every crate (a dev-dependency only, never published).
//!
//! - [`configs`]: the fixture configs of `fixtures/configs/`, embedded, and their parsing.
//! - [`rng`]: the seeded generator of all test data (ChaCha8, a stable stream).
//! - [`checkpoints`]: checkpoints with seeded random weights and batches of seeded random rows.
//! - [`assertions`]: the parity comparison of two tensors, snapshot files, directory listings.
//! - [`cli`]: the check every bad-input test of a project binary makes on a refused run.
//! - [`fuzz_input`]: the input formats of the multi-part fuzz targets (`fuzz/`).
//! - [`fuzz_regressions`]: the walk over a fuzz target's regression fixtures.
//!
//! It depends on the model contract (`uie-model`) and the generator only: never on tract, dfdx
//! or protobuf, so that every crate can take it as a dev-dependency. Being test code, its helpers
//! panic with a message (like an assertion) where a library would return an error.

pub mod assertions;
pub mod checkpoints;
pub mod cli;
pub mod configs;
pub mod fuzz_input;
pub mod fuzz_regressions;
pub mod rng;

use std::path::PathBuf;

pub use rng::Rng;

/// The repository root (this crate lives in `crates/uie-testkit/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

//! ONNX: the only module of the workspace's compiler that names protobuf types.
//!
//! - [`version`]: the target `ir_version` and opset, defined once.
//! - [`emit`](to_model_bytes): IR graph → `ModelProto` → bytes.
//! - [`read`](summarize): bytes → [`ModelSummary`] (what `uie-compile inspect` prints).
//! - [`write`](write_atomically): atomic file writes (temp file, fsync, rename).

mod emit;
mod read;
pub mod version;
mod write;

pub use emit::to_model_bytes;
pub use read::{summarize, InitializerSummary, ModelSummary, ValueSummary};
pub use write::write_atomically;

//! ONNX: the only module of the workspace's compiler that names protobuf types.
//!
//! - [`version`]: the target `ir_version` and opset, defined once.
//! - [`emit`](to_model_bytes): IR graph → `ModelProto` → bytes.
//! - [`external`](write_model): IR graph → model file, inline or with ONNX external data (one
//!   aligned data file beside the model), streamed, atomic, deterministic.
//! - [`read`](summarize): bytes → [`ModelSummary`] (what `uie-compile inspect` prints), never
//!   loading external data.
//! - [`write`](write_atomically): atomic file writes (temp file, fsync, rename).

mod emit;
mod external;
mod read;
pub mod version;
mod write;

pub use emit::to_model_bytes;
pub use external::{
    data_file_path, is_data_file_of, write_model, write_model_owned, DataFileReport,
    ExternalDataOptions, WriteOptions, WriteReport, DATA_SUFFIX, DEFAULT_ALIGNMENT,
    DEFAULT_EXTERNAL_THRESHOLD, HASH_BYTES, PROGRESS_MIN_BYTES, PROTOBUF_LIMIT,
};
pub use read::{
    summarize, summarize_file, ExternalFileSummary, ExternalLocation, InitializerSummary,
    ModelSummary, ValueSummary, MEMORY_PREFIX, SUBGRAPH_PREFIXES,
};
pub use write::write_atomically;

//! `uie-compile`: lowers a uie checkpoint's inference path into one self-contained ONNX file.
//!
//! The path from checkpoint to file, orchestrated by [`pipeline`]:
//!
//! 1. [`lower`]: checkpoint → [`ir::Graph`], a small typed graph with a closed [`ops::Op`] enum;
//! 2. [`ir::Graph::validate`] and [`ir::Graph::infer_shapes`];
//! 3. [`onnx`]: IR → `ModelProto` bytes (the only module that names protobuf types), written
//!    atomically.
//!
//! [`eval`] is a naive reference evaluator of the IR (the oracle of every op emitter and of the
//! lowering); [`verify`] compares a compiled file against a checkpoint's golden rows under tract.
//!
//! [`triton`] writes a Triton model repository (`config.pbtxt` + the model under `1/`).
//!
//! Architecture invariant: nothing outside [`onnx`] imports `protobuf` or `onnx_protobuf`.

pub mod error;
pub mod eval;
pub mod ir;
pub mod lower;
pub mod onnx;
pub mod ops;
pub mod passes;
pub mod pipeline;
pub mod triton;
pub mod verify;

pub use error::CompileError;
pub use pipeline::{compile, compile_to_file};

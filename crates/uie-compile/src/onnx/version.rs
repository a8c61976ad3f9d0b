//! The ONNX versions this compiler targets: the one place they are defined (`docs/model.md` §8).

/// `ModelProto.ir_version`.
pub const IR_VERSION: i64 = 8;
/// Default-domain opset imported by every model.
pub const OPSET: i64 = 17;
/// `ModelProto.producer_name`.
pub const PRODUCER: &str = "uie-compile";

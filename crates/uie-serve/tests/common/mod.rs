//! Shared support of the `uie-serve` tests: the tiny served model (`fixtures/configs/
//! tiny-serve.toml`: `user_id` INT64 `[N]`, `dense` FP32 `[N, 1]`, output `probs` `[N, 1]`),
//! compiled with seeded random weights.

use uie_testkit::checkpoints::random_checkpoint;
use uie_testkit::configs::{config, TINY_SERVE};

/// Compiles the tiny served model with seeded random weights into `dir/model.onnx`.
pub fn model_file(dir: &std::path::Path) -> std::path::PathBuf {
    let checkpoint = random_checkpoint(config(TINY_SERVE), 7, 0.5, "uie-serve tests");
    let bytes = uie_compile::compile(&checkpoint).expect("compile");
    let path = dir.join("model.onnx");
    std::fs::write(&path, bytes).expect("write model");
    path
}

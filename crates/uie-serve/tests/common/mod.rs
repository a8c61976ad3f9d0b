//! Shared support of the `uie-serve` tests: a tiny compiled PLE model (`user_id` INT64 `[N]`,
//! `dense` FP32 `[N, 1]`, output `probs` `[N, 1]`).

#![allow(dead_code)]

use uie_model::{Checkpoint, Config, Plan, Tensor, TensorMap};

pub const CONFIG: &str = r#"
[model]
name = "signal_test"
embed_dim = 4

[features]
dense = ["age"]

[[features.categorical]]
name = "user_id"
buckets = 16

[ple]
levels = 1
shared_experts = 1
specific_experts = 1
expert_hidden = [4]

[[tasks]]
name = "click"
"#;

/// Compiles a tiny PLE model with deterministic weights into `dir/model.onnx`.
pub fn model_file(dir: &std::path::Path) -> std::path::PathBuf {
    let config = Config::from_toml_str(CONFIG).expect("config");
    let mut weights = TensorMap::new();
    let mut state = 7u64;
    for spec in Plan::new(&config).tensor_specs() {
        let n: usize = spec.shape.iter().product();
        let values = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if spec.name == "dense.std" {
                    1.0
                } else {
                    ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                }
            })
            .collect();
        weights.insert(spec.name, Tensor::f32(spec.shape, values));
    }
    let bytes =
        uie_compile::compile(&Checkpoint::new(config, weights, "signal test")).expect("compile");
    let path = dir.join("model.onnx");
    std::fs::write(&path, bytes).expect("write model");
    path
}

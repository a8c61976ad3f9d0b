//! The contract between trainer and compiler, free of any ML framework.
//!
//! - [`config`]: the model config file (serde + toml), validated with the field's path in errors.
//! - [`schema`]: the model's structure and the name and shape of every tensor it needs.
//! - [`checkpoint`]: the checkpoint directory (config + safetensors weights), written atomically.
//! - [`hashing`]: how raw values become int64 ids and ids become embedding rows.
//!
//! Any trainer that writes a directory following [`checkpoint`] and [`schema`] produces a
//! checkpoint `uie-compile` can compile; `docs/checkpoint-format.md` spells it out.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod hashing;
pub mod parity;
pub mod schema;

pub use batch::{History, RawBatch};
pub use checkpoint::{Checkpoint, CheckpointMeta, Tensor, TensorData, TensorMap};
pub use config::Config;
pub use error::ModelError;
pub use schema::Plan;

#[cfg(test)]
pub(crate) mod test_support {
    pub(crate) const SMALL: &str = r#"
[model]
name = "tiny"
embed_dim = 4

[features]
dense = ["age"]

[[features.categorical]]
name = "education"
buckets = 16

[ple]
levels = 2
shared_experts = 1
specific_experts = 1
expert_hidden = [8]

[[tasks]]
name = "income"
tower_hidden = [4]

[[tasks]]
name = "never_married"
"#;

    /// A small model with a behaviour sequence and every UIE module on.
    pub(crate) const SMALL_UIE: &str = r#"
[model]
name = "tiny_uie"
embed_dim = 4

[features]
dense = ["age"]
sequence = { item_field = "movie_id", max_len = 5 }

[[features.categorical]]
name = "user_id"
buckets = 10

[[features.categorical]]
name = "movie_id"
buckets = 20
group = "item"

[[features.categorical]]
name = "genre"
buckets = 8
group = "item"

[ple]
levels = 1
shared_experts = 1
specific_experts = 1
expert_hidden = [8]

[[tasks]]
name = "watch"

[[tasks]]
name = "like"

[uie]
dim = 6
aux_task = "watch"
user_field = "user_id"
user_tower = [5]
item_tower = []
upe = { enabled = true, centres = 7, k = 3 }
ucbe = { enabled = true, centres = 5, k = 2, rho_p = 0.1 }
ucse = { enabled = true, centres = 9, k = 4 }
"#;
}

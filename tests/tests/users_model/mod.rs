//! A PLE + UIE model with UCBE only, whose personalised user memory `memory.personal` has one row
//! per user-id bucket (`users × 32` f32, `docs/model.md` §4; the user-id embedding `embed.user_id`
//! is `users × 8`): the checkpoint with seeded random weights, rows with ids in range, negative,
//! huge and extreme. Used by the external-data test.

#![allow(dead_code)]

use std::collections::BTreeMap;

use uie_model::{Checkpoint, Config, RawBatch};
use uie_testkit::checkpoints::random_checkpoint;

/// Width of the personalised memory rows (the auxiliary width `d` of §4).
pub const AUX_DIM: usize = 32;
/// Width of the main embeddings `d_e`.
pub const EMBED_DIM: usize = 8;
/// Name of the personalised memory table.
pub const PERSONAL: &str = "memory.personal";

/// The config: `user_id` with `users` buckets, `item_id` with 1000, one dense feature, one PLE
/// level, two tasks, UIE with only UCBE enabled.
pub fn config(users: usize) -> Config {
    let text = format!(
        r#"
[model]
name = "users_ucbe"
embed_dim = {EMBED_DIM}

[features]
dense = ["age"]

[[features.categorical]]
name = "user_id"
buckets = {users}
group = "user"

[[features.categorical]]
name = "item_id"
buckets = 1000
group = "item"

[ple]
levels = 1
shared_experts = 1
specific_experts = 1
expert_hidden = [16]

[[tasks]]
name = "ctr"
tower_hidden = [8]

[[tasks]]
name = "cvr"

[uie]
dim = {AUX_DIM}
aux_task = "ctr"
user_field = "user_id"
user_tower = [16]
item_tower = []
upe = {{ enabled = false, centres = 4, k = 1 }}
ucbe = {{ enabled = true, centres = 16, k = 3, rho_p = 0.1 }}
ucse = {{ enabled = false, centres = 4, k = 1 }}
"#
    );
    Config::from_toml_str(&text).expect("config")
}

/// A checkpoint with seeded random weights for every tensor of the plan.
pub fn checkpoint(users: usize, seed: u64) -> Checkpoint {
    random_checkpoint(config(users), seed, 0.5, "uie-e2e users_model")
}

/// `n` rows: user ids in range (first, middle, last bucket), negative, huge, and the extremes.
pub fn rows(users: usize, n: usize) -> RawBatch {
    let u = users as i64;
    let pool = [
        0,
        u / 2,
        u - 1,
        u,
        -1,
        -u - 3,
        (1i64 << 40) + 17,
        i64::MAX,
        i64::MIN,
        123_456_789,
    ];
    let users: Vec<i64> = (0..n).map(|i| pool[i % pool.len()]).collect();
    let items: Vec<i64> = (0..n as i64).map(|i| i * 7919 - 500).collect();
    RawBatch {
        n,
        categorical: BTreeMap::from([
            ("user_id".to_string(), users),
            ("item_id".to_string(), items),
        ]),
        dense: (0..n).map(|i| i as f32 * 3.5 - 10.0).collect(),
        history: None,
    }
}

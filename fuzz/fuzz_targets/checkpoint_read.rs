//! Fuzz target `checkpoint_read`: bytes → `uie_model::Checkpoint::from_files`, the parser behind
//! `Checkpoint::read` (config TOML and its validation, safetensors weights checked against the
//! config's plan, `meta.json`, golden rows). The input is the files joined by
//! `uie_fuzz::SEPARATOR`. No panic is tolerated here (uie-model catches none). See
//! `docs/fuzzing.md`.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use uie_model::{Checkpoint, CheckpointFiles};

fuzz_target!(|data: &[u8]| {
    let parts = uie_fuzz::split_files(data);
    let part = |i: usize| parts.get(i).copied().unwrap_or_default();
    let files = CheckpointFiles {
        config: part(0),
        weights: part(1),
        meta: part(2),
        golden: parts.get(3).copied(),
    };
    if let Ok(checkpoint) = Checkpoint::from_files(&files, Path::new("fuzz")) {
        // What the compiler does next with a checkpoint it read.
        let _ = checkpoint.content_hash();
    }
});

//! The `checkpoint_read` fuzz target's regression fixtures (`fixtures/fuzz-regressions/
//! checkpoint_read/`, see `docs/fuzzing.md`) through the same function, on stable: every file must
//! give a checkpoint (names starting `ok-`) or a typed error (every other name), never a panic.

use std::path::Path;

use uie_model::{Checkpoint, CheckpointFiles};
use uie_testkit::fuzz_input::split_files;
use uie_testkit::fuzz_regressions::check_regressions;

#[test]
fn checkpoint_read_regressions_return_without_panicking() {
    check_regressions("checkpoint_read", |data| {
        let parts = split_files(data);
        let part = |i: usize| parts.get(i).copied().unwrap_or_default();
        Checkpoint::from_files(
            &CheckpointFiles {
                config: part(0),
                weights: part(1),
                meta: part(2),
                golden: parts.get(3).copied(),
            },
            Path::new("fuzz"),
        )
        .map(drop)
    });
}

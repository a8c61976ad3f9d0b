//! The `model_load` fuzz target's regression fixtures (`fixtures/fuzz-regressions/model_load/`,
//! see `docs/fuzzing.md`) through the same function, on stable: every file must give a model
//! (names starting `ok-`) or a typed error (every other name), never a panic.

#[path = "../../uie-model/tests/support/fuzz_fixtures.rs"]
mod fuzz_fixtures;

use uie_runtime::Model;

#[test]
fn model_load_regressions_return_without_panicking() {
    fuzz_fixtures::check_regressions("model_load", |data| Model::load_bytes(data).map(drop));
}

//! The `model_load` fuzz target's regression fixtures (`fixtures/fuzz-regressions/model_load/`,
//! see `docs/fuzzing.md`) through the same function, on stable: every file must give a model
//! (names starting `ok-`) or a typed error (every other name), never a panic.

use uie_runtime::Model;
use uie_testkit::fuzz_regressions::check_regressions;

#[test]
fn model_load_regressions_return_without_panicking() {
    check_regressions("model_load", |data| Model::load_bytes(data).map(drop));
}

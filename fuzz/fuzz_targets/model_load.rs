//! Fuzz target `model_load`: bytes → `uie_runtime::Model::load_bytes`, the runtime's loader
//! (tract's ONNX parser, typing, the fused-retrieval rewrite, tract's optimiser, the uie schema in
//! the metadata). Every input must give a model or a typed error: no crash, abort, timeout or
//! huge allocation. See `docs/fuzzing.md`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use uie_runtime::Model;

fuzz_target!(|data: &[u8]| {
    uie_fuzz::let_dependency_panics_reach_the_guards();
    if let Ok(model) = Model::load_bytes(data) {
        // What a service asks a loaded model first.
        let _ = (model.input_specs(), model.output_specs(), model.name());
    }
});

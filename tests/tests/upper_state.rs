//! `uie-runtime` clears the upper halves of the vector registers after every node of the
//! plan (`EngineOptions::clear_upper_state`, module `uie_runtime::upper`), because tract's AVX
//! kernels leave them dirty and every later legacy-SSE instruction then pays for it. The clearing
//! changes no arithmetic, so the engines with and without it must agree bit for bit on every
//! output (`probs` and, compiled with debug outputs, every debug value), at batch sizes 1, 7 and
//! 256, plain and optimised, with the runtime's rewrites on and off, on a seeded random full-UIE
//! checkpoint. (The speed it buys is measured by `scripts/bench-inference.sh` and the
//! `compare_options` example, not here.)

use uie_compile::verify::{batch_inputs, run_engine};
use uie_e2e::rewrite_parity::{debug_builds, history_if_sequence};
use uie_model::{Tensor, TensorData};
use uie_runtime::engine::{Engine, EngineOptions};
use uie_testkit::checkpoints::{rows_with_history, uie_checkpoint};

fn engine(bytes: &[u8], optimize: bool, rewrites: bool, clear_upper_state: bool) -> Engine {
    let opts = EngineOptions {
        optimize,
        clear_upper_state,
        ..EngineOptions::default()
    }
    .with_rewrites(rewrites);
    Engine::load_bytes(bytes, opts).expect("tract loads the model")
}

/// The values' bit patterns (f32 as their bits, so -0.0 and NaN payloads count too).
fn bits(t: &Tensor) -> Vec<u64> {
    match &t.data {
        TensorData::F32(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as u64).collect(),
    }
}

#[test]
fn clearing_the_upper_state_changes_no_output_bit() {
    assert!(EngineOptions::default().clear_upper_state);
    let ck = uie_checkpoint(23);
    let mut compared = 0usize;
    for (debug_outputs, bytes) in debug_builds(&ck).expect("compile") {
        for n in [1usize, 7, 256] {
            let batch = history_if_sequence(
                &ck.config,
                rows_with_history(&ck.config, n, 5, 900 + n as u64),
            );
            let inputs = batch_inputs(&ck.config, &batch).expect("inputs");
            for optimize in [false, true] {
                for rewrites in [false, true] {
                    let case = format!(
                        "n={n} debug={debug_outputs} optimize={optimize} rewrites={rewrites}"
                    );
                    let with = engine(&bytes, optimize, rewrites, true);
                    let without = engine(&bytes, optimize, rewrites, false);
                    let got = run_engine(&with, &inputs, "cleared").expect("run");
                    let want = run_engine(&without, &inputs, "not cleared").expect("run");
                    assert_eq!(got.len(), want.len(), "{case}");
                    for ((name, a), (name_b, b)) in got.iter().zip(&want) {
                        assert_eq!(name, name_b, "{case}");
                        assert_eq!(a.shape, b.shape, "{case}: output {name}");
                        assert_eq!(bits(a), bits(b), "{case}: output {name} differs");
                        compared += bits(a).len();
                    }
                }
            }
        }
    }
    println!("{compared} output values compared bit for bit");
    assert!(compared > 0);
}

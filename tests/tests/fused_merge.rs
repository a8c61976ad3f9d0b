//! Issue 8: `uie-runtime` merges the linear layers that read the same input (a PLE level's first
//! expert layers, its gates, the sequence query and UCSE's target projection) into one MatMul plus
//! a column slice per layer (`uie_runtime::fused::merge`). The merged model must equal the
//! unmerged one by the rule of `uie-model.md` §7 on every output (`probs` and, compiled with debug
//! outputs, every debug value; retrieved indices exactly except on near-tie rows, two of the K + 1
//! best scores closer than 1e-5 with the larger positive), at batch sizes 1, 7 and 256, plain and
//! optimised, on seeded random checkpoints (plain PLE, full UIE) and a briefly trained MovieLens
//! checkpoint. `merge_linear: false` turns the rewrite off. (A graph with nothing to merge is
//! checked by the unit tests of `uie_runtime::fused::merge`.)

#[path = "../../crates/uie-compile/tests/common/mod.rs"]
mod common;

use uie_compile::pipeline::{compile_with, CompileOptions};
use uie_compile::verify::{batch_inputs, run_engine};
use uie_e2e::{find_output, near_tie_rows, train_movielens_uie};
use uie_model::parity::within_tolerance;
use uie_model::{Checkpoint, RawBatch, TensorData};
use uie_runtime::engine::{Engine, EngineOptions};

const BATCHES: [usize; 3] = [1, 7, 256];

fn engine(bytes: &[u8], optimize: bool, merge_linear: bool) -> Engine {
    Engine::load_bytes(
        bytes,
        // The other rewrites keep their defaults: the merge runs after them, on the model as the
        // runtime serves it.
        EngineOptions {
            optimize,
            merge_linear,
            ..EngineOptions::default()
        },
    )
    .expect("tract loads the model")
}

#[derive(Default, Debug)]
struct Stats {
    rows: usize,
    near_ties: usize,
    worst: f32,
    values: usize,
}

/// Compares the merged and unmerged engines on `batch`, every output, debug outputs on and off,
/// plain and optimised. Returns how many MatMuls the merge removed.
fn compare(label: &str, ck: &Checkpoint, batch: &RawBatch, st: &mut Stats) -> usize {
    let inputs = batch_inputs(&ck.config, batch).expect("inputs");
    let n = batch.n;
    let mut ties = vec![false; n];
    let mut merged = None;
    for debug_outputs in [true, false] {
        let opts = CompileOptions {
            debug_outputs,
            ..CompileOptions::default()
        };
        let bytes = compile_with(ck, &opts).expect("compile");
        for optimize in [false, true] {
            let case = format!("{label} n={n} debug={debug_outputs} optimize={optimize}");
            let standard = engine(&bytes, optimize, false);
            let fused = engine(&bytes, optimize, true);
            assert_eq!(standard.merged_linear(), 0, "{case}");
            assert!(fused.merged_linear() > 0, "{case}: nothing merged");
            // The same model merges the same way whatever the debug outputs or optimisation.
            assert_eq!(
                *merged.get_or_insert(fused.merged_linear()),
                fused.merged_linear(),
                "{case}"
            );
            assert_eq!(standard.output_names(), fused.output_names(), "{case}");
            let want = run_engine(&standard, &inputs, "standard").expect("standard run");
            let got = run_engine(&fused, &inputs, "merged").expect("merged run");
            for scores in ["debug.ucse.scores", "debug.upe.scores"] {
                let k = if scores.contains("ucse") {
                    ck.config.uie.ucse.k
                } else {
                    ck.config.uie.upe.k
                };
                if let Some(s) = find_output(&want, scores) {
                    for (t, v) in ties.iter_mut().zip(near_tie_rows(s, k)) {
                        *t |= v;
                    }
                }
            }
            assert_eq!(got.len(), want.len(), "{case}");
            for (name, w) in &want {
                let g = find_output(&got, name).expect("same outputs");
                assert_eq!(g.shape, w.shape, "{case} {name}");
                let (TensorData::F32(g), TensorData::F32(w)) = (&g.data, &w.data) else {
                    let (TensorData::I64(g), TensorData::I64(w)) = (&g.data, &w.data) else {
                        panic!("{case} {name}: mixed types");
                    };
                    let k = g.len() / n.max(1);
                    for (row, (a, b)) in g.chunks_exact(k).zip(w.chunks_exact(k)).enumerate() {
                        assert!(ties[row] || a == b, "{case} {name} row {row}");
                    }
                    continue;
                };
                let per_row = w.len() / n.max(1);
                for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
                    assert!(!a.is_nan(), "{case} {name}: NaN at {i}");
                    if ties[i / per_row.max(1)] {
                        continue;
                    }
                    st.values += 1;
                    st.worst = st.worst.max((a - b).abs());
                    assert!(
                        within_tolerance(a, b),
                        "{case} {name} value {i}: merged {a} vs unmerged {b}"
                    );
                }
            }
        }
    }
    st.rows += n;
    st.near_ties += ties.iter().filter(|&&t| t).count();
    merged.unwrap_or(0)
}

fn report(label: &str, st: &Stats) {
    println!(
        "{label}: {} rows, {} near-tie rows exempt, {} values compared, worst |diff| {:e}",
        st.rows, st.near_ties, st.values, st.worst
    );
    assert!(st.values > 0, "{label}: nothing compared");
}

fn batch_for(ck: &Checkpoint, n: usize, seed: u64) -> RawBatch {
    let batch = common::rows_with_history(&ck.config, n, 5, seed);
    if ck.config.features.sequence.is_some() {
        batch
    } else {
        RawBatch {
            history: None,
            ..batch
        }
    }
}

#[test]
fn random_checkpoints_merged_equal_unmerged() {
    for (label, ck) in [
        (
            "plain PLE",
            common::checkpoint(common::config(common::TINY), 3),
        ),
        ("full UIE", common::uie_checkpoint(17)),
    ] {
        let mut st = Stats::default();
        for n in BATCHES {
            compare(label, &ck, &batch_for(&ck, n, 400 + n as u64), &mut st);
        }
        report(label, &st);
    }
}

#[test]
fn default_options_merge_and_the_option_turns_it_off() {
    let ck = common::uie_checkpoint(5);
    let bytes = uie_compile::compile(&ck).expect("compile");
    assert!(EngineOptions::default().merge_linear);
    let default = Engine::load_bytes(&bytes, EngineOptions::default()).expect("load");
    assert!(default.merged_linear() > 0);
    assert_eq!(engine(&bytes, true, false).merged_linear(), 0);
    assert_eq!(engine(&bytes, false, false).merged_linear(), 0);
}

#[test]
fn movielens_trained_merged_equal_unmerged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ck, splits) = train_movielens_uie(tmp.path()).expect("training");
    let test = &splits.test.batch;
    let mut st = Stats::default();
    for n in BATCHES {
        let step = (test.n / n).max(1);
        let rows: Vec<usize> = (0..test.n).step_by(step).take(n).collect();
        let merged = compare("MovieLens UIE", &ck, &test.take(&rows), &mut st);
        assert!(merged > 0);
    }
    report("MovieLens UIE", &st);
}

//! `uie-runtime` merges the linear layers that read the same input (a PLE level's first
//! expert layers, its gates, the sequence query and UCSE's target projection) into one MatMul plus
//! a column slice per layer (`uie_runtime::rewrites::merge`). The merged model must equal the
//! unmerged one by the rule of `docs/model.md` §7 on every output (`probs` and, compiled with debug
//! outputs, every debug value; retrieved indices exactly except on near-tie rows, two of the K + 1
//! best scores closer than 1e-5 with the larger positive), at batch sizes 1, 7 and 256, plain and
//! optimised, on seeded random checkpoints (plain PLE, full UIE) and a briefly trained MovieLens
//! checkpoint. Disabling the `merge` rewrite turns it off. (A graph with nothing to merge is
//! checked by the unit tests of `uie_runtime::rewrites::merge`.)

use uie_compile::verify::{batch_inputs, run_engine};
use uie_e2e::rewrite_parity::{
    compare_rewrite, debug_builds, history_if_sequence, mark_near_ties, spread_rows, RewriteStats,
};
use uie_e2e::train_movielens_uie;
use uie_model::{Checkpoint, RawBatch};
use uie_runtime::engine::{Engine, EngineOptions};
use uie_runtime::RewriteName;
use uie_testkit::checkpoints::{checkpoint, rows_with_history, uie_checkpoint};
use uie_testkit::configs::tiny_ple;

const BATCHES: [usize; 3] = [1, 7, 256];

fn engine(bytes: &[u8], optimize: bool, merge_linear: bool) -> Engine {
    Engine::load_bytes(
        bytes,
        // The other rewrites keep their defaults: the merge runs after them, on the model as the
        // runtime serves it.
        EngineOptions {
            optimize,
            ..EngineOptions::default()
        }
        .with_rewrite(RewriteName::Merge, merge_linear),
    )
    .expect("tract loads the model")
}

/// Compares the merged and unmerged engines on `batch`, every output, debug outputs on and off,
/// plain and optimised. Returns how many MatMuls the merge removed.
fn compare(label: &str, ck: &Checkpoint, batch: &RawBatch, st: &mut RewriteStats) -> usize {
    let inputs = batch_inputs(&ck.config, batch).expect("inputs");
    let n = batch.n;
    let mut ties = vec![false; n];
    let mut merged = None;
    for (debug_outputs, bytes) in debug_builds(ck).expect("compile") {
        for optimize in [false, true] {
            let case = format!("{label} n={n} debug={debug_outputs} optimize={optimize}");
            let standard = engine(&bytes, optimize, false);
            let fused = engine(&bytes, optimize, true);
            let count = fused.rewrite_count(RewriteName::Merge);
            assert_eq!(standard.rewrite_count(RewriteName::Merge), 0, "{case}");
            assert!(count > 0, "{case}: nothing merged");
            // The same model merges the same way whatever the debug outputs or optimisation.
            assert_eq!(*merged.get_or_insert(count), count, "{case}");
            assert_eq!(standard.output_names(), fused.output_names(), "{case}");
            let want = run_engine(&standard, &inputs, "standard").expect("standard run");
            let got = run_engine(&fused, &inputs, "merged").expect("merged run");
            let retrievals = [
                ("debug.ucse.scores", ck.config.uie.ucse.k),
                ("debug.upe.scores", ck.config.uie.upe.k),
            ];
            mark_near_ties(&mut ties, &want, &retrievals);
            compare_rewrite(&case, &got, &want, &ties, st);
        }
    }
    st.add_rows(&ties);
    merged.unwrap_or(0)
}

fn batch_for(ck: &Checkpoint, n: usize, seed: u64) -> RawBatch {
    history_if_sequence(&ck.config, rows_with_history(&ck.config, n, 5, seed))
}

#[test]
fn random_checkpoints_merged_equal_unmerged() {
    for (label, ck) in [
        ("plain PLE", checkpoint(tiny_ple(), 3)),
        ("full UIE", uie_checkpoint(17)),
    ] {
        let mut st = RewriteStats::default();
        for n in BATCHES {
            compare(label, &ck, &batch_for(&ck, n, 400 + n as u64), &mut st);
        }
        st.report(label);
    }
}

#[test]
fn default_options_merge_and_the_option_turns_it_off() {
    let ck = uie_checkpoint(5);
    let bytes = uie_compile::compile(&ck).expect("compile");
    assert!(EngineOptions::default().rewrite_enabled(RewriteName::Merge));
    let default = Engine::load_bytes(&bytes, EngineOptions::default()).expect("load");
    assert!(default.rewrite_count(RewriteName::Merge) > 0);
    for optimize in [true, false] {
        let off = engine(&bytes, optimize, false);
        assert_eq!(off.rewrite_count(RewriteName::Merge), 0);
    }
}

#[test]
fn movielens_trained_merged_equal_unmerged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ck, splits) = train_movielens_uie(tmp.path()).expect("training");
    let test = &splits.test.batch;
    let mut st = RewriteStats::default();
    for n in BATCHES {
        let merged = compare("MovieLens UIE", &ck, &spread_rows(test, n), &mut st);
        assert!(merged > 0);
    }
    st.report("MovieLens UIE");
}

//! `uie-runtime` rewrites the behaviour-sequence target attention (with UCSE's masked
//! history sum) and UCSE's attention over the kept centres into its fused attention op
//! (`uie_runtime::rewrites::attention`). The rewritten model must equal the unrewritten one by the
//! rule of `docs/model.md` §7 on every output (`probs` and, compiled with debug outputs, every
//! debug value), at batch sizes 1, 7 and 256, plain and optimised, with the retrieval rewrite on
//! and off; rows where a UCSE retrieval has a near tie (two of the K + 1 best scores closer than
//! 1e-5 with the larger positive: the masked history sum is added in another order, so the
//! retrieved centres may swap) are counted and exempt. Histories cover `hist_len` 0, = L and
//! (fed straight to the engine) negative and beyond L, L = 1, and negative, huge and extreme ids.
//! Models without a sequence fuse no attention and run unchanged; disabling the `attention`
//! rewrite turns it off. The fused PLE gate mix (`uie_runtime::rewrites::gate`) is checked
//! the same way, on UIE and plain PLE models: every gate of every level is fused.

use uie_compile::verify::{batch_inputs, run_engine};
use uie_e2e::rewrite_parity::{
    compare_rewrite, debug_builds, mark_near_ties, spread_rows, RewriteStats,
};
use uie_e2e::train_movielens_uie;
use uie_model::{Checkpoint, Plan, RawBatch, Tensor};
use uie_runtime::engine::{Engine, EngineOptions};
use uie_runtime::RewriteName;
use uie_testkit::checkpoints::{checkpoint, rows, rows_with_history, uie_checkpoint};
use uie_testkit::configs::{tiny_ple, tiny_uie};

const BATCHES: [usize; 3] = [1, 7, 256];

/// The rewrite a comparison turns on and off (the others keep their defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rewrite {
    Attention,
    Gates,
}

impl Rewrite {
    fn name(self) -> RewriteName {
        match self {
            Rewrite::Attention => RewriteName::Attention,
            Rewrite::Gates => RewriteName::Gate,
        }
    }

    fn options(self, optimize: bool, fuse_retrieval: bool, on: bool) -> EngineOptions {
        EngineOptions {
            optimize,
            ..EngineOptions::default()
        }
        .with_rewrite(RewriteName::Retrieval, fuse_retrieval)
        .with_rewrite(self.name(), on)
    }

    fn count(self, e: &Engine) -> usize {
        e.rewrite_count(self.name())
    }
}

fn engine(bytes: &[u8], optimize: bool, fuse_retrieval: bool, fuse_attention: bool) -> Engine {
    load(
        bytes,
        Rewrite::Attention.options(optimize, fuse_retrieval, fuse_attention),
    )
}

fn load(bytes: &[u8], opts: EngineOptions) -> Engine {
    Engine::load_bytes(bytes, opts).expect("tract loads the model")
}

/// The number of PLE gates of a checkpoint's plan.
fn gates(ck: &Checkpoint) -> usize {
    Plan::new(&ck.config)
        .levels
        .iter()
        .map(|l| l.task_gates.len() + usize::from(l.shared_gate.is_some()))
        .sum()
}

/// `inputs` with `hist_len` replaced by `f(row, L)`.
fn with_len(inputs: &[(String, Tensor)], f: impl Fn(usize, i64) -> i64) -> Vec<(String, Tensor)> {
    let width = inputs
        .iter()
        .find(|(n, _)| n == "hist_items")
        .map(|(_, t)| t.shape[1] as i64)
        .expect("hist_items");
    inputs
        .iter()
        .map(|(n, t)| {
            if n == "hist_len" {
                let len = (0..t.shape[0]).map(|r| f(r, width)).collect();
                (n.clone(), Tensor::i64(t.shape.clone(), len))
            } else {
                (n.clone(), t.clone())
            }
        })
        .collect()
}

/// Compares the fused-attention engines with the unfused ones on `inputs`, every output, debug
/// outputs on and off, plain and optimised, retrieval rewrite on and off.
fn compare(
    label: &str,
    ck: &Checkpoint,
    inputs: &[(String, Tensor)],
    expect_fused: usize,
    st: &mut RewriteStats,
) {
    compare_one(Rewrite::Attention, label, ck, inputs, expect_fused, st);
}

/// [`compare`] for one rewrite.
fn compare_one(
    rewrite: Rewrite,
    label: &str,
    ck: &Checkpoint,
    inputs: &[(String, Tensor)],
    expect_fused: usize,
    st: &mut RewriteStats,
) {
    let n = inputs.first().map(|(_, t)| t.shape[0]).expect("inputs");
    let mut ties = vec![false; n];
    for (debug_outputs, bytes) in debug_builds(ck).expect("compile") {
        for optimize in [false, true] {
            for fuse_retrieval in [true, false] {
                let case = format!(
                    "{rewrite:?} {label} n={n} debug={debug_outputs} optimize={optimize} \
                     retrieval={fuse_retrieval}"
                );
                let standard = load(&bytes, rewrite.options(optimize, fuse_retrieval, false));
                let fused = load(&bytes, rewrite.options(optimize, fuse_retrieval, true));
                assert_eq!(rewrite.count(&standard), 0, "{case}");
                assert_eq!(rewrite.count(&fused), expect_fused, "{case}");
                assert_eq!(
                    fused.rewrite_count(RewriteName::Retrieval),
                    standard.rewrite_count(RewriteName::Retrieval),
                    "{case}"
                );
                assert_eq!(standard.output_names(), fused.output_names(), "{case}");
                let want = run_engine(&standard, inputs, "standard").expect("standard run");
                let got = run_engine(&fused, inputs, "fused").expect("fused run");
                mark_near_ties(
                    &mut ties,
                    &want,
                    &[("debug.ucse.scores", ck.config.uie.ucse.k)],
                );
                compare_rewrite(&case, &got, &want, &ties, st);
            }
        }
    }
    st.add_rows(&ties);
}

#[test]
fn random_uie_checkpoint_fused_attention_equals_standard() {
    let ck = uie_checkpoint(23);
    let mut st = RewriteStats::default();
    for width in [5usize, 1] {
        for n in BATCHES {
            let batch = rows_with_history(&ck.config, n, width, 300 + n as u64);
            let inputs = batch_inputs(&ck.config, &batch).expect("inputs");
            compare(&format!("L={width}"), &ck, &inputs, 2, &mut st);
        }
    }
    // Lengths the batch validation would refuse, fed straight to the engine: negative, beyond L,
    // and every row full.
    let batch = rows_with_history(&ck.config, 7, 5, 77);
    let inputs = batch_inputs(&ck.config, &batch).expect("inputs");
    let odd = with_len(&inputs, |r, l| match r % 3 {
        0 => -3,
        1 => l + 40,
        _ => i64::MIN,
    });
    compare("odd lengths", &ck, &odd, 2, &mut st);
    let full = with_len(&inputs, |_, l| l);
    compare("full", &ck, &full, 2, &mut st);
    st.report("random UIE");
}

#[test]
fn sequence_without_ucse_fuses_the_sequence_attention_alone() {
    let mut config = tiny_uie();
    config.uie.upe.enabled = false;
    config.uie.ucse.enabled = false;
    let ck = checkpoint(config, 8);
    let mut st = RewriteStats::default();
    for n in BATCHES {
        let batch = rows_with_history(&ck.config, n, 5, 40 + n as u64);
        let inputs = batch_inputs(&ck.config, &batch).expect("inputs");
        compare("sequence only", &ck, &inputs, 1, &mut st);
    }
    st.report("sequence only");
}

#[test]
fn model_without_sequence_fuses_nothing_and_runs_unchanged() {
    let ck = checkpoint(tiny_ple(), 3);
    let bytes = uie_compile::compile(&ck).expect("compile");
    let batch = rows(&ck.config, 7, 9);
    let inputs = batch_inputs(&ck.config, &batch).expect("inputs");
    for optimize in [false, true] {
        let fused = engine(&bytes, optimize, true, true);
        let standard = engine(&bytes, optimize, true, false);
        assert_eq!(fused.rewrite_count(RewriteName::Attention), 0);
        let a = run_engine(&fused, &inputs, "fused").expect("run");
        let b = run_engine(&standard, &inputs, "standard").expect("run");
        assert_eq!(a, b, "optimize={optimize}");
    }
}

#[test]
fn default_options_fuse_attention_and_the_option_turns_it_off() {
    let ck = uie_checkpoint(5);
    let bytes = uie_compile::compile(&ck).expect("compile");
    assert!(EngineOptions::default().rewrite_enabled(RewriteName::Attention));
    let default = Engine::load_bytes(&bytes, EngineOptions::default()).expect("load");
    assert_eq!(default.rewrite_count(RewriteName::Attention), 2);
    assert_eq!(
        engine(&bytes, true, true, false).rewrite_count(RewriteName::Attention),
        0
    );
}

#[test]
fn movielens_trained_fused_attention_equals_standard() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ck, splits) = train_movielens_uie(tmp.path()).expect("training");
    let test = &splits.test.batch;
    let mut st = RewriteStats::default();
    for n in BATCHES {
        let batch: RawBatch = spread_rows(test, n);
        let inputs = batch_inputs(&ck.config, &batch).expect("inputs");
        compare("MovieLens", &ck, &inputs, 2, &mut st);
        compare_one(
            Rewrite::Gates,
            "MovieLens",
            &ck,
            &inputs,
            gates(&ck),
            &mut st,
        );
    }
    st.report("MovieLens UIE");
}

#[test]
fn fused_gate_mix_equals_standard_on_uie_and_plain_ple() {
    let uie = uie_checkpoint(31);
    let plain = checkpoint(tiny_ple(), 12);
    let mut st = RewriteStats::default();
    for n in BATCHES {
        let batch = rows_with_history(&uie.config, n, 5, 500 + n as u64);
        let inputs = batch_inputs(&uie.config, &batch).expect("inputs");
        compare_one(Rewrite::Gates, "UIE", &uie, &inputs, gates(&uie), &mut st);
        let batch = rows(&plain.config, n, 600 + n as u64);
        let inputs = batch_inputs(&plain.config, &batch).expect("inputs");
        compare_one(
            Rewrite::Gates,
            "plain",
            &plain,
            &inputs,
            gates(&plain),
            &mut st,
        );
    }
    assert!(gates(&plain) >= 3 && gates(&uie) >= 1);
    st.report("gate mix");
}

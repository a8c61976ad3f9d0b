//! `uie-runtime` rewrites each hashed-embedding lookup `Gather(E, Mod(ids, H))` into its fused op
//! (`uie_runtime::rewrites::lookup::UieHashedLookup`). The rewritten model must give exactly the
//! outputs of the unrewritten one (the op copies the same rows; nothing downstream changes), plain
//! and optimised, with and without the retrieval rewrite, at batch sizes 1, 7 and 256 — ids that
//! mix small, negative, huge and extreme values (`i64::MIN`, `i64::MIN + 1`, `i64::MAX`, ±H) — on
//! seeded random checkpoints (plain PLE, UIE with UCBE, full UIE) and a briefly trained MovieLens
//! checkpoint. The fused count is one per categorical field plus the UCBE table; the option
//! turns it off.

use uie_compile::verify::{batch_inputs, run_engine};
use uie_e2e::rewrite_parity::{history_if_sequence, spread_rows};
use uie_e2e::train_movielens_uie;
use uie_model::schema::Plan;
use uie_model::{Checkpoint, RawBatch};
use uie_runtime::engine::{Engine, EngineOptions};
use uie_runtime::RewriteName;
use uie_testkit::checkpoints::{checkpoint, rows_with_history, uie_checkpoint};
use uie_testkit::configs::{tiny_ple, tiny_uie};

const BATCHES: [usize; 3] = [1, 7, 256];

fn engine(bytes: &[u8], optimize: bool, fuse_retrieval: bool, fuse_lookups: bool) -> Engine {
    Engine::load_bytes(
        bytes,
        // The attention and gate rewrites stay at their defaults (on): the lookups are fused in
        // the model as the runtime serves it.
        EngineOptions {
            optimize,
            ..EngineOptions::default()
        }
        .with_rewrite(RewriteName::Retrieval, fuse_retrieval)
        .with_rewrite(RewriteName::Lookup, fuse_lookups),
    )
    .expect("tract loads the model")
}

/// Lookups the rewrite must fuse: one per categorical field, plus the UCBE personal table.
fn expected_lookups(ck: &Checkpoint) -> usize {
    let plan = Plan::new(&ck.config);
    let ucbe = plan.uie.as_ref().is_some_and(|u| u.ucbe.is_some());
    plan.embeddings.len() + usize::from(ucbe)
}

/// Every categorical id replaced by extreme values around the buckets: i64::MIN, i64::MIN + 1,
/// i64::MAX, -1, 0, H, -H, H - 1, -(H + 1) in turn.
fn extreme_ids(ck: &Checkpoint, batch: &RawBatch) -> RawBatch {
    let plan = Plan::new(&ck.config);
    let mut out = batch.clone();
    for (field, ids) in out.categorical.iter_mut() {
        let h = plan.buckets(field).unwrap_or(1) as i64;
        let cycle = [
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            -1,
            0,
            h,
            -h,
            h - 1,
            -(h + 1),
        ];
        for (i, id) in ids.iter_mut().enumerate() {
            *id = cycle[i % cycle.len()];
        }
    }
    out
}

fn compare(label: &str, ck: &Checkpoint, batch: &RawBatch) {
    let bytes = uie_compile::compile(ck).expect("compile");
    let inputs = batch_inputs(&ck.config, batch).expect("inputs");
    for optimize in [false, true] {
        for fuse_retrieval in [false, true] {
            let case = format!(
                "{label} n={} optimize={optimize} fuse_retrieval={fuse_retrieval}",
                batch.n
            );
            let standard = engine(&bytes, optimize, fuse_retrieval, false);
            let fused = engine(&bytes, optimize, fuse_retrieval, true);
            assert_eq!(standard.rewrite_count(RewriteName::Lookup), 0, "{case}");
            assert_eq!(
                fused.rewrite_count(RewriteName::Lookup),
                expected_lookups(ck),
                "{case}"
            );
            let want = run_engine(&standard, &inputs, "standard").expect("standard run");
            let got = run_engine(&fused, &inputs, "fused").expect("fused run");
            assert_eq!(got.len(), want.len(), "{case}");
            for ((gn, g), (wn, w)) in got.iter().zip(&want) {
                assert_eq!(gn, wn, "{case}");
                assert_eq!(g, w, "{case}: output {gn} differs");
                if let Some(v) = g.as_f32() {
                    assert!(v.iter().all(|x| x.is_finite()), "{case}: {gn} not finite");
                }
            }
        }
    }
}

fn checkpoints() -> Vec<(&'static str, Checkpoint)> {
    let mut ucbe_config = tiny_uie();
    ucbe_config.uie.upe.enabled = false;
    ucbe_config.uie.ucse.enabled = false;
    vec![
        ("plain PLE", checkpoint(tiny_ple(), 3)),
        ("UCBE only", checkpoint(ucbe_config, 4)),
        ("full UIE", uie_checkpoint(17)),
    ]
}

fn batch_for(ck: &Checkpoint, n: usize, seed: u64) -> RawBatch {
    history_if_sequence(&ck.config, rows_with_history(&ck.config, n, 5, seed))
}

#[test]
fn random_checkpoints_fused_lookups_equal_standard() {
    for (label, ck) in checkpoints() {
        assert!(expected_lookups(&ck) > 0, "{label}");
        for n in BATCHES {
            let batch = batch_for(&ck, n, 300 + n as u64);
            compare(label, &ck, &batch);
            compare(
                &format!("{label} extreme ids"),
                &ck,
                &extreme_ids(&ck, &batch),
            );
        }
    }
}

#[test]
fn default_options_fuse_lookups_and_the_option_turns_it_off() {
    let ck = uie_checkpoint(5);
    let bytes = uie_compile::compile(&ck).expect("compile");
    assert!(EngineOptions::default().rewrite_enabled(RewriteName::Lookup));
    let default = Engine::load_bytes(&bytes, EngineOptions::default()).expect("load");
    assert_eq!(
        default.rewrite_count(RewriteName::Lookup),
        expected_lookups(&ck)
    );
    assert_eq!(
        engine(&bytes, true, true, false).rewrite_count(RewriteName::Lookup),
        0
    );
}

#[test]
fn movielens_trained_fused_lookups_equal_standard() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ck, splits) = train_movielens_uie(tmp.path()).expect("training");
    let test = &splits.test.batch;
    for n in BATCHES {
        let batch = spread_rows(test, n);
        compare("MovieLens UIE", &ck, &batch);
        compare("MovieLens UIE extreme ids", &ck, &extreme_ids(&ck, &batch));
    }
}

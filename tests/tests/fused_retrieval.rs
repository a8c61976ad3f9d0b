//! `uie-runtime` rewrites each centre-retrieval sub-graph into its fused op
//! (`uie_runtime::rewrites::retrieval`). The rewritten model must equal the standard one: `probs` by the rule of
//! `docs/model.md` §7, retrieved indices exactly except on near-tie rows (two of the K + 1 best
//! scores closer than 1e-5 with the larger positive), at batch sizes 1, 7 and 256, plain and
//! optimised; on a seeded random-weights UIE checkpoint (clustered tables: rows that keep
//! nothing, a duplicated centre), its zero-centres and duplicated-centres variants, and a briefly
//! trained MovieLens checkpoint; and on tables large enough to be scored in blocks inside the
//! fused op (70,000 centres). The fused count is the number of retrievals (UPE + UCSE); a model
//! without retrieval fuses nothing; the `retrieval` rewrite disabled runs the standard ops.

use uie_compile::verify::{batch_inputs, run_engine};
use uie_e2e::rewrite_parity::{
    compare_rewrite, debug_builds, history_if_sequence, mark_near_ties, select_outputs,
    spread_rows, RewriteStats,
};
use uie_e2e::{duplicated_centres, find_output, train_movielens_uie, zero_centres};
use uie_model::{Checkpoint, RawBatch};
use uie_runtime::engine::{Engine, EngineOptions};
use uie_runtime::rewrites::retrieval::{BLOCKED_MIN_CENTRES, CHUNK_TABLE_BYTES};
use uie_runtime::RewriteName;
use uie_testkit::checkpoints::{
    checkpoint, rows_with_history, uie_checkpoint, uie_checkpoint_with,
};
use uie_testkit::configs::{tiny_ple, tiny_uie};

const BATCHES: [usize; 3] = [1, 7, 256];

fn engine(bytes: &[u8], optimize: bool, fuse_retrieval: bool) -> Engine {
    Engine::load_bytes(
        bytes,
        EngineOptions {
            optimize,
            ..EngineOptions::default()
        }
        .with_rewrite(RewriteName::Retrieval, fuse_retrieval),
    )
    .expect("tract loads the model")
}

#[derive(Default, Debug)]
struct Stats {
    parity: RewriteStats,
    kept_nothing: usize,
}

/// Compiles `ck` with debug outputs and without, and compares the fused and standard engines
/// (plain and optimised) on `batch`.
fn compare(label: &str, ck: &Checkpoint, batch: &RawBatch, expect_fused: usize, st: &mut Stats) {
    let retrievals = [
        ("debug.upe.scores", "debug.upe.indices", ck.config.uie.upe.k),
        (
            "debug.ucse.scores",
            "debug.ucse.indices",
            ck.config.uie.ucse.k,
        ),
    ];
    let inputs = batch_inputs(&ck.config, batch).expect("inputs");
    for (debug_outputs, bytes) in debug_builds(ck).expect("compile") {
        for optimize in [false, true] {
            let case = format!(
                "{label} n={} debug={debug_outputs} optimize={optimize}",
                batch.n
            );
            let standard = engine(&bytes, optimize, false);
            let fused = engine(&bytes, optimize, true);
            assert_eq!(standard.rewrite_count(RewriteName::Retrieval), 0, "{case}");
            assert_eq!(
                fused.rewrite_count(RewriteName::Retrieval),
                expect_fused,
                "{case}"
            );
            assert_eq!(standard.output_names(), fused.output_names(), "{case}");
            let want = run_engine(&standard, &inputs, "standard").expect("standard run");
            let got = run_engine(&fused, &inputs, "fused").expect("fused run");
            let mut ties = vec![false; batch.n];
            for (scores, indices, k) in retrievals {
                let Some(s) = find_output(&want, scores) else {
                    continue;
                };
                mark_near_ties(&mut ties, &want, &[(scores, k)]);
                let kept = s
                    .as_f32()
                    .expect("f32")
                    .chunks_exact(s.shape[1])
                    .filter(|row| row.iter().all(|&x| x <= 0.0))
                    .count();
                st.kept_nothing += kept;
                // The retrieved indices, exactly except on the near-tie rows found so far.
                assert!(
                    find_output(&want, indices).is_some(),
                    "{case}: no {indices}"
                );
                compare_rewrite(
                    &case,
                    &select_outputs(&got, &[indices]),
                    &select_outputs(&want, &[indices]),
                    &ties,
                    &mut st.parity,
                );
            }
            st.parity.add_rows(&ties);
            // Every output has the same shape; `probs` is compared by §7.
            for (name, w) in &want {
                let g = find_output(&got, name).expect("same outputs");
                assert_eq!(g.shape, w.shape, "{case} {name}");
            }
            compare_rewrite(
                &case,
                &select_outputs(&got, &["probs"]),
                &select_outputs(&want, &["probs"]),
                &ties,
                &mut st.parity,
            );
        }
    }
}

fn report(label: &str, st: &Stats) {
    st.parity.report(label);
    println!(
        "{label}: rows where a retrieval keeps nothing {}",
        st.kept_nothing
    );
}

/// `ck` and its zero-centres and duplicated-centres variants, on seeded rows at every batch size
/// (row seeds from `seed`); reports under `label` and checks that some rows keep nothing.
fn compare_random_variants(label: &str, ck: &Checkpoint, seed: u64) {
    let variants = [
        ("random", ck.clone()),
        ("zero-centres", zero_centres(ck)),
        ("duplicated-centres", duplicated_centres(ck)),
    ];
    let mut st = Stats::default();
    for (variant, ck) in &variants {
        for n in BATCHES {
            let batch = rows_with_history(&ck.config, n, 5, seed + n as u64);
            compare(variant, ck, &batch, 2, &mut st);
        }
    }
    report(label, &st);
    assert!(st.kept_nothing > 0, "some rows must keep nothing");
}

#[test]
fn random_uie_checkpoint_fused_equals_standard() {
    compare_random_variants("random UIE", &uie_checkpoint(17), 1000);
}

/// Tables of `BLOCKED_MIN_CENTRES` centres and more are scored inside the fused op, chunk of
/// centres by chunk and a block of rows at a time (`RetrievalInput::QueryBlocks`): 70,000 centres
/// make several chunks for both retrievals (the last one partial) and, at batch 256, several row
/// blocks per chunk; the zero-centres variant ties every score across every chunk boundary.
#[test]
fn large_tables_scored_in_blocks_equal_standard() {
    const CENTRES: usize = 70_000;
    const { assert!(CENTRES >= BLOCKED_MIN_CENTRES) };
    let mut config = tiny_uie();
    config.uie.upe.centres = CENTRES;
    config.uie.ucse.centres = CENTRES;
    let chunk = |d: usize| CHUNK_TABLE_BYTES / (4 * d);
    assert!(CENTRES > 2 * chunk(config.uie.dim) && CENTRES > 2 * chunk(config.model.embed_dim));
    let ck = uie_checkpoint_with(config, 29);
    compare_random_variants("large-table UIE", &ck, 3000);
    // An empty batch (no row, no block) is an empty answer, as in the standard graph.
    let bytes = uie_compile::compile(&ck).expect("compile");
    let empty = history_if_sequence(&ck.config, rows_with_history(&ck.config, 0, 5, 1));
    let inputs = batch_inputs(&ck.config, &empty).expect("inputs");
    for optimize in [false, true] {
        let got = run_engine(&engine(&bytes, optimize, true), &inputs, "fused").expect("fused");
        let want = run_engine(&engine(&bytes, optimize, false), &inputs, "standard").expect("run");
        assert_eq!(got, want, "empty batch, optimize={optimize}");
        assert!(got.iter().all(|(_, t)| t.shape.first() == Some(&0)));
    }
}

#[test]
fn model_without_retrieval_fuses_nothing_and_runs_unchanged() {
    // Plain PLE, and UIE with UCBE only (no retrieval in the graph).
    let plain = checkpoint(tiny_ple(), 3);
    let mut ucbe_config = tiny_uie();
    ucbe_config.uie.upe.enabled = false;
    ucbe_config.uie.ucse.enabled = false;
    let ucbe = checkpoint(ucbe_config, 4);
    for ck in [plain, ucbe] {
        let bytes = uie_compile::compile(&ck).expect("compile");
        let batch = rows_with_history(&ck.config, 7, 5, 9);
        let batch = history_if_sequence(&ck.config, batch);
        let inputs = batch_inputs(&ck.config, &batch).expect("inputs");
        for optimize in [false, true] {
            let fused = engine(&bytes, optimize, true);
            let standard = engine(&bytes, optimize, false);
            assert_eq!(fused.rewrite_count(RewriteName::Retrieval), 0);
            let a = run_engine(&fused, &inputs, "fused").expect("run");
            let b = run_engine(&standard, &inputs, "standard").expect("run");
            assert_eq!(a, b, "{} optimize={optimize}", ck.config.model.name);
        }
    }
}

#[test]
fn default_options_fuse_and_the_option_turns_it_off() {
    let ck = uie_checkpoint(5);
    let bytes = uie_compile::compile(&ck).expect("compile");
    let default = Engine::load_bytes(&bytes, EngineOptions::default()).expect("load");
    assert!(EngineOptions::default().rewrite_enabled(RewriteName::Retrieval));
    assert_eq!(default.rewrite_count(RewriteName::Retrieval), 2);
    let off = engine(&bytes, true, false);
    assert_eq!(off.rewrite_count(RewriteName::Retrieval), 0);
}

#[test]
fn movielens_trained_fused_equals_standard() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ck, splits) = train_movielens_uie(tmp.path()).expect("training");
    let test = &splits.test.batch;
    let variants = [
        ("trained", ck.clone()),
        ("zero-centres", zero_centres(&ck)),
        ("duplicated-centres", duplicated_centres(&ck)),
    ];
    let mut st = Stats::default();
    for (label, ck) in &variants {
        for n in BATCHES {
            compare(label, ck, &spread_rows(test, n), 2, &mut st);
        }
    }
    report("MovieLens UIE", &st);
}

//! The lowering ↔ rewrite shape contract, executable: `uie-runtime`'s rewrites find their
//! sub-graphs by structure in what `uie-compile` lowers, so a change on either side that breaks
//! the match would silently leave the standard ops running. This compiles a tiny model of every
//! kind (plain PLE; PLE with a behaviour sequence; each UIE module alone; every module; tables
//! large enough for the retrieval's blocked path) and checks that each rewrite replaces exactly
//! what the model's plan implies, plain and optimised, and that every rewrite fires on at least
//! one of them:
//!
//! - `attention`: the sequence attention (with UCSE's history sum) and UCSE's centre attention;
//! - `gate`: every PLE gate of every level;
//! - `retrieval`: UPE's and UCSE's retrievals;
//! - `lookup`: one `Gather` per categorical field, plus UCBE's personal table;
//! - `merge`: the MatMuls merged away ([`expected_merges`]).

use uie_model::schema::Plan;
use uie_model::{Checkpoint, Config};
use uie_runtime::engine::{Engine, EngineOptions};
use uie_runtime::rewrites::retrieval::BLOCKED_MIN_CENTRES;
use uie_runtime::{RewriteName, RewriteSet};
use uie_testkit::checkpoints::{checkpoint, uie_checkpoint, uie_checkpoint_with};
use uie_testkit::configs::{tiny_ple, tiny_uie};

/// The tiny UIE fixture config with only the named modules on (`upe`, `ucbe`, `ucse`), sequence kept.
fn uie_with(modules: &[&str]) -> Config {
    let mut config = tiny_uie();
    config.uie.upe.enabled = modules.contains(&"upe");
    config.uie.ucbe.enabled = modules.contains(&"ucbe");
    config.uie.ucse.enabled = modules.contains(&"ucse");
    config
}

/// The models, one of every kind (the large-table one with tables of at least
/// `BLOCKED_MIN_CENTRES` centres, which the retrieval rewrite scores in blocks inside its op).
fn models() -> Vec<(&'static str, Checkpoint)> {
    let mut large = uie_with(&["upe", "ucbe", "ucse"]);
    large.uie.upe.centres = BLOCKED_MIN_CENTRES;
    large.uie.ucse.centres = BLOCKED_MIN_CENTRES + 3;
    vec![
        ("plain PLE", checkpoint(tiny_ple(), 1)),
        ("PLE with a sequence", checkpoint(uie_with(&[]), 2)),
        ("UPE", checkpoint(uie_with(&["upe"]), 3)),
        ("UCBE", checkpoint(uie_with(&["ucbe"]), 4)),
        ("UCSE", checkpoint(uie_with(&["ucse"]), 5)),
        ("full UIE", uie_checkpoint(6)),
        ("large-table UIE", uie_checkpoint_with(large, 7)),
    ]
}

/// The MatMuls the merge removes: groups of linear layers with one input, of one kind (an MLP's
/// first layer with its ReLU, or a gate's layer), merge into one MatMul, so each group of `g`
/// removes `g − 1`. At the first level every expert and every gate reads the backbone input; at
/// a later level a task's experts read the task's input and the shared experts the shared input
/// (each gate of a later level is alone of its kind on its input). The sequence query and UCSE's
/// target projection both read the target item's embedding (neither has a bias).
fn expected_merges(ck: &Checkpoint) -> usize {
    let plan = Plan::new(&ck.config);
    let removed = |members: usize| members.saturating_sub(1);
    let mut n = 0;
    for (l, level) in plan.levels.iter().enumerate() {
        if l == 0 {
            let experts = level.specific.iter().map(Vec::len).sum::<usize>() + level.shared.len();
            let gates = level.task_gates.len() + usize::from(level.shared_gate.is_some());
            n += removed(experts) + removed(gates);
        } else {
            n += level
                .specific
                .iter()
                .map(|own| removed(own.len()))
                .sum::<usize>();
            n += removed(level.shared.len());
        }
    }
    let ucse = ck.config.uie.ucse.enabled;
    n + usize::from(plan.sequence.is_some() && ucse)
}

/// What each rewrite must replace in `ck`'s compiled model (module doc).
fn expected(ck: &Checkpoint) -> Vec<(RewriteName, usize)> {
    let plan = Plan::new(&ck.config);
    let uie = &ck.config.uie;
    let gates: usize = plan
        .levels
        .iter()
        .map(|l| l.task_gates.len() + usize::from(l.shared_gate.is_some()))
        .sum();
    let attention = usize::from(plan.sequence.is_some()) + usize::from(uie.ucse.enabled);
    let retrieval = usize::from(uie.upe.enabled) + usize::from(uie.ucse.enabled);
    let lookup = plan.embeddings.len() + usize::from(uie.ucbe.enabled);
    vec![
        (RewriteName::Attention, attention),
        (RewriteName::Gate, gates),
        (RewriteName::Retrieval, retrieval),
        (RewriteName::Lookup, lookup),
        (RewriteName::Merge, expected_merges(ck)),
    ]
}

#[test]
fn every_rewrite_fires_as_the_lowering_implies() {
    let mut fired = RewriteSet::NONE;
    for (label, ck) in models() {
        let bytes = uie_compile::compile(&ck).expect("compile");
        let want = expected(&ck);
        for optimize in [false, true] {
            let opts = EngineOptions {
                optimize,
                ..EngineOptions::default()
            };
            let engine = Engine::load_bytes(&bytes, opts).expect("tract loads the model");
            let got: Vec<(RewriteName, usize)> = engine.rewrite_counts().iter().collect();
            assert_eq!(got, want, "{label} optimize={optimize}");
            println!("{label} optimize={optimize}: {}", engine.rewrite_counts());
            for (name, n) in got {
                if n > 0 {
                    fired = fired.with(name);
                }
            }
            // Each rewrite disabled alone counts 0 and leaves the others' counts as they were
            // (the merge aside, which runs last on what the others left).
            for name in RewriteName::ALL {
                let off = Engine::load_bytes(&bytes, opts.with_rewrite(name, false))
                    .expect("tract loads the model");
                assert_eq!(off.rewrite_count(name), 0, "{label} without {name}");
                for (other, n) in &want {
                    if *other != name && *other != RewriteName::Merge {
                        assert_eq!(
                            off.rewrite_count(*other),
                            *n,
                            "{label} without {name}: {other}"
                        );
                    }
                }
            }
        }
    }
    assert_eq!(fired, RewriteSet::ALL, "some rewrite never fired");
}

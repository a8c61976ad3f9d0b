//! The comparison shared by the end-to-end tests of `uie-runtime`'s graph rewrites
//! (`fused_retrieval`, `fused_sequence`, `fused_merge`, `fused_lookup`): the same model is run
//! with one rewrite on and off on the same inputs, and every output of the reference run must be
//! matched by the rewritten one by the rule of `docs/model.md` §7 — retrieved indices (int64)
//! exactly except on near-tie rows ([`near_tie_rows`]), float values within
//! [`within_tolerance`] except on near-tie rows, and never NaN. [`RewriteStats`] counts what was
//! compared and [`RewriteStats::report`] prints it and fails when nothing was. The smaller helpers
//! build what the tests feed both engines: [`debug_builds`], [`spread_rows`],
//! [`history_if_sequence`].

use uie_compile::pipeline::{compile_with, CompileOptions};
use uie_model::parity::within_tolerance;
use uie_model::{Checkpoint, Config, RawBatch, Tensor, TensorData};

use crate::{find_output, near_tie_rows};

/// What a rewrite comparison has covered so far.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct RewriteStats {
    /// Rows compared (counted by [`RewriteStats::add_rows`]).
    pub rows: usize,
    /// Of those, rows exempt as near ties.
    pub near_ties: usize,
    /// Float values compared (near-tie rows not counted).
    pub values: usize,
    /// The largest |rewritten − reference| over the compared float values.
    pub worst: f32,
}

impl RewriteStats {
    /// Counts the rows of one comparison and how many of them `ties` marks as near ties.
    pub fn add_rows(&mut self, ties: &[bool]) {
        self.rows += ties.len();
        self.near_ties += ties.iter().filter(|&&t| t).count();
    }

    /// Prints the stats under `label` and fails the test if no float value was compared.
    pub fn report(&self, label: &str) {
        println!(
            "{label}: {} rows, {} near-tie rows exempt, {} values compared, worst |diff| {:e}",
            self.rows, self.near_ties, self.values, self.worst
        );
        assert!(self.values > 0, "{label}: nothing compared");
    }
}

/// Marks in `ties` (one flag a row) the near-tie rows of each retrieval `(scores output, k)` that
/// `reference` has; retrievals whose scores are not among the outputs are skipped.
pub fn mark_near_ties(
    ties: &mut [bool],
    reference: &[(String, Tensor)],
    retrievals: &[(&str, usize)],
) {
    for &(scores, k) in retrievals {
        if let Some(s) = find_output(reference, scores) {
            for (t, v) in ties.iter_mut().zip(near_tie_rows(s, k)) {
                *t |= v;
            }
        }
    }
}

/// The outputs of `outs` named in `names`, in `outs`' order.
pub fn select_outputs(outs: &[(String, Tensor)], names: &[&str]) -> Vec<(String, Tensor)> {
    outs.iter()
        .filter(|(n, _)| names.contains(&n.as_str()))
        .cloned()
        .collect()
}

/// Compares the outputs of the rewritten engine (`rewritten`) with the reference engine's
/// (`reference`), named `case` in every failure: the same number of outputs, each reference output
/// present with the same shape and type; int64 outputs (retrieved indices) equal row by row except
/// on rows `ties` marks; float outputs never NaN and, outside tie rows, within
/// [`within_tolerance`]. `ties` has one flag a batch row. Counts the compared float values and the
/// largest |diff| into `stats` (rows are counted by the caller, [`RewriteStats::add_rows`]).
pub fn compare_rewrite(
    case: &str,
    rewritten: &[(String, Tensor)],
    reference: &[(String, Tensor)],
    ties: &[bool],
    stats: &mut RewriteStats,
) {
    let n = ties.len().max(1);
    assert_eq!(rewritten.len(), reference.len(), "{case}");
    for (name, w) in reference {
        let g = find_output(rewritten, name).expect("same outputs");
        assert_eq!(g.shape, w.shape, "{case} {name}");
        let (TensorData::F32(g), TensorData::F32(w)) = (&g.data, &w.data) else {
            // Retrieved indices: equal except on near-tie rows.
            let (TensorData::I64(g), TensorData::I64(w)) = (&g.data, &w.data) else {
                panic!("{case} {name}: mixed types");
            };
            let k = g.len() / n;
            for (row, (a, b)) in g.chunks_exact(k).zip(w.chunks_exact(k)).enumerate() {
                assert!(ties[row] || a == b, "{case} {name} row {row}");
            }
            continue;
        };
        let per_row = (w.len() / n).max(1);
        for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
            assert!(!a.is_nan(), "{case} {name}: NaN at {i}");
            let row = i / per_row;
            if ties[row] {
                continue;
            }
            stats.values += 1;
            stats.worst = stats.worst.max((a - b).abs());
            assert!(
                within_tolerance(a, b),
                "{case} {name} row {row} value {i}: rewritten {a} vs reference {b}"
            );
        }
    }
}

/// `n` rows of `batch` spread evenly over it (every `batch.n / n`-th row from the first).
pub fn spread_rows(batch: &RawBatch, n: usize) -> RawBatch {
    let step = (batch.n / n).max(1);
    let rows: Vec<usize> = (0..batch.n).step_by(step).take(n).collect();
    batch.take(&rows)
}

/// `batch` without its history when `config` has no behaviour sequence to read it.
pub fn history_if_sequence(config: &Config, batch: RawBatch) -> RawBatch {
    if config.features.sequence.is_some() {
        batch
    } else {
        RawBatch {
            history: None,
            ..batch
        }
    }
}

/// `checkpoint` compiled with debug outputs (first) and without: `(debug_outputs, model bytes)`.
pub fn debug_builds(checkpoint: &Checkpoint) -> anyhow::Result<[(bool, Vec<u8>); 2]> {
    let build = |debug_outputs| {
        let opts = CompileOptions {
            debug_outputs,
            ..CompileOptions::default()
        };
        compile_with(checkpoint, &opts).map(|bytes| (debug_outputs, bytes))
    };
    Ok([build(true)?, build(false)?])
}

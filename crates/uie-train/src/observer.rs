//! How a training run reports its progress without printing: [`train_with`](crate::train_with)
//! calls an [`Observer`] at each stage of the run (data loaded, every step, every epoch's
//! validation and checkpoints, early stopping, the final test evaluation). The `uie-train` binary
//! turns the calls into its progress bar and printed lines; [`train`](fn@crate::train) passes
//! [`Silent`]. Every method has an empty default, so an observer implements only what it shows.

use std::path::Path;

use crate::metrics::TaskMetrics;
use crate::report::EpochRecord;

/// The data of a run, as loaded (after the row limits of the options).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataLoaded<'a> {
    /// Training rows.
    pub train_rows: usize,
    /// Validation rows.
    pub val_rows: usize,
    /// Test rows.
    pub test_rows: usize,
    /// Wall time of reading and preparing the data, seconds.
    pub seconds: f64,
    /// Per categorical field: `(field, distinct training ids, ids sharing a bucket)`.
    pub collisions: &'a [(String, usize, usize)],
}

/// Receives the stages of a training run, in this order: [`Observer::data_loaded`], at most one
/// [`Observer::resumed`], then per epoch [`Observer::epoch_started`], one
/// [`Observer::step_finished`] per step, [`Observer::steps_finished`],
/// [`Observer::epoch_validated`], [`Observer::epoch_checkpointed`] and, when it stops the run,
/// [`Observer::early_stop`]; finally [`Observer::finished`].
pub trait Observer {
    /// The data is loaded and the output directory exists; no training has happened yet.
    fn data_loaded(&mut self, _data: &DataLoaded<'_>) {}

    /// The run continues from the `last` checkpoint `_from`, written after epoch `_epoch`.
    fn resumed(&mut self, _from: &Path, _epoch: usize) {}

    /// Epoch `_epoch` (1-based) starts; it has `_steps` optimisation steps.
    fn epoch_started(&mut self, _epoch: usize, _steps: usize) {}

    /// Step `_step` (1-based) of the current epoch is done; `_mean_loss` is the mean main loss
    /// of the epoch's steps so far.
    fn step_finished(&mut self, _step: usize, _mean_loss: f64) {}

    /// The current epoch's steps are done (validation follows).
    fn steps_finished(&mut self) {}

    /// The epoch is validated; `_mean_val_auc` is its early-stopping score. The record's
    /// checkpoint time is not known yet (zero).
    fn epoch_validated(&mut self, _record: &EpochRecord, _mean_val_auc: f64) {}

    /// The epoch's checkpoints are written; the record now has every timing.
    fn epoch_checkpointed(&mut self, _record: &EpochRecord) {}

    /// Early stopping ends the run: `_epochs_without_improvement` epochs since the best one,
    /// `_best_epoch`.
    fn early_stop(&mut self, _epochs_without_improvement: usize, _best_epoch: usize) {}

    /// The run is over: `best/` holds epoch `_best_epoch`, whose test metrics are `_test`.
    fn finished(&mut self, _best_epoch: usize, _test: &[TaskMetrics]) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Silent;

impl Observer for Silent {}

//! What `uie-train` shows while it trains: an [`Observer`] that draws the per-epoch progress bar
//! (hidden with `--quiet`) and prints the data summary, every epoch's validation lines and stage
//! timings, early stopping and the final test metrics.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use uie_train::metrics::TaskMetrics;
use uie_train::observer::{DataLoaded, Observer};
use uie_train::report::{EpochRecord, EpochTimings, Phase, SPARSE};

/// The console of one training run.
pub struct Console {
    quiet: bool,
    bar: Option<ProgressBar>,
}

impl Console {
    /// A console; `quiet` hides the progress bar (the printed lines stay).
    pub fn new(quiet: bool) -> Console {
        Console { quiet, bar: None }
    }
}

fn progress(steps: usize, epoch: usize, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(steps as u64);
    if let Ok(style) =
        ProgressStyle::with_template("epoch {prefix:>3} {bar:30} {pos}/{len} {msg} [{elapsed}]")
    {
        pb.set_style(style);
    }
    pb.set_prefix(epoch.to_string());
    pb
}

impl Observer for Console {
    fn data_loaded(&mut self, data: &DataLoaded<'_>) {
        println!(
            "data: {} train, {} validation, {} test rows (read in {:.2} s); bucket collisions:",
            data.train_rows, data.val_rows, data.test_rows, data.seconds
        );
        for (field, distinct, colliding) in data.collisions {
            println!("  {field}: {distinct} distinct training ids, {colliding} share a bucket");
        }
    }

    fn resumed(&mut self, from: &Path, epoch: usize) {
        println!("resumed from {} after epoch {epoch}", from.display());
    }

    fn epoch_started(&mut self, epoch: usize, steps: usize) {
        self.bar = Some(progress(steps, epoch, self.quiet));
    }

    fn step_finished(&mut self, _step: usize, mean_loss: f64) {
        if let Some(pb) = &self.bar {
            pb.inc(1);
            pb.set_message(format!("loss {mean_loss:.4}"));
        }
    }

    fn steps_finished(&mut self) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }

    fn epoch_validated(&mut self, record: &EpochRecord, mean_val_auc: f64) {
        let phase = if record.phase == Phase::Warmup {
            " (warm-up)"
        } else {
            ""
        };
        let aux = record
            .aux_loss
            .map(|a| format!(", aux loss {a:.5}"))
            .unwrap_or_default();
        println!(
            "epoch {}{phase}: train loss {:.5}{aux}, mean val auc {mean_val_auc:.5}",
            record.epoch, record.train_loss
        );
        for m in &record.val.overall {
            println!("  val {m}");
        }
        if let Some(sparse) = record.val.cohorts.iter().find(|c| c.cohort == SPARSE) {
            let parts: Vec<String> = sparse
                .tasks
                .iter()
                .map(|m| match m.auc {
                    Some(a) => format!("{} auc {a:.5}", m.task),
                    None => format!("{} auc -", m.task),
                })
                .collect();
            println!("  val sparse ({} rows): {}", sparse.rows, parts.join(", "));
        }
        for t in &record.tables {
            println!(
                "  table {}: {}/{} centres used, entropy {:.3}, {} reseeded",
                t.table, t.used, t.centres, t.entropy, t.reseeded
            );
        }
    }

    fn epoch_checkpointed(&mut self, record: &EpochRecord) {
        print_timings(&record.timings, record.seconds);
    }

    fn early_stop(&mut self, epochs_without_improvement: usize, best_epoch: usize) {
        println!(
            "early stop: no better validation AUC for {epochs_without_improvement} epochs (best \
             epoch {best_epoch})"
        );
    }

    fn finished(&mut self, best_epoch: usize, test: &[TaskMetrics]) {
        println!("best epoch {best_epoch}: test");
        for m in test {
            println!("  test {m}");
        }
    }
}

fn print_timings(t: &EpochTimings, seconds: f64) {
    let parts: Vec<String> = t
        .stages()
        .iter()
        .map(|(name, s)| format!("{name} {s:.2}"))
        .collect();
    println!(
        "  time (s): {} (epoch {seconds:.2} before checkpoints)",
        parts.join(", ")
    );
}

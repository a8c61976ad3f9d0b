//! What a training run records and what an evaluation reports: per task, per history cohort
//! (`docs/evaluation.md` Protocol B), GAUC by user, and the collapse diagnostics of every memory
//! table (`docs/model.md` §4). Plain data, serialisable: a run writes its epoch records as
//! `history.json` into the checkpoint directory (the `uie-train` binary draws its plots and
//! tables from them).

use serde::{Deserialize, Serialize};

use crate::data::{cohort, Dataset, COHORTS};
use crate::error::TrainError;
use crate::metrics::{self, TaskMetrics};

/// Metrics of one history cohort (`0`, `1-5`, `6-20`, `21-100`, `>100`, or `sparse` = `0-20`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CohortMetrics {
    /// Cohort name.
    pub cohort: String,
    /// Rows in the cohort.
    pub rows: usize,
    /// Per task, in config order.
    pub tasks: Vec<TaskMetrics>,
}

/// GAUC of one task: AUC per user, weighted by the user's samples; users whose labels are all
/// equal are skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gauc {
    /// Task name.
    pub task: String,
    /// The weighted mean AUC; `None` when no user has both classes.
    pub gauc: Option<f64>,
    /// Users that counted.
    pub users: usize,
}

/// The evaluation of a model on one split.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EvalReport {
    /// All rows, per task.
    pub overall: Vec<TaskMetrics>,
    /// Per cohort (empty for data without histories, such as census).
    pub cohorts: Vec<CohortMetrics>,
    /// GAUC per task (empty for data without users).
    pub gauc: Vec<Gauc>,
}

/// Collapse diagnostics of one memory table over an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableUsage {
    /// Tensor name (`memory.upe`, `memory.ucbe`, `memory.ucse`).
    pub table: String,
    /// Centres in the table.
    pub centres: usize,
    /// Centres assigned at least once in the epoch.
    pub used: usize,
    /// Entropy (natural log) of the assignment histogram.
    pub entropy: f64,
    /// Centres reseeded in the epoch.
    pub reseeded: usize,
}

/// The phase an epoch belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Towers only, centres frozen (`docs/model.md` §3 warm start).
    Warmup,
    /// The whole model.
    Full,
}

/// One epoch of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Warm-up or full training.
    pub phase: Phase,
    /// Mean main loss `Σ_k w_k · BCE_k` over the epoch's steps.
    pub train_loss: f64,
    /// Mean auxiliary loss, when the towers exist.
    pub aux_loss: Option<f64>,
    /// Validation report.
    pub val: EvalReport,
    /// Per memory table.
    pub tables: Vec<TableUsage>,
    /// Wall time of the epoch (training and validation).
    pub seconds: f64,
    /// Where the epoch's wall time went (absent in histories written before it was recorded).
    #[serde(default)]
    pub timings: EpochTimings,
}

/// Where an epoch's wall time went, in seconds, from `Instant` accumulators around each stage of
/// the trainer. The stages do not overlap; `EpochRecord::seconds` minus their sum is the rest
/// (progress bar, loss bookkeeping, per-epoch set-up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochTimings {
    /// Shuffling, gathering each batch's rows, per-row training counts.
    pub data: f64,
    /// Copying the host weights into dfdx tensors before each step, and emptying dfdx's
    /// allocation cache every few steps.
    pub upload: f64,
    /// The forward pass and the losses, with the tape recorded (dfdx).
    pub forward: f64,
    /// `backward` and the copy of every gradient to the host (dfdx).
    pub backward: f64,
    /// The Adam update of the host weights.
    pub optimizer: f64,
    /// UIE memory: stream clustering and `P` updates after each step, collecting vectors and the
    /// k-means++ initialisation of the centre tables (zero without UIE).
    pub clustering: f64,
    /// Validation: the forward pass over the validation split and its metrics.
    pub eval: f64,
    /// Writing the `best/` and `last/` checkpoints.
    pub checkpoint: f64,
}

impl EpochTimings {
    /// The optimisation steps' share: data, upload, forward, backward, optimizer, clustering.
    pub fn steps(&self) -> f64 {
        self.data + self.upload + self.forward + self.backward + self.optimizer + self.clustering
    }

    /// Adds another epoch's timings, stage by stage.
    pub fn add(&mut self, other: &EpochTimings) {
        self.data += other.data;
        self.upload += other.upload;
        self.forward += other.forward;
        self.backward += other.backward;
        self.optimizer += other.optimizer;
        self.clustering += other.clustering;
        self.eval += other.eval;
        self.checkpoint += other.checkpoint;
    }

    /// The stages as `(name, seconds)` in a fixed order.
    pub fn stages(&self) -> [(&'static str, f64); 8] {
        [
            ("data", self.data),
            ("upload", self.upload),
            ("forward", self.forward),
            ("backward", self.backward),
            ("optimizer", self.optimizer),
            ("clustering", self.clustering),
            ("eval", self.eval),
            ("checkpoint", self.checkpoint),
        ]
    }
}

/// The process's peak resident set size in bytes (`VmHWM` of `/proc/self/status`), where the
/// platform has it (Linux); `None` elsewhere or when it cannot be read.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The name of the cohort that joins `0`, `1-5` and `6-20` (Protocol B's "sparse" users).
pub const SPARSE: &str = "sparse";

/// Evaluates probabilities `[n, T]` against a data set: every task on all rows, then per cohort
/// (when the data set has `past_counts`: the five cohorts, then `sparse`), then GAUC by user (when
/// it has `users`). Cohorts without rows are left out.
pub fn eval_report(
    tasks: &[&str],
    probs: &[f32],
    data: &Dataset,
) -> Result<EvalReport, TrainError> {
    let t = tasks.len();
    let overall = metrics::per_task(tasks, probs, &data.labels)?;
    let mut cohorts = Vec::new();
    if data.past_counts.len() == data.len() && !data.is_empty() {
        for name in COHORTS.iter().copied().chain(std::iter::once(SPARSE)) {
            let member = |p: u32| {
                if name == SPARSE {
                    p <= 20
                } else {
                    cohort(p) == name
                }
            };
            let rows: Vec<usize> = (0..data.len())
                .filter(|&r| member(data.past_counts[r]))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let p: Vec<f32> = rows
                .iter()
                .flat_map(|&r| probs[r * t..(r + 1) * t].iter().copied())
                .collect();
            let l: Vec<f32> = rows
                .iter()
                .flat_map(|&r| data.labels[r * t..(r + 1) * t].iter().copied())
                .collect();
            cohorts.push(CohortMetrics {
                cohort: name.to_string(),
                rows: rows.len(),
                tasks: metrics::per_task(tasks, &p, &l)?,
            });
        }
    }
    let mut gauc = Vec::new();
    if data.users.len() == data.len() && !data.is_empty() {
        for (k, task) in tasks.iter().enumerate() {
            let (value, users) = metrics::gauc(&data.users, probs, &data.labels, t, k);
            gauc.push(Gauc {
                task: task.to_string(),
                gauc: value,
                users,
            });
        }
    }
    Ok(EvalReport {
        overall,
        cohorts,
        gauc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use uie_model::RawBatch;

    #[test]
    fn cohorts_and_sparse_group_rows_by_past_count() {
        let past = vec![0, 3, 7, 50, 500, 0, 20, 21];
        let n = past.len();
        let data = Dataset {
            batch: RawBatch {
                n,
                ..RawBatch::default()
            },
            labels: vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0],
            users: vec![1, 1, 2, 2, 3, 3, 4, 4],
            past_counts: past,
        };
        let probs = vec![0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.4, 0.6];
        let r = eval_report(&["like"], &probs, &data).expect("report");
        let rows: Vec<(&str, usize)> = r
            .cohorts
            .iter()
            .map(|c| (c.cohort.as_str(), c.rows))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("0", 2),
                ("1-5", 1),
                ("6-20", 2),
                ("21-100", 2),
                (">100", 1),
                ("sparse", 5)
            ]
        );
        assert_eq!(r.overall[0].auc, Some(1.0));
        assert_eq!(r.gauc[0].users, 4);
    }
}

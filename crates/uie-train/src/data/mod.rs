//! Data sets the trainer reads: raw model inputs ([`RawBatch`]) plus labels, split three ways.

pub mod census;

use uie_model::RawBatch;

/// Rows of one split: the raw inputs and their labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    /// Raw model inputs, `n` rows.
    pub batch: RawBatch,
    /// Labels, row-major `[n, T]` with `T` the number of tasks in config order.
    pub labels: Vec<f32>,
}

impl Dataset {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.batch.n
    }

    /// Whether the set has no rows.
    pub fn is_empty(&self) -> bool {
        self.batch.n == 0
    }

    /// Number of tasks (label columns).
    pub fn n_tasks(&self) -> usize {
        self.labels.len().checked_div(self.batch.n).unwrap_or(0)
    }

    /// The rows at `rows` (in that order); indices `≥ len()` are skipped.
    pub fn take(&self, rows: &[usize]) -> Dataset {
        let rows: Vec<usize> = rows.iter().copied().filter(|&r| r < self.len()).collect();
        let rows = &rows[..];
        Dataset {
            batch: take_rows(&self.batch, rows),
            labels: gather_rows(&self.labels, self.n_tasks(), rows),
        }
    }

    /// The first `n` rows (all of them if there are fewer).
    pub fn head(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        let t = self.n_tasks();
        Dataset {
            batch: self.batch.slice(0, n),
            labels: self.labels[..n * t].to_vec(),
        }
    }
}

/// The train / validation / test split of a data set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Splits {
    /// Training rows.
    pub train: Dataset,
    /// Validation rows (early stopping).
    pub val: Dataset,
    /// Test rows (reported once, at the end).
    pub test: Dataset,
    /// Per categorical field (config order): `(field, distinct training ids, ids sharing a bucket
    /// with another distinct id)`.
    pub collisions: Vec<(String, usize, usize)>,
}

fn gather_rows<T: Copy>(values: &[T], width: usize, rows: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        out.extend_from_slice(&values[r * width..(r + 1) * width]);
    }
    out
}

/// The rows `rows` of a batch, in that order; indices `≥ batch.n` are skipped.
pub fn take_rows(batch: &RawBatch, rows: &[usize]) -> RawBatch {
    let rows: Vec<usize> = rows.iter().copied().filter(|&r| r < batch.n).collect();
    let rows = &rows[..];
    let d = batch.dense.len().checked_div(batch.n).unwrap_or(0);
    RawBatch {
        n: rows.len(),
        categorical: batch
            .categorical
            .iter()
            .map(|(k, v)| (k.clone(), rows.iter().map(|&r| v[r]).collect()))
            .collect(),
        dense: gather_rows(&batch.dense, d, rows),
    }
}

//! Data sets the trainer reads: raw model inputs ([`RawBatch`]) plus labels, split three ways.
//!
//! - [`census`]: UCI Census-Income (KDD), Protocol A (random split).
//! - [`movielens`]: MovieLens ml-latest-small, Protocol B (global time split, sampled negatives,
//!   features strictly from the past, cohorts by history length).

pub mod census;
pub mod movielens;

use std::collections::BTreeMap;

use uie_model::RawBatch;

/// The Protocol B cohorts, by the number of the user's ratings before prediction time. Also the
/// buckets of the MovieLens `user_activity` field.
pub const COHORTS: [&str; 5] = ["0", "1-5", "6-20", "21-100", ">100"];

/// The cohort (one of [`COHORTS`]) of a sample whose user had `past_count` ratings before it.
pub fn cohort(past_count: u32) -> &'static str {
    match past_count {
        0 => COHORTS[0],
        1..=5 => COHORTS[1],
        6..=20 => COHORTS[2],
        21..=100 => COHORTS[3],
        _ => COHORTS[4],
    }
}

/// Rows of one split: the raw inputs and their labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    /// Raw model inputs, `n` rows.
    pub batch: RawBatch,
    /// Labels, row-major `[n, T]` with `T` the number of tasks in config order.
    pub labels: Vec<f32>,
    /// Raw user id per row (GAUC grouping, balanced sampling); empty when the data set has no
    /// users (census).
    pub users: Vec<i64>,
    /// Per row, the uncapped number of the user's events before prediction time (the cohort, see
    /// [`cohort`]); empty when the data set has no history (census).
    pub past_counts: Vec<u32>,
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
            batch: self.batch.take(rows),
            labels: gather_rows(&self.labels, self.n_tasks(), rows),
            users: gather_rows(&self.users, 1, rows),
            past_counts: gather_rows(&self.past_counts, 1, rows),
        }
    }

    /// The first `n` rows (all of them if there are fewer).
    pub fn head(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        let t = self.n_tasks();
        Dataset {
            batch: self.batch.slice(0, n),
            labels: self.labels[..n * t].to_vec(),
            users: self.users.iter().take(n).copied().collect(),
            past_counts: self.past_counts.iter().take(n).copied().collect(),
        }
    }

    /// Rows per cohort (in [`COHORTS`] order), from `past_counts`.
    pub fn cohort_counts(&self) -> [usize; 5] {
        let mut counts = [0usize; 5];
        for &p in &self.past_counts {
            if let Some(i) = COHORTS.iter().position(|c| *c == cohort(p)) {
                counts[i] += 1;
            }
        }
        counts
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
    /// Raw user id → number of that user's positive training events (the activity of balanced
    /// sampling); users without one are absent (count 0). Empty for data sets without users.
    pub user_train_counts: BTreeMap<i64, u64>,
}

impl Splits {
    /// The training-activity count of every row of `data` (0 for users absent from
    /// `user_train_counts`), aligned with `data.users`.
    pub fn train_counts_of(&self, data: &Dataset) -> Vec<u64> {
        data.users
            .iter()
            .map(|u| self.user_train_counts.get(u).copied().unwrap_or(0))
            .collect()
    }
}

fn gather_rows<T: Copy>(values: &[T], width: usize, rows: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        if let Some(row) = values.get(r * width..(r + 1) * width) {
            out.extend_from_slice(row);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cohort_boundaries() {
        let got: Vec<&str> = [0, 1, 5, 6, 20, 21, 100, 101, u32::MAX]
            .iter()
            .map(|&p| cohort(p))
            .collect();
        assert_eq!(
            got,
            ["0", "1-5", "1-5", "6-20", "6-20", "21-100", "21-100", ">100", ">100"]
        );
    }

    #[test]
    fn take_and_head_carry_users_and_past_counts() {
        let d = Dataset {
            batch: RawBatch {
                n: 3,
                ..RawBatch::default()
            },
            labels: vec![1.0, 0.0, 1.0],
            users: vec![7, 8, 9],
            past_counts: vec![0, 3, 200],
        };
        let t = d.take(&[2, 0, 5]);
        assert_eq!(t.users, vec![9, 7]);
        assert_eq!(t.past_counts, vec![200, 0]);
        assert_eq!(t.labels, vec![1.0, 1.0]);
        let h = d.head(2);
        assert_eq!(h.users, vec![7, 8]);
        assert_eq!(h.past_counts, vec![0, 3]);
        assert_eq!(d.cohort_counts(), [1, 1, 0, 0, 1]);
        let census_like = Dataset {
            users: vec![],
            past_counts: vec![],
            ..d
        };
        assert!(census_like.take(&[0, 1]).users.is_empty());
        assert!(census_like.head(2).past_counts.is_empty());
    }
}

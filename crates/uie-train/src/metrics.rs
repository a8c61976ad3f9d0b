//! Binary classification metrics: ROC AUC (rank-based, ties get their average rank) and logloss
//! (probabilities clamped to `[1e-7, 1 − 1e-7]`). A label is positive when it is ≥ 0.5.

use crate::error::TrainError;

/// Clamp applied to probabilities before taking logs.
pub const LOGLOSS_EPS: f64 = 1e-7;

/// Metrics of one task.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskMetrics {
    /// Task name.
    pub task: String,
    /// ROC AUC; `None` when the labels hold only one class.
    pub auc: Option<f64>,
    /// Mean binary cross-entropy of the probabilities.
    pub logloss: f64,
    /// Number of rows.
    pub n: usize,
}

impl std::fmt::Display for TaskMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.auc {
            Some(a) => write!(f, "{}: auc {a:.4} logloss {:.4}", self.task, self.logloss),
            None => write!(
                f,
                "{}: auc n/a (one class) logloss {:.4}",
                self.task, self.logloss
            ),
        }
    }
}

/// ROC AUC of `scores` against binary `labels`; `None` if the lengths differ, a score is NaN, or
/// one class is absent.
pub fn auc(scores: &[f32], labels: &[f32]) -> Option<f64> {
    if scores.len() != labels.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0f64;
    let mut n_pos = 0usize;
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j share their average.
        let avg = (i + 1 + j) as f64 / 2.0;
        for &r in &order[i..j] {
            if labels[r] >= 0.5 {
                rank_sum_pos += avg;
                n_pos += 1;
            }
        }
        i = j;
    }
    let n_neg = scores.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let (p, q) = (n_pos as f64, n_neg as f64);
    Some((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * q))
}

/// Mean logloss of probabilities against binary labels (probabilities clamped); `None` if the
/// lengths differ or the input is empty.
pub fn logloss(probs: &[f32], labels: &[f32]) -> Option<f64> {
    if probs.len() != labels.len() || probs.is_empty() {
        return None;
    }
    let sum: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = f64::from(p).clamp(LOGLOSS_EPS, 1.0 - LOGLOSS_EPS);
            if y >= 0.5 {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    Some(sum / probs.len() as f64)
}

/// GAUC of task `k` from row-major `[n, t]` probabilities and labels: the AUC of each user's rows,
/// averaged with the user's row count as weight; users whose labels for the task are all equal are
/// skipped. Returns the GAUC (`None` when no user counts) and the number of users that counted.
pub fn gauc(
    users: &[i64],
    probs: &[f32],
    labels: &[f32],
    t: usize,
    k: usize,
) -> (Option<f64>, usize) {
    let mut rows_of: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for (r, &u) in users.iter().enumerate() {
        rows_of.entry(u).or_default().push(r);
    }
    let (mut sum, mut weight, mut counted) = (0f64, 0f64, 0usize);
    for rows in rows_of.values() {
        let p: Vec<f32> = rows
            .iter()
            .filter_map(|&r| probs.get(r * t + k).copied())
            .collect();
        let y: Vec<f32> = rows
            .iter()
            .filter_map(|&r| labels.get(r * t + k).copied())
            .collect();
        if let Some(a) = auc(&p, &y) {
            sum += a * rows.len() as f64;
            weight += rows.len() as f64;
            counted += 1;
        }
    }
    ((counted > 0).then(|| sum / weight), counted)
}

/// Metrics per task from row-major `[n, T]` probabilities and labels.
pub fn per_task(
    tasks: &[&str],
    probs: &[f32],
    labels: &[f32],
) -> Result<Vec<TaskMetrics>, TrainError> {
    let t = tasks.len();
    if t == 0 || probs.len() != labels.len() || !probs.len().is_multiple_of(t) || probs.is_empty() {
        return Err(TrainError::Labels(format!(
            "{} probabilities and {} labels for {t} tasks",
            probs.len(),
            labels.len()
        )));
    }
    Ok(tasks
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let p: Vec<f32> = probs.iter().skip(k).step_by(t).copied().collect();
            let y: Vec<f32> = labels.iter().skip(k).step_by(t).copied().collect();
            TaskMetrics {
                task: name.to_string(),
                auc: auc(&p, &y),
                logloss: logloss(&p, &y).unwrap_or(f64::INFINITY),
                n: p.len(),
            }
        })
        .collect())
}

/// The early-stopping score: mean AUC over tasks, a task without an AUC counting as 0.5.
pub fn mean_auc(metrics: &[TaskMetrics]) -> f64 {
    if metrics.is_empty() {
        return 0.5;
    }
    metrics.iter().map(|m| m.auc.unwrap_or(0.5)).sum::<f64>() / metrics.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn auc_on_known_cases() {
        // Perfect and reversed ranking.
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[0.0, 0.0, 1.0, 1.0]), Some(1.0));
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[0.0, 0.0, 1.0, 1.0]), Some(0.0));
        // Pairs (pos, neg): (0.35 vs 0.1 ✓, 0.35 vs 0.4 ✗), (0.8 vs both ✓) → 3/4.
        let a = auc(&[0.1, 0.4, 0.35, 0.8], &[0.0, 0.0, 1.0, 1.0]).expect("auc");
        assert!(close(a, 0.75), "{a}");
        // All scores tied: every pair counts one half.
        let a = auc(&[0.5; 5], &[1.0, 0.0, 1.0, 0.0, 0.0]).expect("auc");
        assert!(close(a, 0.5), "{a}");
        // One tie between a positive and a negative: pairs ✓, ½, ✓, ✓ → 3.5 / 4.
        let a = auc(&[0.2, 0.5, 0.5, 0.9], &[0.0, 0.0, 1.0, 1.0]).expect("auc");
        assert!(close(a, 0.875), "{a}");
    }

    #[test]
    fn auc_of_one_class_or_bad_input_is_none() {
        assert_eq!(auc(&[0.1, 0.2], &[1.0, 1.0]), None);
        assert_eq!(auc(&[0.1, 0.2], &[0.0, 0.0]), None);
        assert_eq!(auc(&[], &[]), None);
        assert_eq!(auc(&[0.1], &[0.0, 1.0]), None);
        assert_eq!(auc(&[f32::NAN, 0.2], &[0.0, 1.0]), None);
    }

    #[test]
    fn logloss_on_known_cases() {
        let l = logloss(&[0.5, 0.5], &[1.0, 0.0]).expect("ll");
        assert!(close(l, std::f64::consts::LN_2), "{l}");
        let l = logloss(&[0.8, 0.1], &[1.0, 0.0]).expect("ll");
        let want = -((0.8f32 as f64).ln() + (1.0 - 0.1f32 as f64).ln()) / 2.0;
        assert!(close(l, want), "{l} vs {want}");
        // Clamped: a confident mistake costs -ln(1e-7), not infinity.
        let l = logloss(&[0.0], &[1.0]).expect("ll");
        assert!(close(l, -(LOGLOSS_EPS.ln())), "{l}");
        assert_eq!(logloss(&[], &[]), None);
    }

    #[test]
    fn per_task_splits_columns() {
        let probs = [0.9, 0.1, 0.2, 0.8, 0.7, 0.3];
        let labels = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let m = per_task(&["a", "b"], &probs, &labels).expect("metrics");
        assert_eq!(m[0].auc, Some(1.0));
        // b: scores 0.1 (neg), 0.8 (pos), 0.3 (pos) → both positives above the negative.
        assert_eq!(m[1].auc, Some(1.0));
        assert_eq!(m[0].n, 3);
        assert!((mean_auc(&m) - 1.0).abs() < 1e-12);
        assert!(per_task(&["a", "b"], &probs[..5], &labels[..5]).is_err());
    }

    #[test]
    fn gauc_weights_users_by_rows_and_skips_one_class_users() {
        // Two tasks; task 1 is scored. User 1: 4 rows, AUC 0.75. User 2: 2 rows, AUC 0.
        // User 3: all negatives, skipped.
        let users = [1, 1, 1, 1, 2, 2, 3, 3];
        let scores = [0.9, 0.8, 0.3, 0.5, 0.2, 0.7, 0.1, 0.4];
        let ys = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0];
        let probs: Vec<f32> = scores.iter().flat_map(|&s| [0.5, s]).collect();
        let labels: Vec<f32> = ys.iter().flat_map(|&y| [1.0, y]).collect();
        let (g, counted) = gauc(&users, &probs, &labels, 2, 1);
        assert_eq!(counted, 2);
        let expected = (0.75 * 4.0 + 0.0 * 2.0) / 6.0;
        assert!((g.expect("gauc") - expected).abs() < 1e-12);
        // Task 0 has one class only for everyone.
        assert_eq!(gauc(&users, &probs, &labels, 2, 0), (None, 0));
    }
}

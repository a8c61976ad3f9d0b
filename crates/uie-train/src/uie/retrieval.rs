//! Masked top-K attention over a centre table, `R(query, M, K)` of `docs/model.md` §5:
//!
//! ```text
//! s        = query · Mᵀ                          [B, N]
//! s_k, i_k = TopK(s, K)  (largest, sorted; ties: lower index first, the ONNX rule)
//! keep_k   = s_k > 0
//! a_k      = exp(s_k − max_{keep} s) / Σ_{keep} exp(…)   for kept k, 0 otherwise
//! r        = Σ_k a_k · M[i_k]                   (zero vector when nothing is kept)
//! ```
//!
//! Top-K is streaming: each row keeps its `K` best `(score, index)` pairs in a small array sorted
//! by descending score while it scans the `N` scores once (`O(N·K)` worst case, no full sort). A
//! candidate enters only when it is strictly larger than the current `K`-th score, and is inserted
//! after every kept entry with an equal score, so among equal scores the lower index always wins,
//! as ONNX `TopK` (and tract) order them. Scores are accumulated in f32 in index order.
//!
//! A row with a non-finite score (NaN or ±inf in the query or the table, or an overflowing dot
//! product) is an error: the ONNX graph would propagate NaN, and the trainer should stop instead.

use super::{check_vectors, dot, Table, UieError};

/// The result of [`retrieve`] for a batch of `B` queries; every matrix is row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrieval {
    /// Number of queries `B`.
    pub batch: usize,
    /// Number of retrieved centres per query `K`.
    pub k: usize,
    /// Width of the table (and of `r`).
    pub width: usize,
    /// `i_k`, `[B, K]`: centre indices, by descending score, ties toward the lower index.
    pub indices: Vec<i64>,
    /// `s_k`, `[B, K]`: the scores of `indices`.
    pub scores: Vec<f32>,
    /// `keep_k`, `[B, K]`: 1.0 where `s_k > 0`, 0.0 otherwise.
    pub keep: Vec<f32>,
    /// `a_k`, `[B, K]`: softmax over kept entries, exactly 0.0 for the others.
    pub weights: Vec<f32>,
    /// `r`, `[B, width]`: `Σ_k a_k · M[i_k]`, exactly zero when nothing is kept.
    pub r: Vec<f32>,
}

/// Streaming top-`k` of `scores` into `idx` / `val` (cleared first), sorted by descending score,
/// ties toward the lower index. The caller guarantees `1 ≤ k ≤ scores.len()` and finite scores.
pub(crate) fn top_k_into(scores: &[f32], k: usize, idx: &mut Vec<usize>, val: &mut Vec<f32>) {
    idx.clear();
    val.clear();
    if k == 0 {
        return;
    }
    for (j, &s) in scores.iter().enumerate() {
        if val.len() == k {
            match val.last() {
                Some(&worst) if s > worst => {
                    val.pop();
                    idx.pop();
                }
                _ => continue,
            }
        }
        // First position whose score is strictly smaller: equal scores (lower indices, seen
        // earlier) stay in front.
        let pos = val.partition_point(|&v| v >= s);
        val.insert(pos, s);
        idx.insert(pos, j);
    }
}

/// Checks `1 ≤ k ≤ n` for a top-`k` over `n` centres.
pub(crate) fn check_k(what: &str, k: usize, n: usize) -> Result<(), UieError> {
    if k == 0 || k > n {
        return Err(UieError::invalid(
            what,
            format!("K = {k} must be in 1..={n} (the table's row count)"),
        ));
    }
    Ok(())
}

/// Fills `scores` with `<query, M_j>` for every row `j` of `table`; a non-finite score is an
/// error naming `what` and the query's position `row` (formatted only on error).
pub(crate) fn score_row(
    what: &str,
    row: usize,
    query: &[f32],
    table: &Table,
    scores: &mut Vec<f32>,
) -> Result<(), UieError> {
    scores.clear();
    scores.extend(
        table
            .data()
            .chunks_exact(table.width())
            .map(|m| dot(query, m)),
    );
    match scores.iter().position(|x| !x.is_finite()) {
        Some(j) => Err(UieError::non_finite(format!("{what} {row}, centre {j}"))),
        None => Ok(()),
    }
}

/// `R(query, M, K)` of §5 for `batch` queries: `queries` is row-major `[batch, table.width()]`.
///
/// Errors when `queries` does not hold `batch` rows of the table's width, when `K` is not in
/// `1..=N`, or when a score is not finite. Never returns NaN: a row with no score `> 0` gets zero
/// weights and a zero `r`.
pub fn retrieve(
    queries: &[f32],
    batch: usize,
    table: &Table,
    k: usize,
) -> Result<Retrieval, UieError> {
    let width = table.width();
    check_vectors("retrieval queries", queries, batch, width)?;
    check_k("retrieval K", k, table.rows())?;

    let mut out = Retrieval {
        batch,
        k,
        width,
        indices: Vec::with_capacity(batch * k),
        scores: Vec::with_capacity(batch * k),
        keep: Vec::with_capacity(batch * k),
        weights: Vec::with_capacity(batch * k),
        r: vec![0.0; batch * width],
    };
    let mut all = Vec::with_capacity(table.rows());
    let mut idx = Vec::with_capacity(k + 1);
    let mut val = Vec::with_capacity(k + 1);
    let mut w = vec![0.0f32; k];
    for (b, (q, r)) in queries
        .chunks_exact(width)
        .zip(out.r.chunks_exact_mut(width))
        .enumerate()
    {
        score_row("retrieval score of query", b, q, table, &mut all)?;
        top_k_into(&all, k, &mut idx, &mut val);

        // Sorted descending, so the first entry is the maximum over kept entries (if any is kept).
        let max_kept = val.first().copied().unwrap_or(0.0);
        let mut sum = 0.0f32;
        for (wk, &s) in w.iter_mut().zip(&val) {
            *wk = if s > 0.0 { (s - max_kept).exp() } else { 0.0 };
            sum += *wk;
        }
        if sum > 0.0 {
            for wk in w.iter_mut() {
                *wk /= sum;
            }
            for (&wk, &i) in w.iter().zip(&idx) {
                if wk > 0.0 {
                    for (acc, &m) in r.iter_mut().zip(table.row_or_empty(i)) {
                        *acc += wk * m;
                    }
                }
            }
        }
        out.indices.extend(idx.iter().map(|&i| i as i64));
        out.keep
            .extend(val.iter().map(|&s| if s > 0.0 { 1.0 } else { 0.0 }));
        out.scores.extend_from_slice(&val);
        out.weights.extend_from_slice(&w);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: usize, width: usize, data: &[f32]) -> Table {
        Table::new(rows, width, data.to_vec()).expect("table")
    }

    #[test]
    fn retrieval_matches_hand_computed_softmax() {
        // Scores of q = [1, 0]: [0.5, 2.0, -1.0, 1.0].
        let m = table(4, 2, &[0.5, 0.0, 2.0, 1.0, -1.0, 3.0, 1.0, -2.0]);
        let r = retrieve(&[1.0, 0.0], 1, &m, 3).expect("retrieve");
        assert_eq!(r.indices, vec![1, 3, 0]);
        assert_eq!(r.scores, vec![2.0, 1.0, 0.5]);
        assert_eq!(r.keep, vec![1.0, 1.0, 1.0]);
        let e = [1.0f32, (-1.0f32).exp(), (-1.5f32).exp()];
        let z: f32 = e.iter().sum();
        for (a, b) in r.weights.iter().zip(e.iter().map(|x| x / z)) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let want = [
            r.weights[0] * 2.0 + r.weights[1] * 1.0 + r.weights[2] * 0.5,
            r.weights[0] * 1.0 + r.weights[1] * -2.0 + r.weights[2] * 0.0,
        ];
        for (a, b) in r.r.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn retrieval_masks_non_positive_scores() {
        // Scores of q = [1, 1]: [3, 0, -2]; K = 3 keeps only centre 0.
        let m = table(3, 2, &[1.0, 2.0, 1.0, -1.0, -1.0, -1.0]);
        let r = retrieve(&[1.0, 1.0], 1, &m, 3).expect("retrieve");
        assert_eq!(r.indices, vec![0, 1, 2]);
        assert_eq!(r.keep, vec![1.0, 0.0, 0.0]);
        assert_eq!(r.weights, vec![1.0, 0.0, 0.0]);
        assert_eq!(r.r, vec![1.0, 2.0]);
    }

    #[test]
    fn retrieval_nothing_kept_gives_exact_zero() {
        // Row 0 scores [-1, 0, -1]: all ≤ 0, one exactly 0; row 1 is the zero query (all 0).
        let m = table(3, 2, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let r = retrieve(&[-1.0, 0.0, 0.0, 0.0], 2, &m, 2).expect("retrieve");
        assert_eq!(r.keep, vec![0.0; 4]);
        assert_eq!(r.weights, vec![0.0; 4]);
        assert!(r.weights.iter().all(|w| !w.is_nan()));
        assert_eq!(r.r, vec![0.0; 4]);
        assert!(
            r.r.iter().all(|x| x.to_bits() == 0),
            "must be +0.0, not NaN"
        );
        assert_eq!(r.indices, vec![1, 0, 0, 1]);
    }

    #[test]
    fn retrieval_all_scores_non_positive_row() {
        let m = table(3, 2, &[1.0, 0.0, 0.0, 1.0, 2.0, 2.0]);
        let r = retrieve(&[-1.0, -1.0], 1, &m, 3).expect("retrieve");
        assert_eq!(r.scores, vec![-1.0, -1.0, -4.0]);
        assert_eq!(r.indices, vec![0, 1, 2]);
        assert_eq!(r.keep, vec![0.0; 3]);
        assert_eq!(r.weights, vec![0.0; 3]);
        assert_eq!(r.r, vec![0.0, 0.0]);
    }

    #[test]
    fn retrieval_ties_break_toward_lower_index() {
        // Centres 1, 3 and 4 are the same vector; centre 0 scores lower, centre 2 higher.
        let m = table(5, 2, &[0.1, 0.0, 1.0, 1.0, 5.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        let r = retrieve(&[1.0, 0.0], 1, &m, 3).expect("retrieve");
        assert_eq!(r.indices, vec![2, 1, 3]);
        let r = retrieve(&[1.0, 0.0], 1, &m, 4).expect("retrieve");
        assert_eq!(r.indices, vec![2, 1, 3, 4]);
        // All tied: the first K indices in order.
        let m = table(4, 1, &[2.0; 4]);
        let r = retrieve(&[1.0], 1, &m, 2).expect("retrieve");
        assert_eq!(r.indices, vec![0, 1]);
        assert_eq!(r.weights, vec![0.5, 0.5]);
    }

    #[test]
    fn top_k_matches_stable_sort() {
        let scores: [f32; 10] = [3.0, 1.0, 3.0, 2.0, 5.0, 1.0, 2.0, 5.0, 0.0, 3.0];
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        let (mut idx, mut val) = (Vec::new(), Vec::new());
        for k in 1..=scores.len() {
            top_k_into(&scores, k, &mut idx, &mut val);
            assert_eq!(idx, order[..k].to_vec(), "k = {k}");
        }
    }

    #[test]
    fn retrieval_rejects_bad_input() {
        let m = table(2, 2, &[1.0, 0.0, 0.0, 1.0]);
        assert!(retrieve(&[1.0, 0.0], 1, &m, 3).is_err(), "K > N");
        assert!(retrieve(&[1.0, 0.0], 1, &m, 0).is_err(), "K = 0");
        assert!(retrieve(&[1.0, 0.0, 1.0], 1, &m, 1).is_err(), "query width");
        assert!(retrieve(&[1.0, 0.0], 2, &m, 1).is_err(), "batch");
        assert!(matches!(
            retrieve(&[f32::NAN, 0.0], 1, &m, 1),
            Err(UieError::NonFinite { .. })
        ));
        let empty = retrieve(&[], 0, &m, 1).expect("empty batch");
        assert!(empty.indices.is_empty() && empty.r.is_empty());
    }
}

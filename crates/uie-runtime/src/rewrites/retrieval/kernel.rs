//! The fused retrieval kernel, in plain Rust (no tract types): `R(query, M, K)` of
//! `docs/model.md` §5 for a batch of rows of scores `s = q · Mᵀ` computed elsewhere (the runtime's
//! rewrite feeds it tract's MatMul output: tract picks AVX2/FMA matrix kernels at run time, which
//! this safe code, built for the baseline target, cannot).
//!
//! Per row the scores are scanned once keeping the K best `(score, index)` pairs in a small
//! sorted array — a score enters only if strictly greater than the current K-th, and is inserted
//! after the scores equal to it, so ties go to the lower index (the ONNX TopK rule); chunks of
//! [`LANES`] scores none of which beats the K-th are skipped with one test. No full sort. Then the
//! keep mask (`s > 0`), the masked softmax (max-subtracted; all-zero weights and a zero sum when
//! nothing is kept — never NaN), the gather of the kept rows and their weighted sum, each only
//! when asked for.
//!
//! [`retrieve_scored`] takes whole rows of scores; [`ScoredRows`] is the same fed blocks of rows
//! × chunks of centres, each row keeping its K best between chunks (the rewrite's path for large
//! tables, where the whole `[B, N]` scores would not fit in cache).

use std::cmp::Ordering;
use std::fmt;

/// Errors of the kernel: inputs that do not fit the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// The table's data length disagrees with its shape, or it is empty.
    #[error("centre table: {0}")]
    BadTable(String),
    /// `K` is 0 or larger than the number of centres.
    #[error("K = {k} is not in 1..={n}")]
    BadK {
        /// Requested K.
        k: usize,
        /// Number of centres.
        n: usize,
    },
    /// The query length is not a multiple of the table width.
    #[error("query of {len} values is not [B, {d}]")]
    BadQuery {
        /// Values given.
        len: usize,
        /// Table width.
        d: usize,
    },
}

/// Scores tested together when a row's K best are full: a chunk none of which beats the K-th is
/// skipped with one branch.
pub const LANES: usize = 8;

/// A centre table `M` `[N, d]` in row layout (what the gather reads).
#[derive(Clone, PartialEq)]
pub struct CentreTable {
    n: usize,
    d: usize,
    rows: Vec<f32>,
}

impl fmt::Debug for CentreTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CentreTable[{}, {}]", self.n, self.d)
    }
}

impl CentreTable {
    /// A table from its transposed layout `Mᵀ` `[d, N]` (the MatMul operand of the ONNX graph).
    pub fn from_transposed(d: usize, n: usize, cols: Vec<f32>) -> Result<Self, KernelError> {
        if cols.len() != n * d {
            return Err(KernelError::BadTable(format!(
                "{} values for [{d}, {n}]",
                cols.len()
            )));
        }
        let mut rows = vec![0.0; n * d];
        for j in 0..d {
            for i in 0..n {
                rows[i * d + j] = cols[j * n + i];
            }
        }
        CentreTable::from_rows(n, d, rows)
    }

    /// A table from its row layout `M` `[N, d]`.
    pub fn from_rows(n: usize, d: usize, rows: Vec<f32>) -> Result<Self, KernelError> {
        if n == 0 || d == 0 || rows.len() != n * d {
            return Err(KernelError::BadTable(format!(
                "{} values for [{n}, {d}]",
                rows.len()
            )));
        }
        Ok(CentreTable { n, d, rows })
    }

    /// Number of centres `N`.
    pub fn centres(&self) -> usize {
        self.n
    }

    /// Width `d`.
    pub fn width(&self) -> usize {
        self.d
    }

    /// The row layout `[N, d]`.
    pub fn rows(&self) -> &[f32] {
        &self.rows
    }
}

/// Which results to produce (the rest is skipped or left empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Wants {
    /// The top-K scores `[B, K]`.
    pub values: bool,
    /// The top-K indices `[B, K]`.
    pub indices: bool,
    /// The keep mask `s_k > 0` as 0/1 `[B, K]`.
    pub keep: bool,
    /// The masked-softmax weights `[B, K]`.
    pub weights: bool,
    /// The weighted sum of the kept centres `[B, d]`.
    pub sum: bool,
    /// The gathered centres `M[i_k]` `[B, K, d]`.
    pub gathered: bool,
}

/// The kernel's results, row-major; a field not asked for is empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retrieved {
    /// `[B, K]` top scores, best first.
    pub values: Vec<f32>,
    /// `[B, K]` centre indices.
    pub indices: Vec<i64>,
    /// `[B, K]` keep mask (1.0 kept, 0.0 not).
    pub keep: Vec<f32>,
    /// `[B, K]` masked-softmax weights.
    pub weights: Vec<f32>,
    /// `[B, d]` weighted sums.
    pub sum: Vec<f32>,
    /// `[B, K, d]` gathered centres.
    pub gathered: Vec<f32>,
}

/// Inserts `(s, i)` into the sorted `vals`/`idx` (best first, `filled` slots used), after every
/// kept score `>= s` (ties: the earlier index stays ahead). Returns the new fill.
fn insert(vals: &mut [f32], idx: &mut [usize], filled: usize, s: f32, i: usize) -> usize {
    let k = vals.len();
    let last = filled.min(k - 1);
    let mut p = last;
    while p > 0
        && !matches!(
            vals[p - 1].partial_cmp(&s),
            Some(Ordering::Greater | Ordering::Equal)
        )
    {
        p -= 1;
    }
    let mut j = last;
    while j > p {
        vals[j] = vals[j - 1];
        idx[j] = idx[j - 1];
        j -= 1;
    }
    vals[p] = s;
    idx[p] = i;
    (filled + 1).min(k)
}

/// Keeps the K best `(score, index)` of a stream of scores seen in increasing index order: a score
/// enters only if strictly greater than the current K-th (ties: lower index; NaN never enters a
/// full list). Once the list is full, a chunk of `LANES` scores none of which beats the K-th is
/// skipped with one branch. Returns how many slots are filled (`min(K, N)`).
fn top_k(scores: &[f32], vals: &mut [f32], idx: &mut [usize]) -> usize {
    top_k_from(scores, 0, vals, idx, 0)
}

/// [`top_k`] continued: `scores` are those of indices `base..`, and the list already holds
/// `filled` entries from the indices before `base`.
fn top_k_from(
    scores: &[f32],
    base: usize,
    vals: &mut [f32],
    idx: &mut [usize],
    filled: usize,
) -> usize {
    let k = vals.len();
    let mut filled = filled;
    let (chunks, tail) = scores.as_chunks::<LANES>();
    for (c, chunk) in chunks.iter().enumerate() {
        if filled == k {
            let kth = vals[k - 1];
            if !chunk.iter().fold(false, |any, &s| any | (s > kth)) {
                continue;
            }
        }
        for (l, &s) in chunk.iter().enumerate() {
            if filled < k || s > vals[k - 1] {
                filled = insert(vals, idx, filled, s, base + c * LANES + l);
            }
        }
    }
    let tail_base = base + chunks.len() * LANES;
    for (l, &s) in tail.iter().enumerate() {
        if filled < k || s > vals[k - 1] {
            filled = insert(vals, idx, filled, s, tail_base + l);
        }
    }
    filled
}

/// The retrieval from scores `[B, N]` row-major (`s = q · Mᵀ` computed elsewhere): the top K,
/// mask, weights, gather and sum of each row, as `wants` asks.
pub fn retrieve_scored(
    table: &CentreTable,
    k: usize,
    scores: &[f32],
    wants: Wants,
) -> Result<Retrieved, KernelError> {
    let n = table.n;
    if k == 0 || k > n {
        return Err(KernelError::BadK { k, n });
    }
    if !scores.len().is_multiple_of(n) {
        return Err(KernelError::BadQuery {
            len: scores.len(),
            d: n,
        });
    }
    let mut sink = RowSink::new(table, k, wants, scores.len() / n);
    for (row, s) in scores.chunks_exact(n).enumerate() {
        sink.push(s, row);
    }
    Ok(sink.out)
}

/// [`retrieve_scored`] fed a block of scores at a time: `rows` rows against the `N` centres, in
/// blocks `[r, c]` of rows `first_row..first_row + r` by centres `first_centre..first_centre + c`
/// ([`ScoredRows::push`]); each row's centres must arrive in increasing order, each row keeping
/// its K best so far between blocks (the same scan as one pass over the row, so the same result,
/// ties included). [`ScoredRows::finish`] then does the mask, weights, gather and sum. Only one
/// block of scores needs to exist at a time.
pub struct ScoredRows<'t> {
    sink: RowSink<'t>,
    k: usize,
    vals: Vec<f32>,
    idx: Vec<usize>,
    filled: Vec<usize>,
    seen: Vec<usize>,
}

impl<'t> ScoredRows<'t> {
    /// A retrieval of `rows` rows against `table`.
    pub fn new(
        table: &'t CentreTable,
        k: usize,
        wants: Wants,
        rows: usize,
    ) -> Result<Self, KernelError> {
        if k == 0 || k > table.n {
            return Err(KernelError::BadK { k, n: table.n });
        }
        Ok(ScoredRows {
            sink: RowSink::new(table, k, wants, rows),
            k,
            vals: vec![0.0; rows * k],
            idx: vec![0; rows * k],
            filled: vec![0; rows],
            seen: vec![0; rows],
        })
    }

    /// A block of scores `[r, c]` row-major: rows `first_row..` against centres
    /// `first_centre..first_centre + c`, which must be the next centres of each of those rows.
    pub fn push(
        &mut self,
        scores: &[f32],
        c: usize,
        first_row: usize,
        first_centre: usize,
    ) -> Result<(), KernelError> {
        let n = self.sink.table.n;
        let bad = || KernelError::BadQuery {
            len: scores.len(),
            d: c,
        };
        if c == 0 || !scores.len().is_multiple_of(c) || first_centre + c > n {
            return Err(bad());
        }
        let r = scores.len() / c;
        if first_row + r > self.filled.len() {
            return Err(bad());
        }
        if self.seen[first_row..first_row + r]
            .iter()
            .any(|&seen| seen != first_centre)
        {
            return Err(bad());
        }
        let k = self.k;
        for (j, s) in scores.chunks_exact(c).enumerate() {
            let row = first_row + j;
            self.filled[row] = top_k_from(
                s,
                first_centre,
                &mut self.vals[row * k..(row + 1) * k],
                &mut self.idx[row * k..(row + 1) * k],
                self.filled[row],
            );
            self.seen[row] += c;
        }
        Ok(())
    }

    /// The retrieval of every row; an error if a row has not seen every centre.
    pub fn finish(mut self) -> Result<Retrieved, KernelError> {
        let (n, k) = (self.sink.table.n, self.k);
        for row in 0..self.filled.len() {
            if self.seen[row] != n {
                return Err(KernelError::BadQuery {
                    len: self.seen[row],
                    d: n,
                });
            }
            self.sink
                .vals
                .copy_from_slice(&self.vals[row * k..(row + 1) * k]);
            self.sink
                .idx
                .copy_from_slice(&self.idx[row * k..(row + 1) * k]);
            self.sink.emit(row);
        }
        Ok(self.sink.out)
    }
}

/// The per-row part of the retrieval: top K of a row of scores, then what `wants` asks for.
struct RowSink<'t> {
    table: &'t CentreTable,
    wants: Wants,
    out: Retrieved,
    vals: Vec<f32>,
    idx: Vec<usize>,
    w: Vec<f32>,
}

impl<'t> RowSink<'t> {
    fn new(table: &'t CentreTable, k: usize, wants: Wants, b: usize) -> Self {
        let d = table.d;
        let mut out = Retrieved::default();
        if wants.values {
            out.values = Vec::with_capacity(b * k);
        }
        if wants.indices {
            out.indices = Vec::with_capacity(b * k);
        }
        if wants.keep {
            out.keep = Vec::with_capacity(b * k);
        }
        if wants.weights {
            out.weights = Vec::with_capacity(b * k);
        }
        if wants.sum {
            out.sum = vec![0.0; b * d];
        }
        if wants.gathered {
            out.gathered = Vec::with_capacity(b * k * d);
        }
        RowSink {
            table,
            wants,
            out,
            vals: vec![0.0; k],
            idx: vec![0; k],
            w: vec![0.0; k],
        }
    }

    fn push(&mut self, scores: &[f32], row: usize) {
        let filled = top_k(scores, &mut self.vals, &mut self.idx);
        debug_assert_eq!(filled, self.vals.len());
        self.emit(row);
    }

    /// The outputs of `row` from its top K in `vals` / `idx` (all K slots filled).
    fn emit(&mut self, row: usize) {
        let (table, wants, out) = (self.table, self.wants, &mut self.out);
        let (vals, idx, w) = (&self.vals, &self.idx, &mut self.w);
        let d = table.d;
        if wants.values {
            out.values.extend_from_slice(vals);
        }
        if wants.indices {
            out.indices.extend(idx.iter().map(|&i| i as i64));
        }
        if wants.keep {
            out.keep
                .extend(vals.iter().map(|&v| if v > 0.0 { 1.0 } else { 0.0 }));
        }
        if wants.gathered {
            for &i in idx.iter() {
                out.gathered
                    .extend_from_slice(&table.rows[i * d..(i + 1) * d]);
            }
        }
        if wants.weights || wants.sum {
            // Kept scores are a prefix (the values are sorted); the first one is the maximum.
            let kept = vals.iter().take_while(|&&v| v > 0.0).count();
            w.iter_mut().for_each(|x| *x = 0.0);
            if kept > 0 {
                let m = vals[0];
                let mut total = 0.0f32;
                for (wk, &v) in w.iter_mut().zip(vals.iter()).take(kept) {
                    *wk = (v - m).exp();
                    total += *wk;
                }
                for wk in w.iter_mut().take(kept) {
                    *wk /= total;
                }
            }
            if wants.weights {
                out.weights.extend_from_slice(w);
            }
            if wants.sum {
                let acc = &mut out.sum[row * d..(row + 1) * d];
                for (&wk, &i) in w.iter().zip(idx.iter()).take(kept) {
                    for (a, &m) in acc.iter_mut().zip(&table.rows[i * d..(i + 1) * d]) {
                        *a += wk * m;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Wants = Wants {
        values: true,
        indices: true,
        keep: true,
        weights: true,
        sum: true,
        gathered: true,
    };

    /// The scores `q · Mᵀ` `[B, N]` of queries `q` `[B, d]`, each summed from 0 in `j` order.
    fn scores(table: &CentreTable, q: &[f32]) -> Vec<f32> {
        let (n, d) = (table.n, table.d);
        q.chunks_exact(d)
            .flat_map(|row| {
                (0..n).map(move |i| {
                    (0..d).fold(0.0f32, |acc, j| acc + row[j] * table.rows[i * d + j])
                })
            })
            .collect()
    }

    /// The kernel on the scores of queries `q`.
    fn retrieve(table: &CentreTable, k: usize, q: &[f32]) -> Retrieved {
        retrieve_scored(table, k, &scores(table, q), ALL).expect("kernel")
    }

    /// The reference: full scores, a stable sort (ties → lower index), the masked softmax.
    fn naive(table: &CentreTable, k: usize, q: &[f32]) -> Retrieved {
        let (n, d) = (table.n, table.d);
        let mut out = Retrieved::default();
        let all = scores(table, q);
        for s in all.chunks_exact(n) {
            let mut order: Vec<usize> = (0..n).collect();
            // Stable: equal scores keep index order.
            order.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap_or(Ordering::Equal));
            let top = &order[..k];
            let kept: Vec<bool> = top.iter().map(|&i| s[i] > 0.0).collect();
            let m = top
                .iter()
                .zip(&kept)
                .filter(|(_, &k)| k)
                .map(|(&i, _)| s[i])
                .fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = top
                .iter()
                .zip(&kept)
                .map(|(&i, &k)| if k { (s[i] - m).exp() } else { 0.0 })
                .collect();
            let z: f32 = e.iter().sum();
            let w: Vec<f32> = e
                .iter()
                .map(|x| if z > 0.0 { x / z } else { 0.0 })
                .collect();
            for (slot, &i) in top.iter().enumerate() {
                out.values.push(s[i]);
                out.indices.push(i as i64);
                out.keep.push(if kept[slot] { 1.0 } else { 0.0 });
                out.weights.push(w[slot]);
                out.gathered
                    .extend_from_slice(&table.rows[i * d..(i + 1) * d]);
            }
            for j in 0..d {
                out.sum.push(
                    top.iter()
                        .zip(&w)
                        .map(|(&i, &wk)| wk * table.rows[i * d + j])
                        .sum(),
                );
            }
        }
        out
    }

    fn transpose(rows: &[f32], n: usize, d: usize) -> Vec<f32> {
        let mut cols = vec![0.0; n * d];
        for i in 0..n {
            for j in 0..d {
                cols[j * n + i] = rows[i * d + j];
            }
        }
        cols
    }

    /// A deterministic xorshift generator of values in [-1, 1).
    fn rng(seed: u64) -> impl FnMut() -> f32 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-6 + 1e-5 * y.abs())
    }

    fn check(table: &CentreTable, k: usize, q: &[f32]) -> Retrieved {
        let got = retrieve(table, k, q);
        let want = naive(table, k, q);
        assert_eq!(got.indices, want.indices);
        assert_eq!(got.keep, want.keep);
        assert!(close(&got.values, &want.values), "{got:?} {want:?}");
        assert!(close(&got.weights, &want.weights), "{got:?} {want:?}");
        assert!(close(&got.sum, &want.sum), "{got:?} {want:?}");
        assert_eq!(got.gathered, want.gathered);
        assert!(got.weights.iter().chain(&got.sum).all(|x| x.is_finite()));
        got
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        // Rows 1, 2 and 4 are equal; row 0 is the best.
        let rows = vec![
            3.0, 0.0, //
            1.0, 1.0, //
            1.0, 1.0, //
            -1.0, 0.0, //
            1.0, 1.0,
        ];
        let t = CentreTable::from_rows(5, 2, rows).expect("table");
        let got = check(&t, 3, &[1.0, 1.0]);
        assert_eq!(got.indices, vec![0, 1, 2]);
        let got = check(&t, 4, &[0.0, 1.0]);
        // Scores 0, 1, 1, 0, 1: the three ones (lower index first), then the first zero.
        assert_eq!(got.indices, vec![1, 2, 4, 0]);
        assert_eq!(got.keep, vec![1.0, 1.0, 1.0, 0.0]);
        // All-equal scores.
        let t = CentreTable::from_rows(4, 1, vec![2.0; 4]).expect("table");
        assert_eq!(check(&t, 2, &[1.0]).indices, vec![0, 1]);
        assert_eq!(check(&t, 2, &[-1.0]).indices, vec![0, 1]);
    }

    #[test]
    fn nothing_kept_gives_zero_weights_and_sum() {
        let t = CentreTable::from_rows(3, 2, vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]).expect("table");
        for q in [[-1.0, -1.0], [0.0, 0.0]] {
            let got = check(&t, 2, &q);
            assert_eq!(got.keep, vec![0.0, 0.0]);
            assert_eq!(got.weights, vec![0.0, 0.0]);
            assert_eq!(got.sum, vec![0.0, 0.0]);
        }
        let zeros = CentreTable::from_rows(4, 3, vec![0.0; 12]).expect("table");
        let got = check(&zeros, 3, &[1.0, 2.0, 3.0, -1.0, 0.5, 0.0]);
        assert_eq!(got.indices, vec![0, 1, 2, 0, 1, 2]);
        assert!(got.weights.iter().chain(&got.sum).all(|&x| x == 0.0));
    }

    #[test]
    fn k_equal_to_n_and_partial_keep() {
        let t = CentreTable::from_rows(3, 2, vec![1.0, 0.0, -2.0, 0.0, 0.5, 0.0]).expect("table");
        let got = check(&t, 3, &[1.0, 7.0]);
        assert_eq!(got.indices, vec![0, 2, 1]);
        assert_eq!(got.keep, vec![1.0, 1.0, 0.0]);
        assert!((got.weights.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(got.weights[2], 0.0);
        assert_eq!(
            retrieve_scored(&t, 4, &[1.0, 0.0, 2.0], ALL),
            Err(KernelError::BadK { k: 4, n: 3 })
        );
        assert_eq!(
            retrieve_scored(&t, 0, &[1.0, 0.0, 2.0], ALL),
            Err(KernelError::BadK { k: 0, n: 3 })
        );
        assert!(retrieve_scored(&t, 1, &[1.0, 0.0], ALL).is_err());
        assert!(CentreTable::from_rows(2, 2, vec![1.0]).is_err());
        assert!(CentreTable::from_transposed(2, 2, vec![1.0]).is_err());
        assert!(CentreTable::from_rows(0, 2, vec![]).is_err());
    }

    #[test]
    fn random_tables_match_the_reference() {
        let mut next = rng(0x9E37_79B9_7F4A_7C15);
        for (n, d, k, b) in [(7, 6, 3, 5), (256, 32, 3, 9), (256, 8, 8, 17), (9, 4, 9, 3)] {
            let rows: Vec<f32> = (0..n * d).map(|_| next()).collect();
            let t = CentreTable::from_rows(n, d, rows.clone()).expect("table");
            let q: Vec<f32> = (0..b * d).map(|_| next()).collect();
            check(&t, k, &q);
            // Both layouts give the same table.
            let tt = CentreTable::from_transposed(d, n, transpose(&rows, n, d)).expect("table");
            assert_eq!(tt, t);
        }
        // Empty batch.
        let t = CentreTable::from_rows(2, 1, vec![1.0, 2.0]).expect("table");
        assert_eq!(retrieve(&t, 1, &[]), Retrieved::default());
    }

    #[test]
    fn lane_chunk_boundaries() {
        let mut next = rng(0xD1B5_4A32_D192_ED03);
        // N around the lane chunk width, K from 1 to N.
        for n in [1, 2, 7, 8, 9, 15, 16, 17, 33] {
            for d in [1, 3, 8] {
                let rows: Vec<f32> = (0..n * d).map(|_| next()).collect();
                let t = CentreTable::from_rows(n, d, rows).expect("table");
                for b in [1, 3, 4, 5, 8, 9] {
                    let q: Vec<f32> = (0..b * d).map(|_| next()).collect();
                    for k in [1, n.div_ceil(2), n] {
                        let got = check(&t, k, &q);
                        assert_eq!(got.indices.len(), b * k);
                    }
                }
            }
        }
    }

    #[test]
    fn ties_across_lane_chunks() {
        // Centre 3 is repeated at 7, 8 (first of the second lane chunk), 16 and 19 (the partial
        // last chunk); it is the best centre for the query, so the top 5 are exactly those, in
        // index order, in every row.
        let (n, d) = (20, 4);
        let mut next = rng(7);
        let mut rows: Vec<f32> = (0..n * d).map(|_| next() * 0.1).collect();
        let best = [2.0, -1.0, 0.5, 3.0];
        for i in [3, 7, 8, 16, 19] {
            rows[i * d..(i + 1) * d].copy_from_slice(&best);
        }
        let t = CentreTable::from_rows(n, d, rows).expect("table");
        let q: Vec<f32> = (0..6).flat_map(|_| [1.0, -1.0, 1.0, 1.0]).collect();
        let got = check(&t, 5, &q);
        for row in got.indices.chunks_exact(5) {
            assert_eq!(row, [3, 7, 8, 16, 19]);
        }
        // K = N with every centre equal: the identity order, all kept, uniform weights.
        let t = CentreTable::from_rows(n, d, best.repeat(n)).expect("table");
        let got = check(&t, n, &q[..2 * d]);
        let ids: Vec<i64> = (0..n as i64).chain(0..n as i64).collect();
        assert_eq!(got.indices, ids);
        assert!(got
            .weights
            .iter()
            .all(|&w| (w - 1.0 / n as f32).abs() < 1e-6));
    }

    /// Scores fed in blocks of rows × chunks of centres equal one pass over whole rows, bit for
    /// bit, ties across chunk boundaries included; pushes out of order or past the end, and an
    /// unfinished row, are errors.
    #[test]
    fn scored_rows_in_blocks_equal_whole_rows() {
        let mut next = rng(0xB10C);
        for (n, d, k, b) in [(100, 4, 3, 9), (64, 2, 8, 5), (33, 3, 33, 4), (50, 1, 1, 7)] {
            let rows: Vec<f32> = (0..n * d).map(|_| next()).collect();
            let t = CentreTable::from_rows(n, d, rows).expect("table");
            // Scores on a coarse grid: many exact ties, also across chunks.
            let scores: Vec<f32> = (0..b * n).map(|_| (next() * 3.0).round()).collect();
            let want = retrieve_scored(&t, k, &scores, ALL).expect("whole rows");
            for (chunk, block) in [(n, b), (7, 2), (1, 1), (16, 3)] {
                let mut acc = ScoredRows::new(&t, k, ALL, b).expect("new");
                let mut first = 0;
                while first < n {
                    let c = chunk.min(n - first);
                    let mut r0 = 0;
                    while r0 < b {
                        let r1 = (r0 + block).min(b);
                        let part: Vec<f32> = (r0..r1)
                            .flat_map(|r| scores[r * n + first..r * n + first + c].to_vec())
                            .collect();
                        acc.push(&part, c, r0, first).expect("push");
                        r0 = r1;
                    }
                    first += c;
                }
                assert_eq!(
                    acc.finish().expect("finish"),
                    want,
                    "chunk {chunk} block {block}"
                );
            }
        }
        let t = CentreTable::from_rows(4, 1, vec![1.0, 2.0, 3.0, 4.0]).expect("table");
        let mut acc = ScoredRows::new(&t, 2, ALL, 2).expect("new");
        assert!(
            acc.push(&[1.0, 2.0], 2, 0, 2).is_err(),
            "centres 2.. before 0.."
        );
        assert!(
            acc.push(&[1.0, 2.0, 3.0], 2, 0, 0).is_err(),
            "not whole rows"
        );
        assert!(
            acc.push(&[1.0, 2.0, 3.0, 4.0], 2, 1, 0).is_err(),
            "past the last row"
        );
        assert!(
            acc.push(&[1.0; 5], 5, 0, 0).is_err(),
            "past the last centre"
        );
        acc.push(&[1.0, 2.0, 3.0, 4.0], 2, 0, 0)
            .expect("first half of both rows");
        assert!(acc.finish().is_err(), "rows missing centres 2..4");
        assert!(ScoredRows::new(&t, 0, ALL, 1).is_err());
        assert!(ScoredRows::new(&t, 5, ALL, 1).is_err());
    }

    #[test]
    fn all_scores_non_positive() {
        // Every score ≤ 0 (negative query on a non-negative table, and a zero query): nothing
        // kept, zero weights and sums, the top K still the K largest scores, ties by index.
        let mut next = rng(11);
        let (n, d) = (21, 5);
        let rows: Vec<f32> = (0..n * d).map(|_| next().abs()).collect();
        let t = CentreTable::from_rows(n, d, rows).expect("table");
        let mut q: Vec<f32> = (0..5 * d).map(|_| -next().abs()).collect();
        q.extend(std::iter::repeat_n(0.0, d));
        let got = check(&t, 4, &q);
        assert!(got.keep.iter().all(|&k| k == 0.0));
        assert!(got.weights.iter().chain(&got.sum).all(|&x| x == 0.0));
        assert!(got.values.iter().all(|&v| v <= 0.0));
        assert_eq!(&got.indices[20..], [0, 1, 2, 3]);
    }
}

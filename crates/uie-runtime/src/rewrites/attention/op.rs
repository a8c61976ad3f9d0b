//! The fused target attention over gathered table rows: the behaviour-sequence attention `seq`
//! of `docs/model.md` §2 (with UCSE's masked history sum, §5) and UCSE's attention over the kept
//! centres, as one kernel in plain Rust ([`attend`]) and one tract op ([`UieAttention`]).
//!
//! For every batch row `n`, with `L` indices `ids[n, ·]`, a mask `m[n, ·]` and a query `q[n]`:
//!
//! ```text
//! r_j = ids[n, j] mod B      (Index::Modulo(B): B > 0, the result in 0..B)   or ids[n, j] (Direct)
//! m_j = 1[j < len[n]]        (Mask::Length: len f32 [N, 1])                  or mask[n, j] (Explicit)
//! s_j = (T[r_j] · q) · scale
//! a   = softmax_j(s_j·m_j + (m_j − 1)·F) · m          (F the graph's fill, e.g. 1e9)
//! pooled     = Σ_j a_j · T[r_j]
//! masked_sum = Σ_j m_j · T[r_j]
//! ```
//!
//! exactly the formulas of the standard sub-graph (`Mod` → `Gather` `[N, L, d]` → batched MatMul
//! scores → masked softmax → batched MatMul pooling), computed one batch row at a time: the
//! gathered rows are read from the table in place (no `[N, L, d]` tensor), the scores and mask
//! of one row live in an `L`-long scratch. An index outside the table is an error (the standard
//! `Gather` fails on it too); the pattern only builds `Modulo(B)` with `B ≤` the table's rows.

use std::sync::Arc;

use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
use tract_onnx::tract_core::internal::*;

use crate::rewrites::values;

/// Below this, `exp` is exactly 0 in f32 (the smallest subnormal is `e^−103.3`).
const EXP_UNDERFLOW: f32 = -110.0;

/// Errors of the kernel: inputs that do not fit the table or each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttentionError {
    /// The table's data length disagrees with its shape, or its width is 0.
    #[error("row table: {0}")]
    BadTable(String),
    /// An input's length disagrees with the batch, `L` or `d`.
    #[error("{what}: {len} values, expected {expected}")]
    BadInput {
        /// The input.
        what: &'static str,
        /// Values given.
        len: usize,
        /// Values expected.
        expected: usize,
    },
    /// A row index outside the table.
    #[error("index {index} is outside the table's {rows} rows")]
    OutOfRange {
        /// The (reduced) index.
        index: i64,
        /// Table rows.
        rows: usize,
    },
}

/// How the indices become table rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Index {
    /// `id mod B` with the sign of `B` (ONNX `Mod`, `fmod = 0`), `B > 0`.
    Modulo(i64),
    /// The index as given.
    Direct,
}

/// Where the mask comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mask {
    /// `m_j = 1[(j as f32) < len[n]]` from a length input f32 `[N, 1]`.
    Length,
    /// `m_j = mask[n, j]` from a mask input f32 `[N, L]`.
    Explicit,
}

/// The constant parameters of one fused attention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    /// Index rule.
    pub index: Index,
    /// Mask rule.
    pub mask: Mask,
    /// Score scale (`1/sqrt(d)` in the graph).
    pub scale: f32,
    /// The masked-softmax fill `F`.
    pub fill: f32,
}

/// One batch of inputs for [`attend`], row-major.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Rows `N`.
    pub n: usize,
    /// Indices per row `L`.
    pub l: usize,
    /// `ids` `[N, L]`.
    pub ids: &'a [i64],
    /// `len` `[N]` (Mask::Length) or `mask` `[N, L]` (Mask::Explicit).
    pub mask: &'a [f32],
    /// `query` `[N, d]`.
    pub query: &'a [f32],
}

/// What [`attend`] returns, each `[N, d]` when asked for (else empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attended {
    /// `Σ_j a_j · T[r_j]`.
    pub pooled: Vec<f32>,
    /// `Σ_j m_j · T[r_j]`.
    pub masked_sum: Vec<f32>,
}

fn check(what: &'static str, len: usize, expected: usize) -> Result<(), AttentionError> {
    if len == expected {
        Ok(())
    } else {
        Err(AttentionError::BadInput {
            what,
            len,
            expected,
        })
    }
}

/// `Σ_k a_k·b_k` in eight independent lanes (so it vectorises; the order of the additions differs
/// from a sequential sum by rounding only).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ac, ar) = a.split_at(a.len() - a.len() % 8);
    let (bc, br) = b.split_at(ac.len().min(b.len()));
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for ((l, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *l += x * y;
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
        + tail
}

/// The fused attention over rows of `table` (`[rows, d]` row-major) for a batch; computes
/// `pooled` and/or `masked_sum` as asked.
pub fn attend(
    table: &[f32],
    d: usize,
    spec: &Spec,
    batch: &Batch,
    want_pooled: bool,
    want_masked_sum: bool,
) -> Result<Attended, AttentionError> {
    if d == 0 || !table.len().is_multiple_of(d) {
        return Err(AttentionError::BadTable(format!(
            "{} values are not rows of width {d}",
            table.len()
        )));
    }
    let (n, l) = (batch.n, batch.l);
    check("ids", batch.ids.len(), n * l)?;
    check("query", batch.query.len(), n * d)?;
    match spec.mask {
        Mask::Length => check("length", batch.mask.len(), n)?,
        Mask::Explicit => check("mask", batch.mask.len(), n * l)?,
    }
    let mut out = Attended {
        pooled: if want_pooled {
            vec![0.0; n * d]
        } else {
            vec![]
        },
        masked_sum: if want_masked_sum {
            vec![0.0; n * d]
        } else {
            vec![]
        },
    };
    // Widths common in the models run [`rows_fixed`] (rows as `[f32; D]` arrays, accumulators in
    // registers, so the row loops vectorise); any other width runs [`rows_pass`], the same
    // computation on slices.
    match d {
        4 => rows_fixed::<4>(table, spec, batch, &mut out),
        8 => rows_fixed::<8>(table, spec, batch, &mut out),
        16 => rows_fixed::<16>(table, spec, batch, &mut out),
        32 => rows_fixed::<32>(table, spec, batch, &mut out),
        _ => rows_pass(table, d, spec, batch, &mut out),
    }?;
    Ok(out)
}

/// The per-row passes of [`attend`] (inputs already checked) for any row width `d`.
fn rows_pass(
    table: &[f32],
    d: usize,
    spec: &Spec,
    batch: &Batch,
    out: &mut Attended,
) -> Result<(), AttentionError> {
    let rows = table.len() / d;
    let (n, l) = (batch.n, batch.l);
    let want_pooled = !out.pooled.is_empty();
    let want_masked_sum = !out.masked_sum.is_empty();
    // One row of scratch: the table offsets, the mask and the logits (then the weights).
    let mut offs = vec![0usize; l];
    let mut ms = vec![0f32; l];
    let mut zs = vec![0f32; l];
    for b in 0..n {
        let q = &batch.query[b * d..(b + 1) * d];
        let ids = &batch.ids[b * l..(b + 1) * l];
        for j in 0..l {
            let r = match spec.index {
                // Ids already in 0..m (the usual case) skip the 64-bit division.
                Index::Modulo(m) if (0..m).contains(&ids[j]) => ids[j],
                Index::Modulo(m) => ids[j].rem_euclid(m),
                Index::Direct => ids[j],
            };
            let off = usize::try_from(r)
                .ok()
                .filter(|&r| r < rows)
                .ok_or(AttentionError::OutOfRange { index: r, rows })?
                * d;
            offs[j] = off;
            ms[j] = match spec.mask {
                Mask::Length => f32::from(u8::from((j as f32) < batch.mask[b])),
                Mask::Explicit => batch.mask[b * l + j],
            };
        }
        let mut max = f32::NEG_INFINITY;
        for j in 0..l {
            let row = &table[offs[j]..offs[j] + d];
            let m = ms[j];
            if want_masked_sum {
                let acc = &mut out.masked_sum[b * d..(b + 1) * d];
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a += m * x;
                }
            }
            if want_pooled {
                let s = dot(row, q) * spec.scale;
                let z = s * m + (m - 1.0) * spec.fill;
                zs[j] = z;
                max = max.max(z);
            }
        }
        if !want_pooled {
            continue;
        }
        let mut sum = 0f32;
        for z in zs.iter_mut() {
            let x = *z - max;
            let e = if x < EXP_UNDERFLOW { 0.0 } else { x.exp() };
            *z = e;
            sum += e;
        }
        let acc = &mut out.pooled[b * d..(b + 1) * d];
        for j in 0..l {
            let w = zs[j] / sum * ms[j];
            if w == 0.0 {
                // 0 · row adds nothing (the table is finite: the pattern checks it).
                continue;
            }
            let row = &table[offs[j]..offs[j] + d];
            for (a, &x) in acc.iter_mut().zip(row) {
                *a += w * x;
            }
        }
    }
    Ok(())
}

/// [`rows_pass`] for a row width `D` known at compile time: table rows, queries and
/// accumulators are `[f32; D]` arrays. Same formulas, same order of operations per value.
fn rows_fixed<const D: usize>(
    table: &[f32],
    spec: &Spec,
    batch: &Batch,
    out: &mut Attended,
) -> Result<(), AttentionError> {
    let (rows, _) = table.as_chunks::<D>();
    let (queries, _) = batch.query.as_chunks::<D>();
    let n_rows = rows.len();
    let l = batch.l;
    let want_pooled = !out.pooled.is_empty();
    let want_masked_sum = !out.masked_sum.is_empty();
    let mut idx = vec![0usize; l];
    let mut ms = vec![0f32; l];
    let mut zs = vec![0f32; l];
    for (b, q) in queries.iter().enumerate().take(batch.n) {
        let ids = &batch.ids[b * l..(b + 1) * l];
        for j in 0..l {
            let r = match spec.index {
                // Ids already in 0..m (the usual case) skip the 64-bit division.
                Index::Modulo(m) if (0..m).contains(&ids[j]) => ids[j],
                Index::Modulo(m) => ids[j].rem_euclid(m),
                Index::Direct => ids[j],
            };
            idx[j] = usize::try_from(r).ok().filter(|&r| r < n_rows).ok_or(
                AttentionError::OutOfRange {
                    index: r,
                    rows: n_rows,
                },
            )?;
            ms[j] = match spec.mask {
                Mask::Length => f32::from(u8::from((j as f32) < batch.mask[b])),
                Mask::Explicit => batch.mask[b * l + j],
            };
        }
        let mut msum = [0f32; D];
        let mut max = f32::NEG_INFINITY;
        for j in 0..l {
            let row = &rows[idx[j]];
            let m = ms[j];
            if want_masked_sum {
                for (a, &x) in msum.iter_mut().zip(row) {
                    *a += m * x;
                }
            }
            if want_pooled {
                let s = dot(row, q) * spec.scale;
                let z = s * m + (m - 1.0) * spec.fill;
                zs[j] = z;
                max = max.max(z);
            }
        }
        if want_masked_sum {
            out.masked_sum[b * D..(b + 1) * D].copy_from_slice(&msum);
        }
        if !want_pooled {
            continue;
        }
        let mut sum = 0f32;
        for z in zs.iter_mut() {
            let x = *z - max;
            let e = if x < EXP_UNDERFLOW { 0.0 } else { x.exp() };
            *z = e;
            sum += e;
        }
        let mut acc = [0f32; D];
        for j in 0..l {
            let w = zs[j] / sum * ms[j];
            if w == 0.0 {
                // 0 · row adds nothing (the table is finite: the pattern checks it).
                continue;
            }
            for (a, &x) in acc.iter_mut().zip(&rows[idx[j]]) {
                *a += w * x;
            }
        }
        out.pooled[b * D..(b + 1) * D].copy_from_slice(&acc);
    }
    Ok(())
}

/// One value of the standard sub-graph the fused op stands in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttentionOutput {
    /// The attention's pooled rows `[N, d]`.
    Pooled,
    /// The masked sum of the rows `[N, d]` (UCSE's history sum).
    MaskedSum,
}

/// The fused attention as a tract op. Inputs: `ids` i64 `[N, L]`, the length f32 `[N, 1]` or
/// mask f32 `[N, L]` (per [`Spec::mask`]), the query f32 `[N, d]`; one output per
/// [`AttentionOutput`] it was built with, in that order. No declutter or codegen rule of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct UieAttention {
    /// The row table `[rows, d]` f32 (the graph's constant, shared).
    pub table: Arc<Tensor>,
    /// Constant parameters.
    pub spec: Spec,
    /// The outputs, in output-slot order.
    pub outputs: Vec<AttentionOutput>,
}

impl Eq for UieAttention {}

impl UieAttention {
    fn width(&self) -> usize {
        self.table.shape().get(1).copied().unwrap_or(0)
    }
}

impl Op for UieAttention {
    fn name(&self) -> StaticName {
        "UieAttention".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "table {:?}, {:?}, outputs {:?}",
            self.table.shape(),
            self.spec,
            self.outputs
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for UieAttention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let [ids, mask, query] = inputs.as_slice() else {
            bail!("UieAttention takes 3 inputs, got {}", inputs.len());
        };
        let d = self.width();
        if ids.rank() != 2 || query.rank() != 2 || query.shape()[1] != d {
            bail!(
                "UieAttention: ids {:?} and query {:?} are not [N, L] and [N, {d}]",
                ids.shape(),
                query.shape()
            );
        }
        let (n, l) = (ids.shape()[0], ids.shape()[1]);
        let table = values::<f32>(&self.table)?;
        let ids_v = values::<i64>(ids)?;
        let mask_v = values::<f32>(mask)?;
        let query_v = values::<f32>(query)?;
        let batch = Batch {
            n,
            l,
            ids: &ids_v,
            mask: &mask_v,
            query: &query_v,
        };
        let want = |o| self.outputs.contains(&o);
        let got = attend(
            &table,
            d,
            &self.spec,
            &batch,
            want(AttentionOutput::Pooled),
            want(AttentionOutput::MaskedSum),
        )?;
        let mut got = got;
        let mut out = TVec::new();
        for o in &self.outputs {
            let data = match o {
                AttentionOutput::Pooled => std::mem::take(&mut got.pooled),
                AttentionOutput::MaskedSum => std::mem::take(&mut got.masked_sum),
            };
            let t: Tensor = ArrayD::from_shape_vec(IxDyn(&[n, d]), data)?.into();
            out.push(t.into_tvalue());
        }
        Ok(out)
    }
}

impl TypedOp for UieAttention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let [ids, mask, query] = inputs else {
            bail!("UieAttention takes 3 inputs, got {}", inputs.len());
        };
        if ids.datum_type != i64::datum_type()
            || mask.datum_type != f32::datum_type()
            || query.datum_type != f32::datum_type()
            || ids.rank() != 2
            || mask.rank() != 2
            || query.rank() != 2
        {
            bail!("UieAttention: inputs must be i64 [N, L], f32 [N, ·], f32 [N, d]");
        }
        let n = ids.shape[0].clone();
        let d = TDim::from(self.width());
        Ok(self
            .outputs
            .iter()
            .map(|_| f32::fact([n.clone(), d.clone()]))
            .collect())
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standard sub-graph's formulas, written out step by step with `[N, L, d]` tensors.
    fn reference(table: &[f32], d: usize, spec: &Spec, b: &Batch) -> (Vec<f32>, Vec<f32>) {
        let (n, l) = (b.n, b.l);
        let rows = table.len() / d;
        let mut h = vec![0f32; n * l * d];
        let mut m = vec![0f32; n * l];
        for i in 0..n {
            for j in 0..l {
                let id = b.ids[i * l + j];
                let r = match spec.index {
                    // ONNX Mod (fmod = 0): the remainder takes the divisor's sign.
                    Index::Modulo(md) => {
                        let r = id % md;
                        if r < 0 {
                            r + md
                        } else {
                            r
                        }
                    }
                    Index::Direct => id,
                } as usize;
                assert!(r < rows);
                h[(i * l + j) * d..(i * l + j + 1) * d].copy_from_slice(&table[r * d..(r + 1) * d]);
                m[i * l + j] = match spec.mask {
                    Mask::Length => {
                        if (j as f32) < b.mask[i] {
                            1.0
                        } else {
                            0.0
                        }
                    }
                    Mask::Explicit => b.mask[i * l + j],
                };
            }
        }
        let mut pooled = vec![0f32; n * d];
        let mut msum = vec![0f32; n * d];
        for i in 0..n {
            let z: Vec<f32> = (0..l)
                .map(|j| {
                    let mut dot = 0f32;
                    for k in 0..d {
                        dot += h[(i * l + j) * d + k] * b.query[i * d + k];
                    }
                    let mm = m[i * l + j];
                    dot * spec.scale * mm + (mm - 1.0) * spec.fill
                })
                .collect();
            let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = z.iter().map(|x| (x - max).exp()).collect();
            let s: f32 = e.iter().sum();
            for j in 0..l {
                let a = e[j] / s * m[i * l + j];
                for k in 0..d {
                    pooled[i * d + k] += a * h[(i * l + j) * d + k];
                    msum[i * d + k] += m[i * l + j] * h[(i * l + j) * d + k];
                }
            }
        }
        (pooled, msum)
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6 + 1e-5 * y.abs(), "{x} vs {y}");
        }
    }

    /// Runs the kernel for both outputs, checks them against [`reference`] and returns them.
    fn matches_reference(t: &[f32], d: usize, spec: &Spec, b: &Batch) -> Attended {
        let got = attend(t, d, spec, b, true, true).expect("attend");
        let (pooled, msum) = reference(t, d, spec, b);
        close(&got.pooled, &pooled);
        close(&got.masked_sum, &msum);
        got
    }

    /// A deterministic pseudo-random table `[rows, d]`.
    fn table(rows: usize, d: usize) -> Vec<f32> {
        (0..rows * d)
            .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 2.0)
            .collect()
    }

    #[test]
    fn length_mask_matches_the_reference_including_empty_and_full_rows() {
        let d = 4;
        let t = table(7, d);
        let spec = Spec {
            index: Index::Modulo(7),
            mask: Mask::Length,
            scale: 0.5,
            fill: 1e9,
        };
        let l = 5;
        let n = 6;
        let ids: Vec<i64> = vec![
            3,
            -1,
            i64::MIN,
            i64::MAX,
            700,
            0,
            1,
            2,
            3,
            4,
            -8,
            -15,
            6,
            13,
            20,
            1,
            1,
            1,
            1,
            1,
            5,
            4,
            3,
            2,
            1,
            -3,
            9,
            0,
            0,
            2,
        ];
        // hist_len: 0, L, 1, a negative, beyond L, 3.
        let len = vec![0.0, 5.0, 1.0, -2.0, 90.0, 3.0];
        let query: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.37).sin()).collect();
        let b = Batch {
            n,
            l,
            ids: &ids,
            mask: &len,
            query: &query,
        };
        let got = matches_reference(&t, d, &spec, &b);
        // Rows with nothing valid pool exactly zero.
        assert!(got.pooled[..d].iter().all(|&x| x == 0.0));
        assert!(got.pooled[3 * d..4 * d].iter().all(|&x| x == 0.0));
        // Only what is asked for is computed.
        let only = attend(&t, d, &spec, &b, true, false).expect("attend");
        assert_eq!(only.pooled, got.pooled);
        assert!(only.masked_sum.is_empty());
    }

    #[test]
    fn explicit_mask_and_single_index_rows() {
        // d = 3 runs the slice path, d = 8 the fixed-width one.
        for (d, l) in [(3usize, 1usize), (3, 4), (8, 1), (8, 4)] {
            let t = table(5, d);
            let spec = Spec {
                index: Index::Direct,
                mask: Mask::Explicit,
                scale: 1.0 / (d as f32).sqrt(),
                fill: 1e9,
            };
            let n = 3;
            let ids: Vec<i64> = (0..n * l).map(|i| (i % 5) as i64).collect();
            let mask: Vec<f32> = (0..n * l)
                .map(|i| f32::from(u8::from(i % 3 != 1)))
                .collect();
            let query: Vec<f32> = (0..n * d).map(|i| (i as f32 * 1.3).cos()).collect();
            let b = Batch {
                n,
                l,
                ids: &ids,
                mask: &mask,
                query: &query,
            };
            matches_reference(&t, d, &spec, &b);
        }
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let d = 2;
        let t = table(3, d);
        let spec = Spec {
            index: Index::Direct,
            mask: Mask::Explicit,
            scale: 1.0,
            fill: 1e9,
        };
        let q = [0.0f32; 2];
        let b = Batch {
            n: 1,
            l: 1,
            ids: &[3],
            mask: &[1.0],
            query: &q,
        };
        assert_eq!(
            attend(&t, d, &spec, &b, true, false),
            Err(AttentionError::OutOfRange { index: 3, rows: 3 })
        );
        let b = Batch { ids: &[-1], ..b };
        assert!(matches!(
            attend(&t, d, &spec, &b, true, false),
            Err(AttentionError::OutOfRange { index: -1, .. })
        ));
        let b = Batch { ids: &[0, 1], ..b };
        assert!(matches!(
            attend(&t, d, &spec, &b, true, false),
            Err(AttentionError::BadInput { what: "ids", .. })
        ));
        assert!(matches!(
            attend(&t[..5], d, &spec, &b, true, false),
            Err(AttentionError::BadTable(_))
        ));
    }
}

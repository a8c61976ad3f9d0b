//! [`UieHashedLookup`]: the hashed-embedding lookup `Gather(E, Mod(ids, H))` as one tract op.
//!
//! `uie-compile` lowers each categorical field to `Gather(embed.<field>, Mod(id, H_f))` (ONNX
//! `Mod` with `fmod = 0` on i64: the remainder takes the divisor's sign, so with `H > 0` it is
//! `id.rem_euclid(H)` in `[0, H)` — Python's `%`, the rule of `uie_model::hashing::bucket`).
//! tract expands that `Mod` into eight element-wise nodes (`Rem`, two comparisons, `And`s, `Or`,
//! `Add`, `Iff`) before the `Gather`. This op does the modulo and the row copy in one pass over the
//! ids, for every table gathered with the same rows (a field's embedding and, for the user field,
//! the UCBE table share one `Mod`).
//!
//! One input, the ids (i64, any shape `S`); one output per table, `S + [d_t]` f32, in table order.
//! Every table has at least `H` rows, so every index is in range (checked when the op is built).

use std::fmt;
use std::sync::Arc;

use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
use tract_onnx::tract_core::internal::*;

/// Errors building a lookup: a table that cannot hold every bucket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The bucket count is not positive.
    #[error("bucket count {0} is not positive")]
    BadBuckets(i64),
    /// A table's data disagrees with its shape, is empty, or has fewer rows than buckets.
    #[error("embedding table: {0}")]
    BadTable(String),
}

/// An embedding table `[rows, d]`, row-major: the graph's own constant tensor, shared (a table
/// of 10 million users is 1.3 GB; it is never copied).
#[derive(Clone, PartialEq)]
pub struct EmbeddingTable {
    rows: usize,
    d: usize,
    tensor: Arc<Tensor>,
}

impl fmt::Debug for EmbeddingTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmbeddingTable[{}, {}]", self.rows, self.d)
    }
}

impl EmbeddingTable {
    /// A table sharing a constant f32 `[rows, d]` tensor of the graph (contiguous, not empty).
    pub fn from_tensor(tensor: Arc<Tensor>) -> Result<Self, LookupError> {
        let (rows, d) = match tensor.shape() {
            &[rows, d] if rows > 0 && d > 0 => (rows, d),
            shape => {
                return Err(LookupError::BadTable(format!(
                    "shape {shape:?} is not [rows > 0, d > 0]"
                )))
            }
        };
        let len = contiguous_f32(&tensor)
            .ok_or_else(|| LookupError::BadTable("not a contiguous f32 tensor".into()))?
            .len();
        if len != rows * d {
            return Err(LookupError::BadTable(format!(
                "{len} values for [{rows}, {d}]"
            )));
        }
        Ok(EmbeddingTable { rows, d, tensor })
    }

    /// The row-major values (checked f32 and contiguous when the table was made).
    fn data(&self) -> &[f32] {
        contiguous_f32(&self.tensor).unwrap_or(&[])
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Width `d`.
    pub fn width(&self) -> usize {
        self.d
    }
}

/// The values of an f32 tensor laid out contiguously in row-major order, in place.
fn contiguous_f32(t: &Tensor) -> Option<&[f32]> {
    t.to_plain_array_view::<f32>().ok()?.to_slice()
}

/// The bucket of `id` among `buckets > 0`: ONNX `Mod` (`fmod = 0`) with a positive divisor.
pub fn bucket_of(id: i64, buckets: i64) -> usize {
    // `rem_euclid` overflows only for a divisor of -1; `buckets` is positive here.
    id.rem_euclid(buckets) as usize
}

/// Looks `ids` up in every table: `out[t]` gets `ids.len() × d_t` values, the row
/// `bucket_of(id, buckets)` of table `t` for each id in order.
pub fn lookup(
    buckets: i64,
    tables: &[Arc<EmbeddingTable>],
    ids: &[i64],
) -> Result<Vec<Vec<f32>>, LookupError> {
    if buckets <= 0 {
        return Err(LookupError::BadBuckets(buckets));
    }
    let mut out: Vec<Vec<f32>> = tables
        .iter()
        .map(|t| Vec::with_capacity(ids.len() * t.d))
        .collect();
    let data: Vec<&[f32]> = tables.iter().map(|t| t.data()).collect();
    for &id in ids {
        let row = bucket_of(id, buckets);
        for ((o, t), data) in out.iter_mut().zip(tables).zip(&data) {
            let src = data.get(row * t.d..(row + 1) * t.d).ok_or_else(|| {
                LookupError::BadTable(format!("row {row} of a {}-row table", t.rows))
            })?;
            o.extend_from_slice(src);
        }
    }
    Ok(out)
}

/// The fused lookup op.
#[derive(Debug, Clone, PartialEq)]
pub struct UieHashedLookup {
    /// `H`, the divisor of the `Mod` (positive).
    pub buckets: i64,
    /// The tables gathered with the same rows, in output order; each has at least `H` rows.
    pub tables: Vec<Arc<EmbeddingTable>>,
}

impl Eq for UieHashedLookup {}

impl UieHashedLookup {
    /// The op for `buckets` and `tables`, checking that every bucket is a row of every table.
    pub fn new(buckets: i64, tables: Vec<Arc<EmbeddingTable>>) -> Result<Self, LookupError> {
        if buckets <= 0 {
            return Err(LookupError::BadBuckets(buckets));
        }
        if tables.is_empty() {
            return Err(LookupError::BadTable("no table".into()));
        }
        for t in &tables {
            if (t.rows as u128) < buckets as u128 {
                return Err(LookupError::BadTable(format!(
                    "{} rows for {buckets} buckets",
                    t.rows
                )));
            }
        }
        Ok(UieHashedLookup { buckets, tables })
    }
}

impl Op for UieHashedLookup {
    fn name(&self) -> StaticName {
        "UieHashedLookup".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "H = {}, tables {:?}",
            self.buckets,
            self.tables
                .iter()
                .map(|t| (t.rows, t.d))
                .collect::<Vec<_>>()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for UieHashedLookup {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let [ids] = inputs.as_slice() else {
            bail!("UieHashedLookup takes one input, got {}", inputs.len());
        };
        if ids.datum_type() != i64::datum_type() {
            bail!(
                "UieHashedLookup: ids must be i64, got {:?}",
                ids.datum_type()
            );
        }
        let data = crate::rewrites::values::<i64>(ids)?;
        let outs = lookup(self.buckets, &self.tables, &data)?;
        let mut result = TVec::new();
        for (values, t) in outs.into_iter().zip(&self.tables) {
            let mut shape = ids.shape().to_vec();
            shape.push(t.d);
            let tensor: Tensor = ArrayD::from_shape_vec(IxDyn(&shape), values)?.into();
            result.push(tensor.into_tvalue());
        }
        Ok(result)
    }
}

impl TypedOp for UieHashedLookup {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let [ids] = inputs else {
            bail!("UieHashedLookup takes one input, got {}", inputs.len());
        };
        if ids.datum_type != i64::datum_type() {
            bail!("UieHashedLookup: ids must be i64, got {ids:?}");
        }
        Ok(self
            .tables
            .iter()
            .map(|t| {
                let mut shape: TVec<TDim> = ids.shape.iter().cloned().collect();
                shape.push(TDim::from(t.d));
                f32::fact(shape)
            })
            .collect())
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_onnx_mod_with_a_positive_divisor() {
        // ONNX Mod, fmod = 0: r = a % b (truncated), then + b when r and b differ in sign.
        let onnx = |a: i64, b: i64| {
            let r = a.wrapping_rem(b);
            if (r < 0 && b > 0) || (r > 0 && b < 0) {
                r + b
            } else {
                r
            }
        };
        for &b in &[1i64, 2, 7, 1000, 943, i64::MAX] {
            for &a in &[
                0i64,
                1,
                -1,
                6,
                -6,
                7,
                -7,
                123_456_789,
                -123_456_789,
                i64::MAX,
                i64::MIN,
                i64::MIN + 1,
            ] {
                assert_eq!(bucket_of(a, b) as i64, onnx(a, b), "{a} mod {b}");
                assert!(bucket_of(a, b) < b as usize);
            }
        }
        assert_eq!(
            bucket_of(i64::MIN, 7),
            uie_model::hashing::bucket(i64::MIN, 7)
        );
        assert_eq!(bucket_of(-3, 10), uie_model::hashing::bucket(-3, 10));
    }

    #[test]
    fn lookup_copies_the_bucket_rows_of_every_table() {
        let table = |rows: usize, d: usize, data: &[f32]| {
            let t = Tensor::from_shape(&[rows, d], data).expect("tensor");
            Arc::new(EmbeddingTable::from_tensor(Arc::new(t)).expect("table"))
        };
        let a = table(3, 2, &[0., 1., 10., 11., 20., 21.]);
        let b = table(4, 1, &[5., 6., 7., 8.]);
        let op = UieHashedLookup::new(3, vec![a.clone(), b.clone()]).expect("op");
        let out = lookup(op.buckets, &op.tables, &[4, -1, 0, i64::MIN]).expect("lookup");
        // 4 → 1, -1 → 2, 0 → 0, i64::MIN → rem_euclid 3 = 1.
        assert_eq!(out[0], vec![10., 11., 20., 21., 0., 1., 10., 11.]);
        assert_eq!(out[1], vec![6., 7., 5., 6.]);
        assert_eq!(
            lookup(3, std::slice::from_ref(&a), &[]).expect("empty"),
            vec![Vec::<f32>::new()]
        );
        // Every bucket must be a row of every table.
        assert!(UieHashedLookup::new(4, vec![a.clone(), b.clone()]).is_err());
        assert!(UieHashedLookup::new(0, vec![b.clone()]).is_err());
        assert!(UieHashedLookup::new(-2, vec![b]).is_err());
        assert!(UieHashedLookup::new(2, vec![]).is_err());
        // A shared graph constant: f32, rank 2, not empty; its values are not copied.
        let t = Arc::new(Tensor::from_shape(&[2, 2], &[1f32, 2., 3., 4.]).expect("tensor"));
        let shared = EmbeddingTable::from_tensor(Arc::clone(&t)).expect("f32 [2, 2]");
        assert_eq!(
            shared.data().as_ptr(),
            contiguous_f32(&t).expect("f32").as_ptr()
        );
        let bad = [
            Tensor::from_shape(&[2, 2], &[1i64, 2, 3, 4]).expect("i64"),
            Tensor::from_shape(&[1, 2, 2], &[1f32, 2., 3., 4.]).expect("rank 3"),
            Tensor::from_shape::<f32>(&[0, 2], &[]).expect("empty"),
        ];
        for t in bad {
            assert!(EmbeddingTable::from_tensor(Arc::new(t)).is_err());
        }
        assert_eq!(lookup(0, &[a], &[1]), Err(LookupError::BadBuckets(0)));
    }
}

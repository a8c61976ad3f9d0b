//! Host-side UIE math (`docs/model.md` §3–§5): the parts of UIE that the optimizer never
//! touches, computed on plain row-major `f32` matrices and fed to the dfdx graph as constants.
//!
//! - [`retrieval`]: masked top-K attention `R(query, M, K)` over a centre table (§5).
//! - [`clustering`]: stream clustering of one centre table (§4 steps 1–4), its collapse
//!   diagnostics, and k-means++ initialisation (§3 warm-up).
//! - [`memory`]: the personalised user memory `P` of UCBE (§4 step 5).
//!
//! Why host side: the centre tables and `P` are moved only by stream clustering, and retrieval over
//! them has no gradient (queries are `sg(·)`, tables are constants), so nothing here needs a tape.
//!
//! Conventions shared by every function of this module tree:
//! - a matrix is a row-major `&[f32]` plus explicit dimensions, or a [`Table`] (`rows × width`);
//! - a set of `n` vectors of a table's width is passed as `(&[f32], n)` with `len = n · width`;
//! - nothing panics on bad input: dimension mismatches, out-of-range rows, `K` outside `1..=N`
//!   and non-finite scores are [`UieError`]s, and inputs are validated before anything is mutated.

pub mod clustering;
pub mod memory;
pub mod retrieval;

pub use clustering::{
    assign, balanced_sample, histogram_diagnostics, kmeans_pp_indices, kmeans_pp_init,
    softmax_ce_loss, update_mean, update_softmax_ce, ActivityBuckets, ClusterConfig,
    ClustererState, Diagnostics, StepReport, StreamClusterer, UpdateRule,
};
pub use memory::{MemoryConfig, MemoryUpdateReport, PersonalMemory};
pub use retrieval::{retrieve, Retrieval};

use crate::error::TrainError;

/// Errors of the host-side UIE math.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UieError {
    /// A matrix or slice does not have the dimensions the operation needs.
    #[error("{what}: {message}")]
    Shape {
        /// The argument at fault.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A scalar or configuration argument is out of its valid range.
    #[error("{what}: {message}")]
    InvalidArgument {
        /// The argument at fault.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A vector, table or score is NaN or infinite.
    #[error("{what}: non-finite value")]
    NonFinite {
        /// Where the value was found.
        what: String,
    },
}

impl UieError {
    pub(crate) fn shape(what: &str, message: impl Into<String>) -> Self {
        UieError::Shape {
            what: what.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(what: &str, message: impl Into<String>) -> Self {
        UieError::InvalidArgument {
            what: what.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn non_finite(what: impl Into<String>) -> Self {
        UieError::NonFinite { what: what.into() }
    }
}

impl From<UieError> for TrainError {
    fn from(e: UieError) -> Self {
        match e {
            UieError::Shape { what, message } | UieError::InvalidArgument { what, message } => {
                TrainError::Tensor {
                    name: what,
                    message,
                }
            }
            UieError::NonFinite { what } => {
                TrainError::Diverged(format!("{what}: non-finite value"))
            }
        }
    }
}

/// A row-major `rows × width` f32 matrix: a centre table `M` (`[N, width]`) or the personalised
/// memory `P` (`[H_user, d]`). Invariant: `rows ≥ 1`, `width ≥ 1`, `data.len() = rows · width`.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    rows: usize,
    width: usize,
    data: Vec<f32>,
}

impl Table {
    /// Wraps row-major `data`; errors unless `rows ≥ 1`, `width ≥ 1` and
    /// `data.len() = rows · width`.
    pub fn new(rows: usize, width: usize, data: Vec<f32>) -> Result<Self, UieError> {
        if rows == 0 || width == 0 {
            return Err(UieError::shape(
                "table",
                format!("{rows} × {width}: rows and width must be ≥ 1"),
            ));
        }
        let numel = rows
            .checked_mul(width)
            .ok_or_else(|| UieError::shape("table", format!("{rows} × {width} overflows")))?;
        if data.len() != numel {
            return Err(UieError::shape(
                "table",
                format!("{} values for {rows} × {width}", data.len()),
            ));
        }
        Ok(Table { rows, width, data })
    }

    /// An all-zero `rows × width` table.
    pub fn zeros(rows: usize, width: usize) -> Result<Self, UieError> {
        let numel = rows
            .checked_mul(width)
            .ok_or_else(|| UieError::shape("table", format!("{rows} × {width} overflows")))?;
        Table::new(rows, width, vec![0.0; numel])
    }

    /// Number of rows (`N` for a centre table, `H_user` for `P`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row width (`d` or `d_e`).
    pub fn width(&self) -> usize {
        self.width
    }

    /// The row-major values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Consumes the table and returns its row-major values.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Row `i`, or `None` when `i ≥ rows`.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        self.data.get(i * self.width..(i + 1) * self.width)
    }

    /// Row `i` (caller guarantees `i < rows`); an empty slice otherwise, never a panic.
    pub(crate) fn row_or_empty(&self, i: usize) -> &[f32] {
        self.row(i).unwrap_or(&[])
    }

    /// Mutable row `i` (caller guarantees `i < rows`); an empty slice otherwise.
    pub(crate) fn row_mut(&mut self, i: usize) -> &mut [f32] {
        let w = self.width;
        self.data.get_mut(i * w..(i + 1) * w).unwrap_or(&mut [])
    }

    /// Mutable access to the values for in-crate updates (the shape cannot change).
    pub(crate) fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
}

/// Checks that `data` holds `n` vectors of width `width`.
pub(crate) fn check_vectors(
    what: &str,
    data: &[f32],
    n: usize,
    width: usize,
) -> Result<(), UieError> {
    match n.checked_mul(width) {
        Some(len) if len == data.len() => Ok(()),
        _ => Err(UieError::shape(
            what,
            format!("{} values for {n} vectors of width {width}", data.len()),
        )),
    }
}

/// Errors with [`UieError::NonFinite`] when any value of `data` is NaN or infinite.
pub(crate) fn check_finite(what: &str, data: &[f32]) -> Result<(), UieError> {
    match data.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(UieError::non_finite(format!("{what}[{i}]"))),
        None => Ok(()),
    }
}

/// `<a, b>`, accumulated in f32 in index order (the order a plain MatMul uses).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rejects_bad_shapes() {
        assert!(Table::new(2, 2, vec![0.0; 3]).is_err());
        assert!(Table::new(0, 2, vec![]).is_err());
        assert!(Table::new(2, 0, vec![]).is_err());
        assert!(Table::zeros(usize::MAX, 2).is_err());
        let t = Table::new(2, 2, vec![1.0, 2.0, 3.0, 4.0]).expect("table");
        assert_eq!(t.row(1), Some(&[3.0, 4.0][..]));
        assert_eq!(t.row(2), None);
    }

    #[test]
    fn uie_error_converts_to_train_error() {
        let e: TrainError = UieError::shape("queries", "bad").into();
        assert!(matches!(e, TrainError::Tensor { .. }), "{e}");
        let e: TrainError = UieError::non_finite("scores").into();
        assert!(matches!(e, TrainError::Diverged(_)), "{e}");
    }
}

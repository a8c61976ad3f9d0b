//! A batch of raw model inputs by feature name: what every engine (the trainer's forward pass,
//! the compiler's reference evaluator, tract, ONNX Runtime) is fed in parity checks, and what
//! `golden.safetensors` stores.

use std::collections::BTreeMap;

use crate::checkpoint::{golden_input_name, Tensor, TensorMap, GOLDEN_DENSE, GOLDEN_PROBS};
use crate::config::Config;
use crate::error::ModelError;

/// Raw inputs for `n` rows: one int64 id column per categorical field (unhashed: the model applies
/// `id mod buckets` itself), the raw (unnormalised) dense matrix, row-major `[n, n_dense]`, and the
/// behaviour sequence when the model has one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawBatch {
    /// Number of rows.
    pub n: usize,
    /// Field name → ids, `n` each.
    pub categorical: BTreeMap<String, Vec<i64>>,
    /// Dense values, `n * n_dense`, row-major.
    pub dense: Vec<f32>,
    /// The behaviour sequence (`hist_items`, `hist_len`), present iff the config has
    /// `[features.sequence]`.
    pub history: Option<History>,
}

/// The behaviour sequence of a batch (`uie-model.md` §1): `items` is `[n, width]` row-major, oldest
/// first, right-padded (padding values are ignored); `len[r]` leading entries of row r are real.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// `L`: entries per row (≥ 1).
    pub width: usize,
    /// Item ids, `n * width`.
    pub items: Vec<i64>,
    /// Real entries per row, each in `[0, width]`.
    pub len: Vec<i64>,
}

/// Name of the history items input (graph input and golden tensor suffix).
pub const HIST_ITEMS: &str = "hist_items";
/// Name of the history length input.
pub const HIST_LEN: &str = "hist_len";

impl RawBatch {
    /// Checks the batch against a config: every field present with `n` ids, no unknown field,
    /// `dense` of length `n * n_dense` and finite.
    pub fn check(&self, config: &Config) -> Result<(), ModelError> {
        let bad = |path: String, message: String| ModelError::InvalidConfig { path, message };
        for f in &config.features.categorical {
            match self.categorical.get(&f.name) {
                None => return Err(bad(format!("input {}", f.name), "missing".into())),
                Some(ids) if ids.len() != self.n => {
                    return Err(bad(
                        format!("input {}", f.name),
                        format!("has {} ids for {} rows", ids.len(), self.n),
                    ))
                }
                Some(_) => {}
            }
        }
        for name in self.categorical.keys() {
            if !config.features.categorical.iter().any(|f| &f.name == name) {
                return Err(bad(
                    format!("input {name}"),
                    "is not a feature of this model".into(),
                ));
            }
        }
        let d = config.features.dense.len();
        if self.dense.len() != self.n * d {
            return Err(bad(
                "input dense".into(),
                format!(
                    "has {} values for {} rows × {d} features",
                    self.dense.len(),
                    self.n
                ),
            ));
        }
        if let Some(i) = self.dense.iter().position(|v| !v.is_finite()) {
            let name = &config.features.dense[i % d.max(1)];
            return Err(bad(
                format!("input dense ({name}, row {})", i / d.max(1)),
                "is not finite".into(),
            ));
        }
        match (&config.features.sequence, &self.history) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(bad(
                    format!("input {HIST_ITEMS}"),
                    "this model has no behaviour sequence".into(),
                ))
            }
            (Some(_), None) => return Err(bad(format!("input {HIST_ITEMS}"), "missing".into())),
            (Some(_), Some(h)) => {
                if h.width == 0 {
                    return Err(bad(format!("input {HIST_ITEMS}"), "has width 0".into()));
                }
                if h.items.len() != self.n * h.width {
                    return Err(bad(
                        format!("input {HIST_ITEMS}"),
                        format!(
                            "has {} ids for {} rows × {}",
                            h.items.len(),
                            self.n,
                            h.width
                        ),
                    ));
                }
                if h.len.len() != self.n {
                    return Err(bad(
                        format!("input {HIST_LEN}"),
                        format!("has {} values for {} rows", h.len.len(), self.n),
                    ));
                }
                if let Some(r) = h.len.iter().position(|&l| l < 0 || l as usize > h.width) {
                    return Err(bad(
                        format!("input {HIST_LEN} (row {r})"),
                        format!("is {}, outside [0, {}]", h.len[r], h.width),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The rows `rows` of this batch, in that order; indices `≥ n` are skipped.
    pub fn take(&self, rows: &[usize]) -> RawBatch {
        let rows: Vec<usize> = rows.iter().copied().filter(|&r| r < self.n).collect();
        let gather = |values: &[f32], width: usize| -> Vec<f32> {
            rows.iter()
                .flat_map(|&r| values[r * width..(r + 1) * width].iter().copied())
                .collect()
        };
        let d = self.dense.len().checked_div(self.n).unwrap_or(0);
        RawBatch {
            n: rows.len(),
            categorical: self
                .categorical
                .iter()
                .map(|(k, v)| (k.clone(), rows.iter().map(|&r| v[r]).collect()))
                .collect(),
            dense: gather(&self.dense, d),
            history: self.history.as_ref().map(|h| History {
                width: h.width,
                items: rows
                    .iter()
                    .flat_map(|&r| h.items[r * h.width..(r + 1) * h.width].iter().copied())
                    .collect(),
                len: rows.iter().map(|&r| h.len[r]).collect(),
            }),
        }
    }

    /// Rows `[start, end)` of this batch.
    pub fn slice(&self, start: usize, end: usize) -> RawBatch {
        let end = end.min(self.n);
        let rows: Vec<usize> = (start.min(end)..end).collect();
        self.take(&rows)
    }

    /// The golden tensors of this batch with the producer's probabilities `[n, tasks]`.
    pub fn to_golden(&self, config: &Config, probs: &[f32]) -> TensorMap {
        let mut map = TensorMap::new();
        for (name, ids) in &self.categorical {
            map.insert(
                golden_input_name(name),
                Tensor::i64(vec![self.n], ids.clone()),
            );
        }
        let d = config.features.dense.len();
        map.insert(
            GOLDEN_DENSE.into(),
            Tensor::f32(vec![self.n, d], self.dense.clone()),
        );
        if let Some(h) = &self.history {
            map.insert(
                golden_input_name(HIST_ITEMS),
                Tensor::i64(vec![self.n, h.width], h.items.clone()),
            );
            map.insert(
                golden_input_name(HIST_LEN),
                Tensor::i64(vec![self.n], h.len.clone()),
            );
        }
        map.insert(
            GOLDEN_PROBS.into(),
            Tensor::f32(vec![self.n, config.tasks.len()], probs.to_vec()),
        );
        map
    }

    /// Reads a batch and its expected probabilities back from golden tensors.
    pub fn from_golden(
        config: &Config,
        golden: &TensorMap,
    ) -> Result<(RawBatch, Vec<f32>), ModelError> {
        let missing = |name: String| ModelError::MissingTensor {
            name,
            expected: vec![],
        };
        let probs = golden
            .get(GOLDEN_PROBS)
            .ok_or_else(|| missing(GOLDEN_PROBS.into()))?;
        let n = probs.shape.first().copied().unwrap_or(0);
        let mut batch = RawBatch {
            n,
            ..RawBatch::default()
        };
        for f in &config.features.categorical {
            let name = golden_input_name(&f.name);
            let t = golden.get(&name).ok_or_else(|| missing(name.clone()))?;
            let ids = t.as_i64().ok_or_else(|| ModelError::DtypeMismatch {
                name: name.clone(),
                expected: "i64".into(),
                found: t.dtype().to_string(),
            })?;
            batch.categorical.insert(f.name.clone(), ids.to_vec());
        }
        if let Some(t) = golden.get(GOLDEN_DENSE) {
            batch.dense = t.as_f32().unwrap_or_default().to_vec();
        }
        if config.features.sequence.is_some() {
            let items_name = golden_input_name(HIST_ITEMS);
            let len_name = golden_input_name(HIST_LEN);
            let items = golden
                .get(&items_name)
                .ok_or_else(|| missing(items_name.clone()))?;
            let len = golden
                .get(&len_name)
                .ok_or_else(|| missing(len_name.clone()))?;
            batch.history = Some(History {
                width: items.shape.get(1).copied().unwrap_or(0),
                items: items.as_i64().unwrap_or_default().to_vec(),
                len: len.as_i64().unwrap_or_default().to_vec(),
            });
        }
        batch.check(config)?;
        let p = probs.as_f32().ok_or_else(|| ModelError::DtypeMismatch {
            name: GOLDEN_PROBS.into(),
            expected: "f32".into(),
            found: probs.dtype().to_string(),
        })?;
        Ok((batch, p.to_vec()))
    }
}

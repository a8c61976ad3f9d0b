//! A batch of raw model inputs by feature name: what every engine (the trainer's forward pass,
//! the compiler's reference evaluator, tract, ONNX Runtime) is fed in parity checks, and what
//! `golden.safetensors` stores.

use std::collections::BTreeMap;

use crate::checkpoint::{golden_input_name, Tensor, TensorMap, GOLDEN_DENSE, GOLDEN_PROBS};
use crate::config::Config;
use crate::error::ModelError;

/// Raw inputs for `n` rows: one int64 id column per categorical field (unhashed: the model applies
/// `id mod buckets` itself) and the raw (unnormalised) dense matrix, row-major `[n, n_dense]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawBatch {
    /// Number of rows.
    pub n: usize,
    /// Field name → ids, `n` each.
    pub categorical: BTreeMap<String, Vec<i64>>,
    /// Dense values, `n * n_dense`, row-major.
    pub dense: Vec<f32>,
}

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
        Ok(())
    }

    /// Rows `[start, end)` of this batch.
    pub fn slice(&self, start: usize, end: usize) -> RawBatch {
        let end = end.min(self.n);
        let start = start.min(end);
        let d = self.dense.len().checked_div(self.n).unwrap_or(0);
        RawBatch {
            n: end - start,
            categorical: self
                .categorical
                .iter()
                .map(|(k, v)| (k.clone(), v[start..end].to_vec()))
                .collect(),
            dense: self.dense[start * d..end * d].to_vec(),
        }
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
        batch.check(config)?;
        let p = probs.as_f32().ok_or_else(|| ModelError::DtypeMismatch {
            name: GOLDEN_PROBS.into(),
            expected: "f32".into(),
            found: probs.dtype().to_string(),
        })?;
        Ok((batch, p.to_vec()))
    }
}

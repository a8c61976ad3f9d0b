//! A batch of raw model inputs in the graph's shape: what every engine (the trainer's forward
//! pass, the compiler's reference evaluator, tract through `uie-runtime`'s `Model::predict`, ONNX
//! Runtime) is fed, and what `golden.safetensors` stores. [`RawBatch::validate`] is the one check
//! of a request against a model's [`GraphSchema`]; [`RawBatch::from_tensors`] and
//! [`RawBatch::graph_inputs`] convert from and to the named graph-input tensors, and
//! [`RawBatch::input_views`] lends them to an engine without a copy.

use std::collections::BTreeMap;

use crate::checkpoint::{
    golden_input_name, Tensor, TensorData, TensorMap, GOLDEN_DENSE, GOLDEN_PROBS,
};
use crate::config::Config;
use crate::error::{InputError, ModelError};
use crate::graph::{GraphSchema, DENSE, HIST_ITEMS, HIST_LEN};

/// One graph input of a [`RawBatch`], borrowed ([`RawBatch::input_views`]).
#[derive(Debug, Clone, PartialEq)]
pub struct InputView<'a> {
    /// Graph input name.
    pub name: &'a str,
    /// Dims, batch first.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: ViewData<'a>,
}

/// The borrowed values of an [`InputView`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ViewData<'a> {
    /// `f32` values (the dense input).
    F32(&'a [f32]),
    /// `i64` values (ids, history items and lengths).
    I64(&'a [i64]),
}

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

/// The behaviour sequence of a batch (`docs/model.md` §1): `items` is `[n, width]` row-major, oldest
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

impl RawBatch {
    /// Checks the batch against a config: [`RawBatch::validate`] against the config's compiled
    /// schema.
    pub fn check(&self, config: &Config) -> Result<(), ModelError> {
        Ok(self.validate(&GraphSchema::from_config(config))?)
    }

    /// Checks the batch against the inputs of a model: every categorical field present with `n`
    /// ids and no other, `dense` of `n × d` finite values, and the behaviour sequence present iff
    /// the model has one, of width `L ≥ 1`, `n × L` ids and `n` lengths in `[0, L]`. This is the
    /// one check a request goes through before it reaches an engine; every error names the
    /// feature or input at fault.
    pub fn validate(&self, schema: &GraphSchema) -> Result<(), InputError> {
        for name in self.categorical.keys() {
            if !schema.categorical.iter().any(|c| &c.name == name) {
                return Err(InputError::UnknownFeature(name.clone()));
            }
        }
        let n = self.n;
        for c in &schema.categorical {
            let ids = self
                .categorical
                .get(&c.name)
                .ok_or_else(|| InputError::MissingFeature(c.name.clone()))?;
            if ids.len() != n {
                return Err(InputError::WrongLength {
                    name: c.name.clone(),
                    expected: n,
                    found: ids.len(),
                });
            }
        }
        let d = schema.dense.len();
        if d == 0 && !self.dense.is_empty() {
            return Err(InputError::UnknownFeature(DENSE.to_string()));
        }
        if n.checked_mul(d) != Some(self.dense.len()) {
            return Err(InputError::BadInput {
                name: DENSE.to_string(),
                message: format!(
                    "{} values, but the batch has {n} rows × {d} features",
                    self.dense.len()
                ),
            });
        }
        if let Some((i, &value)) = self.dense.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(InputError::NonFinite {
                name: schema.dense[i % d].clone(),
                row: i / d,
                column: i % d,
                value,
            });
        }
        let history_err = |name: &str, message: String| InputError::BadHistory {
            name: name.to_string(),
            message,
        };
        match (&schema.sequence, &self.history) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(history_err(
                HIST_ITEMS,
                "this model has no behaviour sequence".into(),
            )),
            (Some(_), None) => Err(history_err(HIST_ITEMS, "missing from the request".into())),
            (Some(_), Some(h)) => {
                if h.width == 0 {
                    return Err(history_err(HIST_ITEMS, "width L must be at least 1".into()));
                }
                if h.len.len() != n {
                    return Err(history_err(
                        HIST_LEN,
                        format!("{} values, but the batch has {n} rows", h.len.len()),
                    ));
                }
                // checked: a width near usize::MAX (a request's `hist_items` of shape [0, 2^63])
                // must not wrap `n × L` around to the number of ids given.
                if n.checked_mul(h.width) != Some(h.items.len()) {
                    return Err(history_err(
                        HIST_ITEMS,
                        format!(
                            "{} ids, but the batch has {n} rows × L = {}",
                            h.items.len(),
                            h.width
                        ),
                    ));
                }
                match h
                    .len
                    .iter()
                    .enumerate()
                    .find(|(_, &l)| l < 0 || l as u64 > h.width as u64)
                {
                    Some((row, l)) => Err(history_err(
                        HIST_LEN,
                        format!("row {row} is {l}, outside [0, {}]", h.width),
                    )),
                    None => Ok(()),
                }
            }
        }
    }

    /// A batch from named graph-input tensors (the shapes of [`GraphSchema::inputs`]), each
    /// tensor's values moved, not copied. Checks the form of every tensor: a known name given
    /// once, its element type, rank and fixed dims; the number of rows is the batch dim of the
    /// first input. [`RawBatch::validate`] checks the rest (row counts, finiteness, `hist_len`).
    pub fn from_tensors(
        schema: &GraphSchema,
        mut tensors: Vec<(String, Tensor)>,
    ) -> Result<RawBatch, InputError> {
        let specs = schema.inputs();
        for (i, (name, _)) in tensors.iter().enumerate() {
            if !specs.iter().any(|s| &s.name == name) {
                return Err(InputError::UnknownFeature(name.clone()));
            }
            if tensors[..i].iter().any(|(n, _)| n == name) {
                return Err(InputError::DuplicateFeature(name.clone()));
            }
        }
        let mut batch = RawBatch::default();
        let mut hist_items: Option<(Vec<i64>, usize)> = None;
        let mut hist_len: Option<Vec<i64>> = None;
        for (k, spec) in specs.iter().enumerate() {
            let at = tensors
                .iter()
                .position(|(n, _)| n == &spec.name)
                .ok_or_else(|| InputError::MissingFeature(spec.name.clone()))?;
            let (_, tensor) = tensors.swap_remove(at);
            let shape = &tensor.shape;
            let bad = |message: String| InputError::BadInput {
                name: spec.name.clone(),
                message,
            };
            if shape.len() != spec.dims.len() {
                return Err(bad(format!(
                    "expected rank {}, got shape {shape:?}",
                    spec.dims.len()
                )));
            }
            for (axis, (want, got)) in spec.dims.iter().zip(shape).enumerate() {
                if let Some(want) = want {
                    if want != got {
                        return Err(bad(format!(
                            "dim {axis} must be {want}, got shape {shape:?}"
                        )));
                    }
                }
            }
            if tensor.dtype() != spec.dtype {
                return Err(InputError::WrongType {
                    name: spec.name.clone(),
                    expected: spec.dtype.name(),
                    found: tensor.dtype().name(),
                });
            }
            if k == 0 {
                batch.n = shape[0];
            }
            let width = shape.get(1).copied().unwrap_or(0);
            match tensor.data {
                TensorData::I64(data) if spec.name == HIST_ITEMS => {
                    hist_items = Some((data, width))
                }
                TensorData::I64(data) if spec.name == HIST_LEN => hist_len = Some(data),
                TensorData::I64(data) => {
                    batch.categorical.insert(spec.name.clone(), data);
                }
                TensorData::F32(data) => batch.dense = data,
            }
        }
        if let (Some((items, width)), Some(len)) = (hist_items, hist_len) {
            batch.history = Some(History { width, items, len });
        }
        Ok(batch)
    }

    /// The graph inputs of the batch, borrowed, named and in graph order (see
    /// [`GraphSchema::inputs`]): what an engine copies into its own tensors, once. Run
    /// [`RawBatch::validate`] first: a field the batch lacks gives an empty input.
    pub fn input_views<'a>(&'a self, schema: &'a GraphSchema) -> Vec<InputView<'a>> {
        let n = self.n;
        let mut out: Vec<InputView<'a>> = schema
            .categorical
            .iter()
            .map(|c| {
                let ids = self.categorical.get(&c.name).map_or(&[][..], Vec::as_slice);
                InputView {
                    name: &c.name,
                    shape: vec![ids.len()],
                    data: ViewData::I64(ids),
                }
            })
            .collect();
        if !schema.dense.is_empty() {
            out.push(InputView {
                name: DENSE,
                shape: vec![n, schema.dense.len()],
                data: ViewData::F32(&self.dense),
            });
        }
        if let (Some(_), Some(h)) = (&schema.sequence, &self.history) {
            out.push(InputView {
                name: HIST_ITEMS,
                shape: vec![n, h.width],
                data: ViewData::I64(&h.items),
            });
            out.push(InputView {
                name: HIST_LEN,
                shape: vec![h.len.len()],
                data: ViewData::I64(&h.len),
            });
        }
        out
    }

    /// The graph inputs of the batch as owned tensors, named and in graph order
    /// ([`RawBatch::input_views`], copied).
    pub fn graph_inputs(&self, schema: &GraphSchema) -> Vec<(String, Tensor)> {
        self.input_views(schema)
            .into_iter()
            .map(|v| {
                let data = match v.data {
                    ViewData::F32(d) => TensorData::F32(d.to_vec()),
                    ViewData::I64(d) => TensorData::I64(d.to_vec()),
                };
                (
                    v.name.to_string(),
                    Tensor {
                        shape: v.shape,
                        data,
                    },
                )
            })
            .collect()
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_support::SMALL_UIE;

    /// Two rows for the tiny UIE config (fields user_id, movie_id, genre; dense age; history
    /// width 3).
    fn two_rows() -> (GraphSchema, RawBatch) {
        let config = Config::from_toml_str(SMALL_UIE).unwrap();
        let schema = GraphSchema::from_config(&config);
        let categorical = ["user_id", "movie_id", "genre"]
            .iter()
            .map(|f| (f.to_string(), vec![1, -2]))
            .collect();
        let batch = RawBatch {
            n: 2,
            categorical,
            dense: vec![0.5, 41.0],
            history: Some(History {
                width: 3,
                items: vec![1, 2, 0, 3, 4, 5],
                len: vec![2, 3],
            }),
        };
        (schema, batch)
    }

    #[test]
    fn graph_inputs_and_from_tensors_round_trip() {
        let (schema, batch) = two_rows();
        batch.validate(&schema).unwrap();
        let tensors = batch.graph_inputs(&schema);
        let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, schema.input_names());
        assert_eq!(tensors[3].1.shape, [2, 1]);
        assert_eq!(tensors[4].1.shape, [2, 3]);
        let mut reversed = tensors.clone();
        reversed.reverse();
        assert_eq!(RawBatch::from_tensors(&schema, reversed).unwrap(), batch);
    }

    #[test]
    fn every_refusal_names_the_input() {
        let (schema, good) = two_rows();
        let tensors = good.graph_inputs(&schema);
        type Inputs = Vec<(String, Tensor)>;
        let from = |edit: &dyn Fn(&mut Inputs)| {
            let mut t = tensors.clone();
            edit(&mut t);
            RawBatch::from_tensors(&schema, t)
                .and_then(|b| b.validate(&schema).map(|()| b))
                .unwrap_err()
                .to_string()
        };
        let cases: Vec<(String, &str)> = vec![
            (from(&|t| t.retain(|(n, _)| n != "genre")), "genre"),
            (from(&|t| t.push(t[0].clone())), "user_id"),
            (
                from(&|t| t.push(("colour".into(), Tensor::i64(vec![2], vec![0, 0])))),
                "colour",
            ),
            (
                from(&|t| t[1].1 = Tensor::f32(vec![2], vec![0.0, 0.0])),
                "movie_id: expected i64, got f32",
            ),
            (
                from(&|t| t[3].1 = Tensor::f32(vec![2, 2], vec![0.0; 4])),
                "dense: dim 1 must be 1",
            ),
            (
                from(&|t| t[5].1 = Tensor::i64(vec![2, 1], vec![0, 0])),
                "hist_len: expected rank 1",
            ),
            (
                from(&|t| t[2].1 = Tensor::i64(vec![1], vec![0])),
                "genre: 1 values, but the batch has 2 rows",
            ),
            (
                from(&|t| t[3].1 = Tensor::f32(vec![2, 1], vec![0.0, f32::NAN])),
                "input dense: row 1, column 0 (age) is NaN",
            ),
            (
                from(&|t| t[5].1 = Tensor::i64(vec![2], vec![0, 4])),
                "hist_len: row 1 is 4, outside [0, 3]",
            ),
            (
                from(&|t| t[4].1 = Tensor::i64(vec![0, 1 << 62], vec![])),
                "hist_items: 0 ids, but the batch has 2 rows",
            ),
        ];
        for (message, fragment) in cases {
            assert!(
                message.contains(fragment),
                "{fragment:?} not in {message:?}"
            );
        }
        let mut no_history = good.clone();
        no_history.history = None;
        let e = no_history.validate(&schema).unwrap_err().to_string();
        assert!(e.contains("hist_items: missing"), "{e}");
        let mut zero = good;
        zero.history = Some(History {
            width: 0,
            items: vec![],
            len: vec![0, 0],
        });
        let e = zero.validate(&schema).unwrap_err().to_string();
        assert!(e.contains("width L must be at least 1"), "{e}");
    }
}

//! The forward pass (behaviour sequence, UIE modules, PLE backbone) in dfdx on runtime-shaped
//! tensors, exactly as `docs/model.md` §2–§6 and `uie_model::schema` define it, shared by
//! training, evaluation and [`predict`] (the parity oracle). Linear: `y = x · W + b`, `W` stored
//! `[in, out]`; `sg(·)` is a stop-gradient (a fresh host constant with no tape).
//!
//! - `row_f = id_f mod H_f`; `e_f = E_f[row_f]`.
//! - `x = concat(e_f for f in plan.embeddings (user, item, context groups), (dense − mean) / std,
//!   seq, e_upe, e_ucbe, e_ucse)`, each part present only when configured.
//! - **Sequence** (§2): `H = E_item[hist_items mod H_item]` `[B, L, d_e]` (the item field's table,
//!   shared); `q = e_item_id · W_q`; `s_j = <H_j, q> / sqrt(d_e)`; `m_j = 1[j < hist_len]`;
//!   `a = softmax(s·m − (1 − m)·1e9) · m` (the mask multiplied after the softmax: `hist_len = 0`
//!   gives exactly zero, never NaN); `seq = Σ_j a_j H_j`. The main loss trains `E_item` and `W_q`.
//! - **Towers** (§3): `v_u = T_u(sg(x_user))`, `v_i = T_i(sg(x_item))` with `x_user` / `x_item` the
//!   embeddings of `plan.uie.{user,item}_tower.fields`; a tower is hidden Linear + ReLU layers then
//!   the `out` Linear to `d`. `L_aux = BCE(σ(<v_u, v_i>), y_aux)`. The main path reads only host
//!   copies `sg(v_u)`, `sg(v_i)`: the main loss never trains the towers and `L_aux` never trains
//!   the embeddings.
//! - **UPE**: `r = R(sg(v_u), M_upe, K1)` ([`crate::uie::retrieve`], host side);
//!   `e_upe = ReLU([r, sg(v_u)] · W + b)`.
//! - **UCBE**: `e_ucbe = ReLU(P[user_id mod H_user] · W + b)`.
//! - **UCSE**: `q_u` = mean of `sg(H_j)` over `j < hist_len` (f32 sum in `j` order divided by
//!   `hist_len`; zero when `hist_len = 0`); `i_k, keep_k` from `R(q_u, M_ucse, K3)`;
//!   `C = M_ucse[i_k]` `[B, K, d_e]` (constants); `t = sg(e_item_id) · W_t`;
//!   `score_k = <C_k, t> / sqrt(d_e)`; `b = softmax(score·keep − (1 − keep)·1e9) · keep`;
//!   `e_ucse = ReLU((Σ_k b_k C_k) · W + b)`.
//! - **PLE** (§6): every expert is an MLP with ReLU after every layer; a gate is
//!   `softmax(h · W + b)` over its experts in listed order and outputs `Σ_j g_j · expert_j`. Level 0
//!   feeds `x` everywhere; level `l > 0` feeds task k's experts and gate with task k's output of
//!   level `l − 1`, and the shared experts and gate with the shared output. Tower k: hidden
//!   Linear + ReLU layers, then the `out` Linear to one logit; `probs = sigmoid(logit)`.
//!
//! Memory tables (`Role::Memory`: `memory.upe`, `memory.ucbe`, `memory.ucse`, `memory.personal`)
//! live host side in [`DeviceParams`] and enter the graph only as constants: they never get a
//! gradient and are not [`trainable`]. [`stream`] moves them during training.
//!
//! dfdx tapes are owned by tensors, so a value used by several consumers (the level input, an
//! expert output, a gate) has its tape moved into a [`Sink`] and each consumer gets a copy with the
//! same tensor id and an empty tape; the sink's tape is merged back into the loss before
//! `backward`. With `NoneTape` (inference) all of this is free.

pub(crate) mod stream;
#[cfg(test)]
mod uie_tests;

use std::collections::BTreeMap;
use std::time::Instant;

use dfdx::losses::binary_cross_entropy_with_logits_loss;
use dfdx::shapes::{Axis, HasShape, Rank0, Shape};
use dfdx::tensor::{
    AsArray, Cpu, Gradients, Merge, NoneTape, OwnedTape, PutTape, SplitTape, Tape, Tensor,
    TensorFromVec,
};
use dfdx::tensor_ops::{Backward, BroadcastTo, GatherTo, SelectTo, TryConcatAlong, TryMatMul};
use dfdx::tensor_ops::{ReshapeTo, SumTo};
use rand::RngExt;
use uie_model::graph::{HIST_ITEMS, PROBS};
use uie_model::hashing::bucket;
use uie_model::schema::{
    AuxTower, Dtype, Owner, Role, SequencePlan, UiePlan, DENSE_MEAN, DENSE_STD, MEMORY_PERSONAL,
};
use uie_model::{Checkpoint, Config, Plan, RawBatch, TensorMap};

use crate::data::Dataset;
use crate::error::TrainError;
use crate::metrics::{self, TaskMetrics};
use crate::rng;
use crate::uie::{retrieve, Table};

type Mat<T = NoneTape> = Tensor<(usize, usize), f32, Cpu, T>;
type Vec1<T = NoneTape> = Tensor<(usize,), f32, Cpu, T>;
type Cube<T = NoneTape> = Tensor<(usize, usize, usize), f32, Cpu, T>;

/// The large negative fill of every masked softmax: `softmax(s·m − (1 − m)·1e9) · m`.
pub const MASK_FILL: f32 = 1e9;

/// Rows per forward chunk in [`predict`] and [`evaluate`].
pub const EVAL_CHUNK: usize = 4096;

/// Collects the tapes of values that several consumers share (see the module doc).
pub(crate) struct Sink<T> {
    tape: Option<T>,
}

impl<T: Tape<f32, Cpu> + Merge<T>> Sink<T> {
    pub(crate) fn new() -> Self {
        Sink { tape: None }
    }

    /// Moves `t`'s tape into the sink and returns the tape-less value for sharing.
    fn keep<S: Shape>(&mut self, t: Tensor<S, f32, Cpu, T>) -> Tensor<S, f32, Cpu> {
        let (t, tape) = t.split_tape();
        self.tape = Some(match self.tape.take() {
            Some(acc) => acc.merge(tape),
            None => tape,
        });
        t
    }

    /// A copy of a shared value (same id) with a fresh tape.
    fn take<S: Shape>(&self, t: &Tensor<S, f32, Cpu>) -> Tensor<S, f32, Cpu, T> {
        t.clone().put_tape(T::default())
    }

    /// Merges everything the sink holds into `t`'s tape.
    fn close<S: Shape>(mut self, t: Tensor<S, f32, Cpu, T>) -> Tensor<S, f32, Cpu, T> {
        match self.tape.take() {
            Some(extra) => {
                let (t, tape) = t.split_tape();
                t.put_tape(tape.merge(extra))
            }
            None => t,
        }
    }
}

/// The weights of a [`Plan`] as dfdx tensors (no tape), plus the frozen dense normalisation.
pub(crate) struct DeviceParams {
    dev: Cpu,
    mats: BTreeMap<String, Mat>,
    vecs: BTreeMap<String, Vec1>,
    /// The memory tables (`Role::Memory`), host side: they only enter the graph as constants.
    memory: BTreeMap<String, Table>,
    mean: Vec<f32>,
    std: Vec<f32>,
}

fn tensor_error(name: &str, message: impl Into<String>) -> TrainError {
    TrainError::Tensor {
        name: name.to_string(),
        message: message.into(),
    }
}

impl DeviceParams {
    /// Copies every tensor of the plan from `weights` to the device, checking names and shapes.
    pub(crate) fn new(dev: &Cpu, plan: &Plan, weights: &TensorMap) -> Result<Self, TrainError> {
        let mut mats = BTreeMap::new();
        let mut vecs = BTreeMap::new();
        let mut memory = BTreeMap::new();
        for spec in plan.tensor_specs() {
            let t = weights
                .get(&spec.name)
                .ok_or_else(|| tensor_error(&spec.name, "missing"))?;
            if t.shape != spec.shape || spec.dtype != Dtype::F32 {
                return Err(tensor_error(
                    &spec.name,
                    format!("shape {:?}, expected {:?}", t.shape, spec.shape),
                ));
            }
            let values = t
                .as_f32()
                .ok_or_else(|| tensor_error(&spec.name, "is not f32"))?
                .to_vec();
            if spec.role == Role::Memory {
                let (rows, width) = match spec.shape[..] {
                    [r, c] => (r, c),
                    _ => return Err(tensor_error(&spec.name, "a memory table must be 2-D")),
                };
                let table = Table::new(rows, width, values)
                    .map_err(|e| tensor_error(&spec.name, e.to_string()))?;
                memory.insert(spec.name, table);
                continue;
            }
            match spec.shape[..] {
                [r, c] => {
                    mats.insert(spec.name, dev.tensor_from_vec(values, (r, c)));
                }
                [n] => {
                    vecs.insert(spec.name, dev.tensor_from_vec(values, (n,)));
                }
                _ => return Err(tensor_error(&spec.name, "is neither 1-D nor 2-D")),
            }
        }
        let host = |name: &str| -> Vec<f32> {
            weights
                .get(name)
                .and_then(|t| t.as_f32())
                .map(<[f32]>::to_vec)
                .unwrap_or_default()
        };
        Ok(DeviceParams {
            dev: dev.clone(),
            mats,
            vecs,
            memory,
            mean: host(DENSE_MEAN),
            std: host(DENSE_STD),
        })
    }

    /// Copies the current values of `weights` into these tensors in place (no allocation while
    /// a tensor is not shared), checking that every tensor is present with the same size. The
    /// trainer keeps one `DeviceParams` for the whole run and refreshes it before each step.
    pub(crate) fn refresh(&mut self, weights: &TensorMap) -> Result<(), TrainError> {
        fn host<'a>(
            weights: &'a TensorMap,
            name: &str,
            len: usize,
        ) -> Result<&'a [f32], TrainError> {
            weights
                .get(name)
                .and_then(|t| t.as_f32())
                .filter(|v| v.len() == len)
                .ok_or_else(|| tensor_error(name, "missing, not f32 or resized since the upload"))
        }
        for (name, t) in self.mats.iter_mut() {
            t.copy_from(host(weights, name, t.shape().num_elements())?);
        }
        for (name, t) in self.vecs.iter_mut() {
            t.copy_from(host(weights, name, t.shape().num_elements())?);
        }
        for (name, table) in self.memory.iter_mut() {
            let dst = table.data_mut();
            dst.copy_from_slice(host(weights, name, dst.len())?);
        }
        let n_mean = self.mean.len();
        self.mean
            .copy_from_slice(host(weights, DENSE_MEAN, n_mean)?);
        let n_std = self.std.len();
        self.std.copy_from_slice(host(weights, DENSE_STD, n_std)?);
        Ok(())
    }

    fn mat(&self, name: &str) -> Result<&Mat, TrainError> {
        self.mats
            .get(name)
            .ok_or_else(|| tensor_error(name, "missing (2-D)"))
    }

    fn vec(&self, name: &str) -> Result<&Vec1, TrainError> {
        self.vecs
            .get(name)
            .ok_or_else(|| tensor_error(name, "missing (1-D)"))
    }

    fn memory(&self, name: &str) -> Result<&Table, TrainError> {
        self.memory
            .get(name)
            .ok_or_else(|| tensor_error(name, "missing (memory table)"))
    }

    /// Gradient of every trainable tensor (all but `dense.mean` / `dense.std` and the memory
    /// tables, which are not device tensors at all), as host vectors.
    pub(crate) fn gradients(
        &self,
        grads: &mut Gradients<f32, Cpu>,
    ) -> Result<BTreeMap<String, Vec<f32>>, TrainError> {
        let mut out = BTreeMap::new();
        for (name, t) in &self.mats {
            let g = grads.get_or_alloc_mut(t)?;
            out.insert(name.clone(), g.to_vec());
        }
        for (name, t) in &self.vecs {
            if name == DENSE_MEAN || name == DENSE_STD {
                continue;
            }
            let g = grads.get_or_alloc_mut(t)?;
            out.insert(name.clone(), g.to_vec());
        }
        Ok(out)
    }
}

/// `y = x · W + b`.
fn linear<T: Tape<f32, Cpu> + Merge<T>>(
    sink: &Sink<T>,
    p: &DeviceParams,
    x: Mat<T>,
    weight: &str,
    bias: &str,
) -> Result<Mat<T>, TrainError> {
    let y: Mat<T> = x.matmul(sink.take(p.mat(weight)?));
    let shape = *y.shape();
    let b: Mat<T> = sink.take(p.vec(bias)?).broadcast_like::<_, Axis<0>>(&shape);
    Ok(y + b)
}

/// An MLP with ReLU after every layer.
fn mlp_relu<T: Tape<f32, Cpu> + Merge<T>>(
    sink: &Sink<T>,
    p: &DeviceParams,
    mlp: &uie_model::schema::Mlp,
    mut h: Mat<T>,
) -> Result<Mat<T>, TrainError> {
    for m in 0..mlp.depth() {
        let (w, b) = mlp.layer(m);
        h = linear(sink, p, h, &w, &b)?.relu();
    }
    Ok(h)
}

/// Host-side `(dense − mean) / std`, row-major `[n, n_dense]`.
fn normalise(p: &DeviceParams, dense: &[f32], n_dense: usize) -> Vec<f32> {
    dense
        .chunks(n_dense.max(1))
        .flat_map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, v)| (v - p.mean[i]) / p.std[i])
        })
        .collect()
}

/// The ids of a categorical field, checked to have `n` entries.
fn field_ids<'a>(batch: &'a RawBatch, field: &str, n: usize) -> Result<&'a [i64], TrainError> {
    let ids = batch
        .categorical
        .get(field)
        .ok_or_else(|| tensor_error(&format!("input {field}"), "missing from the batch"))?;
    if ids.len() != n {
        return Err(tensor_error(
            &format!("input {field}"),
            format!("has {} ids for {n} rows", ids.len()),
        ));
    }
    Ok(ids)
}

/// A constant `[rows, cols]` matrix (no gradient flows out of it) carrying an empty tape.
fn constant<T: Tape<f32, Cpu>>(
    p: &DeviceParams,
    values: Vec<f32>,
    shape: (usize, usize),
) -> Mat<T> {
    p.dev.tensor_from_vec(values, shape).put_tape(T::default())
}

/// `softmax(s·m − (1 − m)·1e9) · m` along axis 1 for a host mask `m` (row-major, `shape`): rows
/// with no valid entry give exactly zero weights, never NaN.
fn masked_softmax<T: Tape<f32, Cpu> + Merge<T>>(
    p: &DeviceParams,
    s: Mat<T>,
    mask: &[f32],
) -> Mat<T> {
    let shape = *s.shape();
    let fill: Vec<f32> = mask.iter().map(|m| -(1.0 - m) * MASK_FILL).collect();
    let m: Mat = p.dev.tensor_from_vec(mask.to_vec(), shape);
    let f: Mat = p.dev.tensor_from_vec(fill, shape);
    ((s * m.clone()) + f).softmax::<Axis<1>>() * m
}

/// Concatenates `[n, w_i]` parts along axis 1, pairwise (a balanced tree): each level copies the
/// data once, instead of once per part.
fn concat_parts<T: Tape<f32, Cpu> + Merge<T>>(
    mut parts: Vec<Mat<T>>,
    what: &str,
) -> Result<Mat<T>, TrainError> {
    while parts.len() > 1 {
        let mut next = Vec::with_capacity(parts.len().div_ceil(2));
        let mut it = parts.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => (a, b).concat_along(Axis::<1>),
                None => a,
            });
        }
        parts = next;
    }
    parts.pop().ok_or_else(|| tensor_error(what, "has no part"))
}

/// Host values of one forward pass that the training loop needs (stop-gradient, row-major).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Side {
    /// `sg(v_u)` `[n, d]` (empty without UIE).
    pub(crate) v_u: Vec<f32>,
    /// `sg(v_i)` `[n, d]` (empty without UIE).
    pub(crate) v_i: Vec<f32>,
    /// `q_u`, the masked mean of `sg(H)`, `[n, d_e]` (empty without a sequence).
    pub(crate) q_u: Vec<f32>,
    /// `hist_len > 0` per row (empty without a sequence).
    pub(crate) has_hist: Vec<bool>,
}

/// What [`forward`] returns.
pub(crate) struct Outputs<T> {
    /// Per task, the logits `[n, 1]`.
    pub(crate) logits: Vec<Mat<T>>,
    /// `<v_u, v_i>` `[n]`, the auxiliary logit, when the towers exist. Its tape holds only the
    /// towers (their inputs are stop-gradient constants).
    pub(crate) aux_logit: Option<Vec1<T>>,
    /// Host values for stream clustering and the personalised memory.
    pub(crate) side: Side,
}

/// `seq` `[n, d_e]`, the host `q_u` `[n, d_e]` and the `hist_len > 0` flags.
type Pooled<T> = (Mat<T>, Vec<f32>, Vec<bool>);

/// `x`, the auxiliary logit and the host values of a batch.
pub(crate) type Input<T> = (Mat<T>, Option<Vec1<T>>, Side);

/// Sequence pooling by target attention (§2). Returns `seq` `[n, d_e]`, the host `q_u` `[n, d_e]`
/// and the `hist_len > 0` flags.
fn sequence<T: Tape<f32, Cpu> + Merge<T>>(
    sink: &mut Sink<T>,
    p: &DeviceParams,
    plan: &Plan,
    seq: &SequencePlan,
    batch: &RawBatch,
    e_item: &Mat,
) -> Result<Pooled<T>, TrainError> {
    let n = batch.n;
    let e = plan.embed_dim;
    let what = format!("input {HIST_ITEMS}");
    let hist = batch
        .history
        .as_ref()
        .ok_or_else(|| tensor_error(&what, "missing from the batch"))?;
    let l = hist.width;
    if l == 0 || hist.items.len() != n * l || hist.len.len() != n {
        return Err(tensor_error(
            &what,
            format!(
                "{} ids and {} lengths for {n} rows × {l}",
                hist.items.len(),
                hist.len.len()
            ),
        ));
    }
    let buckets = plan
        .buckets(&seq.item_field)
        .ok_or_else(|| tensor_error(&seq.table, "the sequence's item field is not a feature"))?;
    // `hist_len` outside [0, L] is refused by `RawBatch::check`; clamp anyway so nothing panics.
    let lens: Vec<usize> = hist
        .len
        .iter()
        .map(|&v| usize::try_from(v.max(0)).unwrap_or(0).min(l))
        .collect();
    let rows: Vec<usize> = hist.items.iter().map(|&id| bucket(id, buckets)).collect();
    let idx = p.dev.tensor_from_vec(rows, (n * l,));
    let flat: Mat<T> = sink.take(p.mat(&seq.table)?).gather(idx);
    let h: Cube<T> = flat.reshape_like(&(n, l, e));
    let h = sink.keep(h);

    // q_u = masked mean of sg(H): f32 sums in j order, divided by hist_len; zero when empty.
    let h_host = h.as_vec();
    let mut q_u = vec![0f32; n * e];
    for (r, (q, &len)) in q_u.chunks_exact_mut(e).zip(&lens).enumerate() {
        if len == 0 {
            continue;
        }
        for j in 0..len {
            let start = (r * l + j) * e;
            for (acc, &v) in q.iter_mut().zip(&h_host[start..start + e]) {
                *acc += v;
            }
        }
        let count = len as f32;
        for acc in q.iter_mut() {
            *acc /= count;
        }
    }
    let has_hist: Vec<bool> = lens.iter().map(|&len| len > 0).collect();

    let shape3 = (n, l, e);
    let q: Mat<T> = sink.take(e_item).matmul(sink.take(p.mat(&seq.query)?));
    let s: Mat<T> = (sink.take(&h) * q.broadcast_like::<_, Axis<1>>(&shape3))
        .sum::<(usize, usize), Axis<2>>()
        * (1.0 / (e as f32).sqrt());
    let mask: Vec<f32> = (0..n * l)
        .map(|i| if i % l < lens[i / l] { 1.0 } else { 0.0 })
        .collect();
    let a = masked_softmax(p, s, &mask);
    let pooled: Mat<T> =
        (a.broadcast_like::<_, Axis<2>>(&shape3) * sink.take(&h)).sum::<(usize, usize), Axis<1>>();
    Ok((pooled, q_u, has_hist))
}

/// An auxiliary tower on a stop-gradient input: hidden Linear + ReLU layers, then `out`.
fn aux_tower<T: Tape<f32, Cpu> + Merge<T>>(
    sink: &Sink<T>,
    p: &DeviceParams,
    tower: &AuxTower,
    x: Vec<f32>,
    n: usize,
) -> Result<Mat<T>, TrainError> {
    let width = tower.hidden.widths.first().copied().unwrap_or(0);
    if x.len() != n * width {
        return Err(tensor_error(
            &tower.out_weight,
            format!("tower input has {} values for {n} rows × {width}", x.len()),
        ));
    }
    let h = mlp_relu(sink, p, &tower.hidden, constant::<T>(p, x, (n, width)))?;
    linear(sink, p, h, &tower.out_weight, &tower.out_bias)
}

/// Row-major `[n, Σ w]` concatenation of host `[n, w_i]` matrices.
fn host_concat(parts: &[(&[f32], usize)], n: usize) -> Vec<f32> {
    let total: usize = parts.iter().map(|(_, w)| w).sum();
    let mut out = Vec::with_capacity(n * total);
    for r in 0..n {
        for (values, w) in parts {
            out.extend_from_slice(&values[r * w..(r + 1) * w]);
        }
    }
    out
}

/// `e_upe`, `e_ucbe`, `e_ucse` (§5), each present only when enabled, in that order.
#[allow(clippy::too_many_arguments)]
fn enhancements<T: Tape<f32, Cpu> + Merge<T>>(
    sink: &Sink<T>,
    p: &DeviceParams,
    plan: &Plan,
    uie: &UiePlan,
    batch: &RawBatch,
    v_u: &[f32],
    q_u: &[f32],
    e_item: Option<&Mat>,
) -> Result<Vec<Mat<T>>, TrainError> {
    let n = batch.n;
    let d = uie.dim;
    let e = plan.embed_dim;
    let mut out = Vec::with_capacity(3);
    if let Some(upe) = &uie.upe {
        let r = retrieve(v_u, n, p.memory(&upe.retrieval.table)?, upe.retrieval.k)?;
        let x = host_concat(&[(&r.r, d), (v_u, d)], n);
        out.push(mlp_relu(
            sink,
            p,
            &upe.gen,
            constant::<T>(p, x, (n, 2 * d)),
        )?);
    }
    if let Some(ucbe) = &uie.ucbe {
        let ids = field_ids(batch, &ucbe.user_field, n)?;
        let table = p.memory(&ucbe.personal)?;
        let mut x = Vec::with_capacity(n * d);
        for &id in ids {
            let row = table
                .row(bucket(id, table.rows()))
                .ok_or_else(|| tensor_error(&ucbe.personal, "user row out of range"))?;
            x.extend_from_slice(row);
        }
        out.push(mlp_relu(sink, p, &ucbe.gen, constant::<T>(p, x, (n, d)))?);
    }
    if let Some(ucse) = &uie.ucse {
        let e_item =
            e_item.ok_or_else(|| tensor_error(&ucse.attn, "UCSE needs [features.sequence]"))?;
        let table = p.memory(&ucse.retrieval.table)?;
        let k = ucse.retrieval.k;
        let r = retrieve(q_u, n, table, k)?;
        let mut c = Vec::with_capacity(n * k * e);
        for &i in &r.indices {
            let row = usize::try_from(i)
                .ok()
                .and_then(|i| table.row(i))
                .ok_or_else(|| tensor_error(&ucse.retrieval.table, "index out of range"))?;
            c.extend_from_slice(row);
        }
        let shape3 = (n, k, e);
        let c: Cube = p.dev.tensor_from_vec(c, shape3);
        // sg(e_item_id): a fresh constant, so W_t's gradient never reaches the embeddings.
        let item = constant::<T>(p, e_item.as_vec(), (n, e));
        let t: Mat<T> = item.matmul(sink.take(p.mat(&ucse.attn)?));
        let score: Mat<T> = (t.broadcast_like::<_, Axis<1>>(&shape3) * c.clone())
            .sum::<(usize, usize), Axis<2>>()
            * (1.0 / (e as f32).sqrt());
        let b = masked_softmax(p, score, &r.keep);
        let pooled: Mat<T> =
            (b.broadcast_like::<_, Axis<2>>(&shape3) * c).sum::<(usize, usize), Axis<1>>();
        out.push(mlp_relu(sink, p, &ucse.gen, pooled)?);
    }
    Ok(out)
}

/// Σ_j g_j · expert_j for a gate output `g` `[n, E]`.
fn mix<T: Tape<f32, Cpu> + Merge<T>>(
    sink: &Sink<T>,
    p: &DeviceParams,
    g: &Mat,
    experts: &[&Mat],
) -> Result<Mat<T>, TrainError> {
    let mut acc: Option<Mat<T>> = None;
    for (j, e) in experts.iter().enumerate() {
        let shape = *e.shape();
        let idx = p.dev.tensor_from_vec(vec![j; shape.0], (shape.0,));
        let gj: Vec1<T> = sink.take(g).select(idx);
        let term = gj.broadcast_like::<_, Axis<1>>(&shape) * sink.take(*e);
        acc = Some(match acc {
            None => term,
            Some(a) => a + term,
        });
    }
    acc.ok_or_else(|| tensor_error("gate", "mixes no experts"))
}

/// The backbone input `x` `[n, input_width]` of a batch (`n ≥ 1`), the auxiliary logit and the
/// host values of the UIE vectors (see the module doc for the formulas).
pub(crate) fn backbone_input<T: Tape<f32, Cpu> + Merge<T>>(
    sink: &mut Sink<T>,
    p: &DeviceParams,
    plan: &Plan,
    batch: &RawBatch,
) -> Result<Input<T>, TrainError> {
    let n = batch.n;
    let e = plan.embed_dim;
    // Embeddings, kept in the sink: the item id's row is also the sequence query, and the tower
    // inputs read their host values.
    let mut embeds: Vec<Mat> = Vec::with_capacity(plan.embeddings.len());
    for (field, table, buckets) in &plan.embeddings {
        let ids = field_ids(batch, field, n)?;
        let rows: Vec<usize> = ids.iter().map(|&id| bucket(id, *buckets)).collect();
        let idx = p.dev.tensor_from_vec(rows, (n,));
        let emb: Mat<T> = sink.take(p.mat(table)?).gather(idx);
        embeds.push(sink.keep(emb));
    }
    let embed_of = |field: &str| -> Result<&Mat, TrainError> {
        plan.embeddings
            .iter()
            .position(|(f, _, _)| f == field)
            .and_then(|i| embeds.get(i))
            .ok_or_else(|| tensor_error(&format!("input {field}"), "is not a feature"))
    };
    let mut parts: Vec<Mat<T>> = embeds.iter().map(|m| sink.take(m)).collect();
    if plan.n_dense > 0 {
        if batch.dense.len() != n * plan.n_dense || p.mean.len() != plan.n_dense {
            return Err(tensor_error(
                "input dense",
                format!(
                    "has {} values for {n} rows × {}",
                    batch.dense.len(),
                    plan.n_dense
                ),
            ));
        }
        let values = normalise(p, &batch.dense, plan.n_dense);
        parts.push(constant::<T>(p, values, (n, plan.n_dense)));
    }
    let mut side = Side::default();
    let mut e_item: Option<&Mat> = None;
    if let Some(seq) = &plan.sequence {
        let item = embed_of(&seq.item_field)?;
        let (pooled, q_u, has_hist) = sequence(sink, p, plan, seq, batch, item)?;
        parts.push(pooled);
        side.q_u = q_u;
        side.has_hist = has_hist;
        e_item = Some(item);
    }
    let mut aux_logit = None;
    if let Some(uie) = &plan.uie {
        let host_input = |tower: &AuxTower| -> Result<Vec<f32>, TrainError> {
            let values: Vec<Vec<f32>> = tower
                .fields
                .iter()
                .map(|f| embed_of(f).map(|m| m.as_vec()))
                .collect::<Result<_, _>>()?;
            let parts: Vec<(&[f32], usize)> = values.iter().map(|v| (&v[..], e)).collect();
            Ok(host_concat(&parts, n))
        };
        let v_u = aux_tower(sink, p, &uie.user_tower, host_input(&uie.user_tower)?, n)?;
        let v_i = aux_tower(sink, p, &uie.item_tower, host_input(&uie.item_tower)?, n)?;
        side.v_u = v_u.as_vec();
        side.v_i = v_i.as_vec();
        aux_logit = Some((v_u * v_i).sum::<(usize,), Axis<1>>());
        parts.extend(enhancements(
            sink, p, plan, uie, batch, &side.v_u, &side.q_u, e_item,
        )?);
    }
    let x = concat_parts(parts, "x")?;
    Ok((x, aux_logit, side))
}

/// The whole forward pass of a batch (`n ≥ 1`): per-task logits, the auxiliary logit and the host
/// values of the UIE vectors (see the module doc for the formulas).
pub(crate) fn forward<T: Tape<f32, Cpu> + Merge<T>>(
    sink: &mut Sink<T>,
    p: &DeviceParams,
    plan: &Plan,
    batch: &RawBatch,
) -> Result<Outputs<T>, TrainError> {
    let (x, aux_logit, side) = backbone_input(sink, p, plan, batch)?;
    let x = sink.keep(x);
    let n_tasks = plan.towers.len();
    let mut task_in: Vec<Mat> = vec![x.clone(); n_tasks];
    let mut shared_in: Mat = x;
    for level in &plan.levels {
        let mut specific: Vec<Vec<Mat>> = Vec::with_capacity(n_tasks);
        for (k, experts) in level.specific.iter().enumerate() {
            let input = task_in
                .get(k)
                .ok_or_else(|| tensor_error("ple", "more expert groups than tasks"))?;
            let mut outs = Vec::with_capacity(experts.len());
            for e in experts {
                let out = mlp_relu(sink, p, e, sink.take(input))?;
                outs.push(sink.keep(out));
            }
            specific.push(outs);
        }
        let mut shared = Vec::with_capacity(level.shared.len());
        for e in &level.shared {
            let out = mlp_relu(sink, p, e, sink.take(&shared_in))?;
            shared.push(sink.keep(out));
        }
        let expert = |(owner, j): &(Owner, usize)| -> Result<&Mat, TrainError> {
            let found = match owner {
                Owner::Task(k) => specific.get(*k).and_then(|v| v.get(*j)),
                Owner::Shared => shared.get(*j),
            };
            found.ok_or_else(|| tensor_error("gate", format!("unknown expert {owner:?} {j}")))
        };
        let mut next_task = Vec::with_capacity(n_tasks);
        for (k, gate) in level.task_gates.iter().enumerate() {
            let input = task_in
                .get(k)
                .ok_or_else(|| tensor_error(&gate.weight, "gate without a task"))?;
            let logits = linear(sink, p, sink.take(input), &gate.weight, &gate.bias)?;
            let g = sink.keep(logits.softmax::<Axis<1>>());
            let experts: Vec<&Mat> = gate.experts.iter().map(expert).collect::<Result<_, _>>()?;
            let out = mix(sink, p, &g, &experts)?;
            next_task.push(sink.keep(out));
        }
        if let Some(gate) = &level.shared_gate {
            let logits = linear(sink, p, sink.take(&shared_in), &gate.weight, &gate.bias)?;
            let g = sink.keep(logits.softmax::<Axis<1>>());
            let experts: Vec<&Mat> = gate.experts.iter().map(expert).collect::<Result<_, _>>()?;
            let out = mix(sink, p, &g, &experts)?;
            shared_in = sink.keep(out);
        }
        task_in = next_task;
    }
    let mut logits = Vec::with_capacity(n_tasks);
    for (k, tower) in plan.towers.iter().enumerate() {
        let input = task_in
            .get(k)
            .ok_or_else(|| tensor_error(&tower.out_weight, "tower without a task"))?;
        let h = mlp_relu(sink, p, &tower.hidden, sink.take(input))?;
        logits.push(linear(sink, p, h, &tower.out_weight, &tower.out_bias)?);
    }
    Ok(Outputs {
        logits,
        aux_logit,
        side,
    })
}

/// Probabilities `[n, T]` row-major for a batch on device parameters (no checks, no tape).
pub(crate) fn probs_on(
    p: &DeviceParams,
    plan: &Plan,
    batch: &RawBatch,
) -> Result<Vec<f32>, TrainError> {
    let t = plan.towers.len();
    let mut probs = Vec::with_capacity(batch.n * t);
    let mut start = 0;
    while start < batch.n {
        let end = (start + EVAL_CHUNK).min(batch.n);
        let chunk = batch.slice(start, end);
        let mut sink = Sink::<NoneTape>::new();
        let out = forward(&mut sink, p, plan, &chunk)?;
        let mut cat: Option<Mat> = None;
        for l in out.logits {
            cat = Some(match cat {
                None => l,
                Some(acc) => (acc, l).concat_along(Axis::<1>),
            });
        }
        let cat = cat.ok_or_else(|| tensor_error(PROBS, "the model has no task"))?;
        probs.extend(cat.sigmoid().as_vec());
        start = end;
    }
    Ok(probs)
}

/// The host values (`sg(v_u)`, `sg(v_i)`, `q_u`, `hist_len > 0`) of a batch, without a tape:
/// what the k-means++ initialisation of the centre tables clusters.
pub(crate) fn side_values(
    p: &DeviceParams,
    plan: &Plan,
    batch: &RawBatch,
) -> Result<Side, TrainError> {
    if batch.n == 0 {
        return Ok(Side::default());
    }
    let mut sink = Sink::<NoneTape>::new();
    Ok(forward(&mut sink, p, plan, batch)?.side)
}

/// Which losses a backward pass differentiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Objective {
    /// `Σ_k w_k · BCE_k + α_aux · L_aux`: the full phase.
    Total,
    /// `Σ_k w_k · BCE_k` alone (stop-gradient tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Main,
    /// `L_aux` alone: the warm-up (which then updates the tower tensors only).
    Aux,
}

/// One training step's losses, gradients and host values.
pub(crate) struct StepResult {
    /// The main loss `Σ_k w_k · mean BCE_k` (computed in every objective).
    pub(crate) loss: f32,
    /// `L_aux`, when the towers exist.
    pub(crate) aux_loss: Option<f32>,
    /// Gradients of the objective, for every trainable tensor.
    pub(crate) grads: BTreeMap<String, Vec<f32>>,
    /// `sg(v_u)`, `sg(v_i)`, `q_u` of the batch.
    pub(crate) side: Side,
    /// Wall time of the step's stages.
    pub(crate) times: StepTimes,
}

/// Wall time of one [`train_step`]'s stages, seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct StepTimes {
    /// Host weights → dfdx tensors.
    pub(crate) upload: f64,
    /// Forward pass and losses (tape recorded).
    pub(crate) forward: f64,
    /// `backward` and the gradients' copy to the host.
    pub(crate) backward: f64,
}

/// Loss `Σ_k w_k · mean BCE_k` of a batch and the gradient of every trainable tensor (with UIE,
/// the objective is the total loss, `α_aux · L_aux` included).
#[cfg(test)]
pub(crate) fn loss_and_gradients(
    dev: &Cpu,
    config: &Config,
    plan: &Plan,
    weights: &TensorMap,
    data: &Dataset,
) -> Result<(f32, BTreeMap<String, Vec<f32>>), TrainError> {
    let r = train_step(dev, config, plan, weights, data, Objective::Total)?;
    Ok((r.loss, r.grads))
}

/// The forward and backward pass of one batch for `objective`.
#[cfg(test)]
pub(crate) fn train_step(
    dev: &Cpu,
    config: &Config,
    plan: &Plan,
    weights: &TensorMap,
    data: &Dataset,
    objective: Objective,
) -> Result<StepResult, TrainError> {
    train_step_with(&mut None, dev, config, plan, weights, data, objective)
}

/// [`train_step`] on device parameters kept by the caller across steps: `params` is created
/// from `weights` when empty, refreshed from them in place otherwise.
pub(crate) fn train_step_with(
    params: &mut Option<DeviceParams>,
    dev: &Cpu,
    config: &Config,
    plan: &Plan,
    weights: &TensorMap,
    data: &Dataset,
    objective: Objective,
) -> Result<StepResult, TrainError> {
    type Scalar = Tensor<Rank0, f32, Cpu, OwnedTape<f32, Cpu>>;
    let n = data.len();
    let t = config.tasks.len();
    if n == 0 || data.labels.len() != n * t {
        return Err(TrainError::Labels(format!(
            "{} labels for {n} rows × {t} tasks",
            data.labels.len()
        )));
    }
    let started = Instant::now();
    let p: &DeviceParams = match params {
        Some(p) => {
            p.refresh(weights)?;
            p
        }
        None => params.insert(DeviceParams::new(dev, plan, weights)?),
    };
    let uploaded = Instant::now();
    let mut sink = Sink::<OwnedTape<f32, Cpu>>::new();
    let out = forward(&mut sink, p, plan, &data.batch)?;
    let mut loss: Option<Scalar> = None;
    for (k, (logit, task)) in out.logits.into_iter().zip(&config.tasks).enumerate() {
        let y: Vec<f32> = data.labels.iter().skip(k).step_by(t).copied().collect();
        let target = dev.tensor_from_vec(y, (n, 1usize));
        let l = binary_cross_entropy_with_logits_loss(logit, target) * task.weight;
        loss = Some(match loss {
            None => l,
            Some(acc) => acc + l,
        });
    }
    let loss = loss.ok_or_else(|| TrainError::Labels("the model has no task".into()))?;
    let loss = sink.close(loss);
    let value = loss.array();
    if !value.is_finite() {
        return Err(TrainError::Diverged(format!("batch loss is {value}")));
    }
    let aux: Option<Scalar> = match out.aux_logit {
        Some(logit) => {
            let k = aux_task_index(config)?;
            let y: Vec<f32> = data.labels.iter().skip(k).step_by(t).copied().collect();
            let target = dev.tensor_from_vec(y, (n,));
            Some(binary_cross_entropy_with_logits_loss(logit, target))
        }
        None => None,
    };
    let aux_value = aux.as_ref().map(|a| a.array());
    if let Some(v) = aux_value.filter(|v| !v.is_finite()) {
        return Err(TrainError::Diverged(format!("auxiliary loss is {v}")));
    }
    let objective_loss = match (objective, aux) {
        (Objective::Total, Some(a)) => loss + a * config.uie.aux_weight,
        (Objective::Total | Objective::Main, _) => loss,
        (Objective::Aux, Some(a)) => a,
        (Objective::Aux, None) => {
            return Err(TrainError::Unsupported(
                "the warm-up trains the auxiliary towers, but no UIE module is enabled".into(),
            ))
        }
    };
    let forwarded = Instant::now();
    let mut grads = objective_loss.backward();
    let g = p.gradients(&mut grads)?;
    let times = StepTimes {
        upload: (uploaded - started).as_secs_f64(),
        forward: (forwarded - uploaded).as_secs_f64(),
        backward: forwarded.elapsed().as_secs_f64(),
    };
    Ok(StepResult {
        loss: value,
        aux_loss: aux_value,
        grads: g,
        side: out.side,
        times,
    })
}

/// Column of `uie.aux_task` in the labels.
pub(crate) fn aux_task_index(config: &Config) -> Result<usize, TrainError> {
    let name = config.uie.aux_task.as_deref().unwrap_or_default();
    config
        .tasks
        .iter()
        .position(|t| t.name == name)
        .ok_or_else(|| TrainError::UnknownTask {
            name: name.to_string(),
            known: config.task_names().join(", "),
        })
}

/// Names of the auxiliary towers' tensors (`aux.user.*`, `aux.item.*`).
pub fn tower_tensors(plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(u) = &plan.uie {
        for t in [&u.user_tower, &u.item_tower] {
            for m in 0..t.hidden.depth() {
                let (w, b) = t.hidden.layer(m);
                out.push(w);
                out.push(b);
            }
            out.push(t.out_weight.clone());
            out.push(t.out_bias.clone());
        }
    }
    out
}

/// Names of the tensors the optimizer updates: every `Role::Parameter` tensor of the plan (not
/// the dense statistics, not the memory tables).
pub fn trainable(plan: &Plan) -> Vec<String> {
    plan.tensor_specs()
        .into_iter()
        .filter(|s| s.role == Role::Parameter)
        .map(|s| s.name)
        .collect()
}

/// Fresh weights: He-uniform for layers followed by ReLU (experts, tower hidden layers),
/// Xavier-uniform for gates, tower outputs, `W_q`, `W_t` and the generalisation layers, zero
/// biases, uniform ±0.05 embeddings and centre tables (placeholders until the k-means++
/// initialisation of training), an all-zero `P`; `dense.mean` and `dense.std` from `train_dense`
/// (row-major `[n, n_dense]`; std 0 becomes 1).
pub fn init_weights(config: &Config, train_dense: &[f32], seed: u64) -> TensorMap {
    let plan = Plan::new(config);
    let mut rng = rng::seeded(seed);
    let relu_layers: Vec<String> = plan
        .levels
        .iter()
        .flat_map(|l| l.specific.iter().flatten().chain(&l.shared))
        .chain(plan.towers.iter().map(|t| &t.hidden))
        .flat_map(|mlp| (0..mlp.depth()).map(|m| mlp.layer(m).0))
        .collect();
    let embeds: Vec<&String> = plan.embeddings.iter().map(|(_, t, _)| t).collect();
    let (mean, std) = dense_stats(train_dense, plan.n_dense);
    let mut map = TensorMap::new();
    for spec in plan.tensor_specs() {
        let numel: usize = spec.shape.iter().product();
        let values: Vec<f32> = if spec.name == DENSE_MEAN {
            mean.clone()
        } else if spec.name == DENSE_STD {
            std.clone()
        } else if spec.name == MEMORY_PERSONAL {
            vec![0.0; numel]
        } else if embeds.contains(&&spec.name) || spec.role == Role::Memory {
            (0..numel).map(|_| rng.random_range(-0.05..0.05)).collect()
        } else if spec.shape.len() == 1 {
            vec![0.0; numel]
        } else {
            let (fan_in, fan_out) = (spec.shape[0] as f32, spec.shape[1] as f32);
            let limit = if relu_layers.contains(&spec.name) {
                (6.0 / fan_in).sqrt()
            } else {
                (6.0 / (fan_in + fan_out)).sqrt()
            };
            (0..numel)
                .map(|_| rng.random_range(-limit..limit))
                .collect()
        };
        map.insert(spec.name, uie_model::Tensor::f32(spec.shape, values));
    }
    map
}

/// Per-column mean and population standard deviation (0 → 1) of a row-major `[n, d]` matrix.
pub fn dense_stats(dense: &[f32], d: usize) -> (Vec<f32>, Vec<f32>) {
    if d == 0 {
        return (Vec::new(), Vec::new());
    }
    let n = dense.len() / d;
    let mut sum = vec![0f64; d];
    let mut sq = vec![0f64; d];
    for row in dense.chunks_exact(d) {
        for (i, &v) in row.iter().enumerate() {
            sum[i] += f64::from(v);
            sq[i] += f64::from(v) * f64::from(v);
        }
    }
    let nf = (n.max(1)) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / nf).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(s, m)| {
            let var = (s / nf - m * m).max(0.0);
            let sd = var.sqrt() as f32;
            if sd > 0.0 && sd.is_finite() {
                sd
            } else {
                1.0
            }
        })
        .collect();
    (mean.iter().map(|&m| m as f32).collect(), std)
}

/// The dfdx forward pass on a checkpoint's weights: probabilities row-major `[n, T]`, tasks in
/// config order. The same code as training (there is nothing training-only in the model).
pub fn predict(checkpoint: &Checkpoint, batch: &RawBatch) -> Result<Vec<f32>, TrainError> {
    let config = &checkpoint.config;
    check_supported(config)?;
    batch.check(config)?;
    uie_model::checkpoint::validate_weights(config, &checkpoint.weights)?;
    let plan = Plan::new(config);
    let p = DeviceParams::new(&Cpu::default(), &plan, &checkpoint.weights)?;
    probs_on(&p, &plan, batch)
}

/// Refuses the parts of the config this trainer does not implement. Every part of
/// `docs/model.md` (§2 sequence, §3 towers, §4–§5 UPE, UCBE, UCSE) is implemented now, so this
/// accepts every valid config; it stays the one place to refuse a future, unimplemented option.
pub fn check_supported(config: &Config) -> Result<(), TrainError> {
    let _ = config;
    Ok(())
}

/// AUC and logloss per task of a checkpoint on a data set.
pub fn evaluate(checkpoint: &Checkpoint, data: &Dataset) -> Result<Vec<TaskMetrics>, TrainError> {
    let probs = predict(checkpoint, &data.batch)?;
    metrics::per_task(&checkpoint.config.task_names(), &probs, &data.labels)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::train::Adam;
    use uie_model::schema::{Gate, Mlp};

    pub(crate) const TINY: &str = r#"
[model]
name = "tiny"
embed_dim = 3

[features]
dense = ["d0", "d1"]

[[features.categorical]]
name = "item_id"
buckets = 7
group = "item"

[[features.categorical]]
name = "user_id"
buckets = 5

[ple]
levels = 2
shared_experts = 2
specific_experts = 1
expert_hidden = [4, 3]

[[tasks]]
name = "a"
tower_hidden = [2]

[[tasks]]
name = "b"
weight = 0.5
"#;

    pub(crate) fn tiny_config() -> Config {
        Config::from_toml_str(TINY).expect("tiny config")
    }

    /// Weights with non-zero biases and non-trivial normalisation, so every term matters.
    pub(crate) fn tiny_weights(config: &Config, seed: u64) -> TensorMap {
        let dense = [1.0, 10.0, 3.0, 30.0, 2.0, 50.0];
        let mut w = init_weights(config, &dense, seed);
        let mut rng = rng::seeded(seed + 1000);
        for (name, t) in w.iter_mut() {
            if name.ends_with(".bias") || name.starts_with("embed.") {
                if let uie_model::TensorData::F32(v) = &mut t.data {
                    for x in v.iter_mut() {
                        *x += rng.random_range(-0.5..0.5);
                    }
                }
            }
        }
        w
    }

    pub(crate) fn tiny_batch() -> RawBatch {
        RawBatch {
            n: 5,
            categorical: BTreeMap::from([
                ("item_id".to_string(), vec![0, 6, -1, i64::MAX, 12345]),
                ("user_id".to_string(), vec![3, -7, i64::MIN, 4, 1 << 40]),
            ]),
            dense: vec![1.0, 20.0, -3.0, 15.0, 2.5, 0.0, 4.0, 33.0, 0.0, -10.0],
            history: None,
        }
    }

    fn checkpoint(config: &Config, weights: TensorMap) -> Checkpoint {
        Checkpoint::new(config.clone(), weights, "test")
    }

    // ---- plain-Rust reference of the same formulas, in f64 ----

    fn get<'a>(w: &'a TensorMap, name: &str) -> &'a [f32] {
        w.get(name).and_then(|t| t.as_f32()).expect("tensor")
    }

    fn lin(w: &TensorMap, x: &[f64], weight: &str, bias: &str) -> Vec<f64> {
        let b = get(w, bias);
        let m = get(w, weight);
        let out = b.len();
        assert_eq!(m.len(), x.len() * out, "{weight}");
        (0..out)
            .map(|o| {
                f64::from(b[o])
                    + x.iter()
                        .enumerate()
                        .map(|(i, xi)| xi * f64::from(m[i * out + o]))
                        .sum::<f64>()
            })
            .collect()
    }

    fn relu_mlp(w: &TensorMap, mlp: &Mlp, x: &[f64]) -> Vec<f64> {
        let mut h = x.to_vec();
        for m in 0..mlp.depth() {
            let (wn, bn) = mlp.layer(m);
            h = lin(w, &h, &wn, &bn)
                .into_iter()
                .map(|v| v.max(0.0))
                .collect();
        }
        h
    }

    fn gate_out(
        w: &TensorMap,
        gate: &Gate,
        input: &[f64],
        specific: &[Vec<Vec<f64>>],
        shared: &[Vec<f64>],
    ) -> Vec<f64> {
        let logits = lin(w, input, &gate.weight, &gate.bias);
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let s: f64 = e.iter().sum();
        let mut out = vec![
            0.0;
            shared
                .first()
                .or(specific[0].first())
                .expect("expert")
                .len()
        ];
        for ((owner, j), g) in gate.experts.iter().zip(e.iter().map(|v| v / s)) {
            let ex = match owner {
                Owner::Task(k) => &specific[*k][*j],
                Owner::Shared => &shared[*j],
            };
            for (o, v) in out.iter_mut().zip(ex) {
                *o += g * v;
            }
        }
        out
    }

    fn reference_probs(config: &Config, w: &TensorMap, batch: &RawBatch) -> Vec<f32> {
        let plan = Plan::new(config);
        let d = plan.n_dense;
        let mut xs = Vec::new();
        for r in 0..batch.n {
            let mut x: Vec<f64> = Vec::new();
            for (field, table, buckets) in &plan.embeddings {
                let id = batch.categorical[field][r];
                let row = id.rem_euclid(*buckets as i64) as usize;
                let t = get(w, table);
                x.extend(
                    t[row * plan.embed_dim..(row + 1) * plan.embed_dim]
                        .iter()
                        .map(|&v| f64::from(v)),
                );
            }
            let (mean, std) = (get(w, DENSE_MEAN), get(w, DENSE_STD));
            for i in 0..d {
                x.push(
                    (f64::from(batch.dense[r * d + i]) - f64::from(mean[i])) / f64::from(std[i]),
                );
            }
            xs.push(x);
        }
        reference_probs_from_x(config, w, &xs)
            .into_iter()
            .map(|p| p as f32)
            .collect()
    }

    /// The PLE backbone and towers in f64 on given backbone inputs `x` (one per row).
    pub(crate) fn reference_probs_from_x(
        config: &Config,
        w: &TensorMap,
        xs: &[Vec<f64>],
    ) -> Vec<f64> {
        let plan = Plan::new(config);
        let mut probs = Vec::new();
        for x in xs {
            let mut task_in = vec![x.clone(); config.tasks.len()];
            let mut shared_in = x.clone();
            for level in &plan.levels {
                let specific: Vec<Vec<Vec<f64>>> = level
                    .specific
                    .iter()
                    .enumerate()
                    .map(|(k, es)| es.iter().map(|e| relu_mlp(w, e, &task_in[k])).collect())
                    .collect();
                let shared: Vec<Vec<f64>> = level
                    .shared
                    .iter()
                    .map(|e| relu_mlp(w, e, &shared_in))
                    .collect();
                let next: Vec<Vec<f64>> = level
                    .task_gates
                    .iter()
                    .enumerate()
                    .map(|(k, g)| gate_out(w, g, &task_in[k], &specific, &shared))
                    .collect();
                if let Some(g) = &level.shared_gate {
                    shared_in = gate_out(w, g, &shared_in, &specific, &shared);
                }
                task_in = next;
            }
            for (k, tower) in plan.towers.iter().enumerate() {
                let h = relu_mlp(w, &tower.hidden, &task_in[k]);
                let logit = lin(w, &h, &tower.out_weight, &tower.out_bias)[0];
                probs.push(1.0 / (1.0 + (-logit).exp()));
            }
        }
        probs
    }

    #[test]
    fn forward_matches_a_plain_rust_loop() {
        let config = tiny_config();
        for seed in [1, 2, 3] {
            let w = tiny_weights(&config, seed);
            let batch = tiny_batch();
            let got = predict(&checkpoint(&config, w.clone()), &batch).expect("predict");
            let want = reference_probs(&config, &w, &batch);
            assert_eq!(got.len(), want.len());
            for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - r).abs() <= 1e-5,
                    "seed {seed} element {i}: dfdx {g} vs loop {r}"
                );
            }
            // The probabilities are not degenerate: rows differ.
            assert!(got.iter().any(|p| (p - got[0]).abs() > 1e-4), "{got:?}");
        }
    }

    #[test]
    fn predict_checks_the_batch() {
        let config = tiny_config();
        let ck = checkpoint(&config, tiny_weights(&config, 1));
        let mut batch = tiny_batch();
        batch.categorical.remove("user_id");
        let e = predict(&ck, &batch).expect_err("missing field");
        assert!(e.to_string().contains("user_id"), "{e}");
        let mut batch = tiny_batch();
        batch.dense[3] = f32::NAN;
        assert!(predict(&ck, &batch).is_err());
        let mut bad = ck.clone();
        bad.weights.insert(
            DENSE_STD.into(),
            uie_model::Tensor::f32(vec![2], vec![1.0, 0.0]),
        );
        let e = predict(&bad, &tiny_batch()).expect_err("zero std");
        assert!(e.to_string().contains(DENSE_STD), "{e}");
        let empty = tiny_batch().slice(0, 0);
        assert_eq!(
            predict(&ck, &empty).expect("empty batch"),
            Vec::<f32>::new()
        );
    }

    fn tiny_data() -> Dataset {
        Dataset {
            batch: tiny_batch(),
            labels: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0],
            ..Dataset::default()
        }
    }

    fn loss_of(config: &Config, w: &TensorMap, data: &Dataset) -> f64 {
        let probs = predict(&checkpoint(config, w.clone()), &data.batch).expect("predict");
        let ms = metrics::per_task(&config.task_names(), &probs, &data.labels).expect("metrics");
        ms.iter()
            .zip(&config.tasks)
            .map(|(m, t)| f64::from(t.weight) * m.logloss)
            .sum()
    }

    #[test]
    fn gradients_match_finite_differences() {
        let config = tiny_config();
        let plan = Plan::new(&config);
        let w = tiny_weights(&config, 7);
        let data = tiny_data();
        let (loss, grads) =
            loss_and_gradients(&Cpu::default(), &config, &plan, &w, &data).expect("grads");
        assert!((f64::from(loss) - loss_of(&config, &w, &data)).abs() < 1e-5);
        // Every trainable tensor gets a gradient, and all of them carry signal.
        let names = trainable(&plan);
        assert_eq!(grads.keys().cloned().collect::<Vec<_>>(), {
            let mut n = names.clone();
            n.sort();
            n
        });
        for name in &names {
            assert!(
                grads[name].iter().any(|g| g.abs() > 0.0),
                "{name} has zero gradient"
            );
        }
        let h = 1e-2f32;
        let mut checked = 0;
        for name in [
            "embed.user_id",
            "ple.l0.a.expert0.fc0.weight",
            "ple.l0.shared.gate.weight",
            "ple.l1.shared.expert1.fc1.bias",
            "ple.l1.b.gate.weight",
            "tower.a.fc0.weight",
            "tower.b.out.bias",
        ] {
            let g = &grads[name];
            let i = (0..g.len())
                .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
                .expect("non-empty");
            let mut plus = w.clone();
            let mut minus = w.clone();
            for (m, s) in [(&mut plus, h), (&mut minus, -h)] {
                if let Some(uie_model::TensorData::F32(v)) = m.get_mut(name).map(|t| &mut t.data) {
                    v[i] += s;
                }
            }
            let fd = (loss_of(&config, &plus, &data) - loss_of(&config, &minus, &data))
                / (2.0 * f64::from(h));
            let an = f64::from(g[i]);
            assert!(
                (fd - an).abs() <= 2e-3 + 0.05 * an.abs(),
                "{name}[{i}]: analytic {an} vs finite difference {fd}"
            );
            checked += 1;
        }
        assert_eq!(checked, 7);
    }

    #[test]
    fn adam_steps_reduce_the_loss() {
        let config = tiny_config();
        let plan = Plan::new(&config);
        let data = tiny_data();
        let dev = Cpu::default();
        // Several initialisations, so the bound is not a property of one draw.
        for seed in 1..=4 {
            let mut w = tiny_weights(&config, seed);
            let mut adam = Adam::new(0.01);
            let (first, _) = loss_and_gradients(&dev, &config, &plan, &w, &data).expect("loss");
            let mut last = first;
            for _ in 0..30 {
                let (loss, grads) =
                    loss_and_gradients(&dev, &config, &plan, &w, &data).expect("loss");
                adam.update(&mut w, &grads).expect("update");
                last = loss;
            }
            assert!(last < 0.7 * first, "seed {seed}: loss {first} → {last}");
            // dense statistics are frozen
            let fresh = tiny_weights(&config, seed);
            assert_eq!(w[DENSE_MEAN], fresh[DENSE_MEAN]);
            assert_eq!(w[DENSE_STD], fresh[DENSE_STD]);
        }
    }

    #[test]
    fn dense_stats_use_population_std_and_guard_zero() {
        let (m, s) = dense_stats(&[1.0, 5.0, 3.0, 5.0], 2);
        assert_eq!(m, vec![2.0, 5.0]);
        assert_eq!(s, vec![1.0, 1.0]);
        let (m, s) = dense_stats(&[0.0, 4.0], 1);
        assert_eq!((m, s), (vec![2.0], vec![2.0]));
    }
}

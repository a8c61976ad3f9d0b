//! The PLE forward pass in dfdx on runtime-shaped tensors, exactly as `uie_model::schema` defines
//! it, shared by training, evaluation and [`predict`] (the parity oracle).
//!
//! `x = concat(embed_f[id_f mod H_f] for f in plan.embeddings, (dense − mean) / std)`. Every expert
//! is an MLP with ReLU after every layer; a gate is `softmax(h · W + b)` over its experts in listed
//! order and outputs `Σ_j g_j · expert_j`. Level 0 feeds `x` everywhere; level `l > 0` feeds task
//! k's experts and gate with task k's output of level `l − 1`, and the shared experts and gate with
//! the shared output. Tower k: hidden Linear + ReLU layers, then the `out` Linear to one logit;
//! `probs = sigmoid(logit)`. Linear: `y = x · W + b`, `W` stored `[in, out]`.
//!
//! dfdx tapes are owned by tensors, so a value used by several consumers (the level input, an
//! expert output, a gate) has its tape moved into a [`Sink`] and each consumer gets a copy with the
//! same tensor id and an empty tape; the sink's tape is merged back into the loss before
//! `backward`. With `NoneTape` (inference) all of this is free.

use std::collections::BTreeMap;

use dfdx::losses::binary_cross_entropy_with_logits_loss;
use dfdx::shapes::{Axis, HasShape, Rank0, Shape};
use dfdx::tensor::{
    AsArray, Cpu, Gradients, Merge, NoneTape, OwnedTape, PutTape, SplitTape, Tape, Tensor,
    TensorFromVec,
};
use dfdx::tensor_ops::{Backward, BroadcastTo, GatherTo, SelectTo, TryConcatAlong, TryMatMul};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uie_model::hashing::bucket;
use uie_model::schema::{Dtype, Owner, DENSE_MEAN, DENSE_STD};
use uie_model::{Checkpoint, Config, Plan, RawBatch, TensorMap};

use crate::data::Dataset;
use crate::error::TrainError;
use crate::metrics::{self, TaskMetrics};

type Mat<T = NoneTape> = Tensor<(usize, usize), f32, Cpu, T>;
type Vec1<T = NoneTape> = Tensor<(usize,), f32, Cpu, T>;

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
            mean: host(DENSE_MEAN),
            std: host(DENSE_STD),
        })
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

    /// Gradient of every trainable tensor (all but `dense.mean` / `dense.std`), as host vectors.
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

/// The backbone input `x` `[n, input_width]`.
fn input<T: Tape<f32, Cpu> + Merge<T>>(
    sink: &Sink<T>,
    p: &DeviceParams,
    plan: &Plan,
    batch: &RawBatch,
) -> Result<Mat<T>, TrainError> {
    let n = batch.n;
    let mut parts: Vec<Mat<T>> = Vec::with_capacity(plan.embeddings.len() + 1);
    for (field, table, buckets) in &plan.embeddings {
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
        let rows: Vec<usize> = ids.iter().map(|&id| bucket(id, *buckets)).collect();
        let idx = p.dev.tensor_from_vec(rows, (n,));
        let emb: Mat<T> = sink.take(p.mat(table)?).gather(idx);
        parts.push(emb);
    }
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
        let d: Mat<T> = p
            .dev
            .tensor_from_vec(values, (n, plan.n_dense))
            .put_tape(T::default());
        parts.push(d);
    }
    // Concatenate pairwise (a balanced tree): each level copies x once, instead of once per part.
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
    parts
        .pop()
        .ok_or_else(|| tensor_error("x", "the model has no input"))
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

/// The per-task logits `[n, 1]` of a batch (`n ≥ 1`).
pub(crate) fn forward<T: Tape<f32, Cpu> + Merge<T>>(
    sink: &mut Sink<T>,
    p: &DeviceParams,
    plan: &Plan,
    batch: &RawBatch,
) -> Result<Vec<Mat<T>>, TrainError> {
    let x = input(sink, p, plan, batch)?;
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
    Ok(logits)
}

/// Probabilities `[n, T]` row-major for a batch on device parameters (no checks, no tape).
pub(crate) fn probs_on(
    p: &DeviceParams,
    plan: &Plan,
    batch: &RawBatch,
) -> Result<Vec<f32>, TrainError> {
    let t = plan.towers.len();
    let mut out = Vec::with_capacity(batch.n * t);
    let mut start = 0;
    while start < batch.n {
        let end = (start + EVAL_CHUNK).min(batch.n);
        let chunk = batch.slice(start, end);
        let mut sink = Sink::<NoneTape>::new();
        let logits = forward(&mut sink, p, plan, &chunk)?;
        let mut cat: Option<Mat> = None;
        for l in logits {
            cat = Some(match cat {
                None => l,
                Some(acc) => (acc, l).concat_along(Axis::<1>),
            });
        }
        let cat = cat.ok_or_else(|| tensor_error("probs", "the model has no task"))?;
        out.extend(cat.sigmoid().as_vec());
        start = end;
    }
    Ok(out)
}

/// Loss `Σ_k w_k · mean BCE_k` of a batch and the gradient of every trainable tensor.
pub(crate) fn loss_and_gradients(
    dev: &Cpu,
    config: &Config,
    plan: &Plan,
    weights: &TensorMap,
    data: &Dataset,
) -> Result<(f32, BTreeMap<String, Vec<f32>>), TrainError> {
    let n = data.len();
    let t = config.tasks.len();
    if n == 0 || data.labels.len() != n * t {
        return Err(TrainError::Labels(format!(
            "{} labels for {n} rows × {t} tasks",
            data.labels.len()
        )));
    }
    let p = DeviceParams::new(dev, plan, weights)?;
    let mut sink = Sink::<OwnedTape<f32, Cpu>>::new();
    let logits = forward(&mut sink, &p, plan, &data.batch)?;
    let mut loss: Option<Tensor<Rank0, f32, Cpu, OwnedTape<f32, Cpu>>> = None;
    for (k, (logit, task)) in logits.into_iter().zip(&config.tasks).enumerate() {
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
    let mut grads = loss.backward();
    let g = p.gradients(&mut grads)?;
    Ok((value, g))
}

/// Names of the tensors the optimizer updates: every tensor of the plan but the dense statistics.
pub fn trainable(plan: &Plan) -> Vec<String> {
    plan.tensor_specs()
        .into_iter()
        .map(|s| s.name)
        .filter(|n| n != DENSE_MEAN && n != DENSE_STD)
        .collect()
}

/// Fresh weights: He-uniform for layers followed by ReLU (experts, tower hidden layers),
/// Xavier-uniform for gates and tower outputs, zero biases, uniform ±0.05 embeddings; `dense.mean`
/// and `dense.std` from `train_dense` (row-major `[n, n_dense]`; std 0 becomes 1).
pub fn init_weights(config: &Config, train_dense: &[f32], seed: u64) -> TensorMap {
    let plan = Plan::new(config);
    let mut rng = StdRng::seed_from_u64(seed);
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
        } else if embeds.contains(&&spec.name) {
            (0..numel).map(|_| rng.gen_range(-0.05..0.05)).collect()
        } else if spec.shape.len() == 1 {
            vec![0.0; numel]
        } else {
            let (fan_in, fan_out) = (spec.shape[0] as f32, spec.shape[1] as f32);
            let limit = if relu_layers.contains(&spec.name) {
                (6.0 / fan_in).sqrt()
            } else {
                (6.0 / (fan_in + fan_out)).sqrt()
            };
            (0..numel).map(|_| rng.gen_range(-limit..limit)).collect()
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

/// Refuses the parts of the config this trainer does not implement yet (the behaviour sequence
/// and the UIE modules) instead of silently training a different model.
pub fn check_supported(config: &Config) -> Result<(), TrainError> {
    if config.features.sequence.is_some() {
        return Err(TrainError::Unsupported(
            "features.sequence: the behaviour sequence is not implemented by this trainer yet"
                .into(),
        ));
    }
    if config.uie.any() {
        return Err(TrainError::Unsupported(
            "[uie]: the UIE modules are not implemented by this trainer yet".into(),
        ));
    }
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
    use uie_model::checkpoint::CheckpointMeta;
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
        let mut rng = StdRng::seed_from_u64(seed + 1000);
        for (name, t) in w.iter_mut() {
            if name.ends_with(".bias") || name.starts_with("embed.") {
                if let uie_model::TensorData::F32(v) = &mut t.data {
                    for x in v.iter_mut() {
                        *x += rng.gen_range(-0.5..0.5);
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
        Checkpoint {
            config: config.clone(),
            weights,
            meta: CheckpointMeta {
                format_version: uie_model::checkpoint::FORMAT_VERSION,
                producer: "test".into(),
                epoch: 0,
                metrics: BTreeMap::new(),
            },
            golden: None,
            extra: BTreeMap::new(),
        }
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
        let mut probs = Vec::new();
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
            let mut task_in = vec![x.clone(); config.tasks.len()];
            let mut shared_in = x;
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
                probs.push((1.0 / (1.0 + (-logit).exp())) as f32);
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
        let mut w = tiny_weights(&config, 3);
        let data = tiny_data();
        let dev = Cpu::default();
        let mut adam = Adam::new(0.01);
        let (first, _) = loss_and_gradients(&dev, &config, &plan, &w, &data).expect("loss");
        let mut last = first;
        for _ in 0..30 {
            let (loss, grads) = loss_and_gradients(&dev, &config, &plan, &w, &data).expect("loss");
            adam.update(&mut w, &grads).expect("update");
            last = loss;
        }
        assert!(last < 0.5 * first, "loss {first} → {last}");
        // dense statistics are frozen
        let fresh = tiny_weights(&config, 3);
        assert_eq!(w[DENSE_MEAN], fresh[DENSE_MEAN]);
        assert_eq!(w[DENSE_STD], fresh[DENSE_STD]);
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

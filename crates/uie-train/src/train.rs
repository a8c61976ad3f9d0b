//! The training loop: mini-batch Adam (written here, over host vectors), one shuffle per epoch
//! seeded by the model seed and the epoch, validation after every epoch, early stopping on the mean
//! validation AUC, `best/` and `last/` checkpoints, resume from `last/`, and a final test
//! evaluation whose numbers and golden rows are stored in `best/`.
//!
//! `last/` carries two producer-private files beside the weights: [`OPTIMIZER_FILE`] (Adam's first
//! and second moments as safetensors, `m.<tensor>` / `v.<tensor>`) and [`STATE_FILE`] (a JSON
//! [`TrainerState`]). Resuming from it continues bit-for-bit where the run left off.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dfdx::tensor::Cpu;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use uie_model::checkpoint::{from_safetensors, to_safetensors, FORMAT_VERSION};
use uie_model::config::DataKind;
use uie_model::{Checkpoint, CheckpointMeta, Config, Plan, Tensor, TensorMap};

use crate::data::{census, movielens, Dataset, Splits};
use crate::error::TrainError;
use crate::metrics::{self, TaskMetrics};
use crate::model::{self, evaluate, predict, DeviceParams};

/// Producer-private file of `last/` holding Adam's moments.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Producer-private file of `last/` holding the [`TrainerState`].
pub const STATE_FILE: &str = "trainer_state.json";
/// Rows of the test split stored as `best/golden.safetensors`.
pub const GOLDEN_ROWS: usize = 256;

/// What a training run is asked to do beyond the config.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Output directory: `<out>/best` and `<out>/last` are written there.
    pub out: PathBuf,
    /// Directory a relative `data.path` is resolved against.
    pub data_root: PathBuf,
    /// A `last` checkpoint to resume from.
    pub resume: Option<PathBuf>,
    /// Overrides `train.seed`.
    pub seed: Option<u64>,
    /// Overrides `train.epochs` (the total, counting epochs done before a resume).
    pub epochs: Option<usize>,
    /// No progress bar.
    pub quiet: bool,
    /// Keep only the first this many training rows (quick tests).
    pub max_train_rows: Option<usize>,
    /// Keep only the first this many validation and test rows (quick tests).
    pub max_eval_rows: Option<usize>,
}

impl TrainOptions {
    /// Options writing to `out`, data resolved against the current directory, nothing overridden.
    pub fn new(out: impl Into<PathBuf>) -> TrainOptions {
        TrainOptions {
            out: out.into(),
            data_root: PathBuf::from("."),
            resume: None,
            seed: None,
            epochs: None,
            quiet: false,
            max_train_rows: None,
            max_eval_rows: None,
        }
    }
}

/// What a training run achieved.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// The epoch (1-based) whose weights are in `best/`.
    pub best_epoch: usize,
    /// Epochs completed in total (including those before a resume).
    pub epochs_completed: usize,
    /// Validation metrics of the best checkpoint, per task.
    pub val: Vec<TaskMetrics>,
    /// Test metrics of the best checkpoint, per task.
    pub test: Vec<TaskMetrics>,
    /// Wall time of this run's epochs (training, validation and checkpoints), seconds.
    pub train_seconds: f64,
    /// Training rows per second of optimisation steps in this run.
    pub samples_per_second: f64,
    /// Per categorical field: `(field, distinct training ids, ids sharing a bucket)`.
    pub collisions: Vec<(String, usize, usize)>,
}

/// Early-stopping and schedule state, stored as JSON in `last/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Epochs completed.
    pub epoch: usize,
    /// Best mean validation AUC so far (`None` before the first epoch).
    pub best_score: Option<f64>,
    /// Epoch of the best score.
    pub best_epoch: usize,
    /// Epochs since the best score.
    pub epochs_without_improvement: usize,
    /// Adam steps taken.
    pub adam_step: u64,
}

/// Adam (β₁ 0.9, β₂ 0.999, ε 1e-8) with bias correction, over host vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator guard.
    pub eps: f32,
    /// Steps taken.
    pub step: u64,
    m: BTreeMap<String, Vec<f32>>,
    v: BTreeMap<String, Vec<f32>>,
}

impl Adam {
    /// A fresh optimizer with zero moments.
    pub fn new(lr: f32) -> Adam {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }

    /// One update of every tensor that has a gradient.
    pub fn update(
        &mut self,
        weights: &mut TensorMap,
        grads: &BTreeMap<String, Vec<f32>>,
    ) -> Result<(), TrainError> {
        self.step += 1;
        let t = self.step as i32;
        let c1 = 1.0 - self.beta1.powi(t);
        let c2 = 1.0 - self.beta2.powi(t);
        for (name, g) in grads {
            let w = match weights.get_mut(name).map(|t| &mut t.data) {
                Some(uie_model::TensorData::F32(w)) if w.len() == g.len() => w,
                _ => {
                    return Err(TrainError::Tensor {
                        name: name.clone(),
                        message: "gradient does not match the weights".into(),
                    })
                }
            };
            let m = self
                .m
                .entry(name.clone())
                .or_insert_with(|| vec![0.0; g.len()]);
            let v = self
                .v
                .entry(name.clone())
                .or_insert_with(|| vec![0.0; g.len()]);
            if m.len() != g.len() || v.len() != g.len() {
                return Err(TrainError::Tensor {
                    name: name.clone(),
                    message: "optimizer state does not match the weights".into(),
                });
            }
            for i in 0..g.len() {
                m[i] = self.beta1 * m[i] + (1.0 - self.beta1) * g[i];
                v[i] = self.beta2 * v[i] + (1.0 - self.beta2) * g[i] * g[i];
                let mh = m[i] / c1;
                let vh = v[i] / c2;
                w[i] -= self.lr * mh / (vh.sqrt() + self.eps);
            }
        }
        Ok(())
    }

    /// The moments as safetensors bytes (`m.<tensor>`, `v.<tensor>`, shaped like the weights).
    pub fn to_bytes(&self, weights: &TensorMap) -> Result<Vec<u8>, TrainError> {
        let mut map = TensorMap::new();
        for (prefix, moments) in [("m", &self.m), ("v", &self.v)] {
            for (name, values) in moments {
                let shape = weights
                    .get(name)
                    .map(|t| t.shape.clone())
                    .unwrap_or_else(|| vec![values.len()]);
                map.insert(
                    format!("{prefix}.{name}"),
                    Tensor::f32(shape, values.clone()),
                );
            }
        }
        Ok(to_safetensors(&map)?)
    }

    /// Restores moments written by [`Adam::to_bytes`]; every trainable tensor must have both.
    pub fn from_bytes(
        lr: f32,
        step: u64,
        bytes: &[u8],
        trainable: &[String],
        weights: &TensorMap,
        path: &Path,
    ) -> Result<Adam, TrainError> {
        let map = from_safetensors(bytes, path)?;
        let mut adam = Adam::new(lr);
        adam.step = step;
        for name in trainable {
            let numel = weights
                .get(name)
                .map(|t| t.shape.iter().product::<usize>())
                .unwrap_or(0);
            for (prefix, dst) in [("m", &mut adam.m), ("v", &mut adam.v)] {
                let key = format!("{prefix}.{name}");
                let values = map
                    .get(&key)
                    .and_then(|t| t.as_f32())
                    .filter(|v| v.len() == numel)
                    .ok_or_else(|| TrainError::Resume {
                        path: path.to_path_buf(),
                        message: format!("optimizer state {key} is missing or has the wrong size"),
                    })?;
                dst.insert(name.clone(), values.to_vec());
            }
        }
        Ok(adam)
    }
}

fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn meta(epoch: usize, metrics: BTreeMap<String, f64>) -> CheckpointMeta {
    CheckpointMeta {
        format_version: FORMAT_VERSION,
        producer: format!("uie-train {}", env!("CARGO_PKG_VERSION")),
        epoch,
        metrics,
    }
}

fn metric_map(prefix: &str, metrics: &[TaskMetrics]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for m in metrics {
        if let Some(a) = m.auc {
            out.insert(format!("{prefix}_auc.{}", m.task), a);
        }
        if m.logloss.is_finite() {
            out.insert(format!("{prefix}_logloss.{}", m.task), m.logloss);
        }
    }
    out
}

fn model_sections_equal(a: &Config, b: &Config) -> Result<(), String> {
    let diffs: Vec<&str> = [
        ("model", a.model == b.model),
        ("features", a.features == b.features),
        ("ple", a.ple == b.ple),
        ("tasks", a.tasks == b.tasks),
        ("uie", a.uie == b.uie),
    ]
    .iter()
    .filter(|(_, same)| !same)
    .map(|(name, _)| *name)
    .collect();
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the config's [{}] section(s) differ from the checkpoint's",
            diffs.join("], [")
        ))
    }
}

/// Loads the data a config names and trims it as the options ask.
pub fn load_data(config: &Config, opts: &TrainOptions) -> Result<Splits, TrainError> {
    let mut splits = match config.data.kind {
        DataKind::Census => census::load(config, &opts.data_root)?,
        DataKind::Movielens => movielens::load(config, &opts.data_root)?,
    };
    if let Some(n) = opts.max_train_rows {
        splits.train = splits.train.head(n);
    }
    if let Some(n) = opts.max_eval_rows {
        splits.val = splits.val.head(n);
        splits.test = splits.test.head(n);
    }
    if splits.train.is_empty() || splits.val.is_empty() || splits.test.is_empty() {
        return Err(TrainError::EmptyData(
            "train, validation and test sets must each have rows".into(),
        ));
    }
    Ok(splits)
}

struct Resumed {
    weights: TensorMap,
    adam: Adam,
    state: TrainerState,
}

fn resume_from(
    config: &Config,
    plan: &Plan,
    dir: &Path,
    out: &Path,
) -> Result<Resumed, TrainError> {
    let err = |message: String| TrainError::Resume {
        path: dir.to_path_buf(),
        message,
    };
    let ck = Checkpoint::read(dir)?;
    model_sections_equal(config, &ck.config).map_err(err)?;
    let state_bytes = ck
        .extra
        .get(STATE_FILE)
        .ok_or_else(|| err(format!("no {STATE_FILE}: resume needs a `last` checkpoint")))?;
    let state: TrainerState = serde_json::from_slice(state_bytes)
        .map_err(|e| err(format!("{STATE_FILE} is unreadable: {e}")))?;
    let opt_bytes = ck.extra.get(OPTIMIZER_FILE).ok_or_else(|| {
        err(format!(
            "no {OPTIMIZER_FILE}: resume needs a `last` checkpoint"
        ))
    })?;
    let adam = Adam::from_bytes(
        config.train.learning_rate,
        state.adam_step,
        opt_bytes,
        &model::trainable(plan),
        &ck.weights,
        &dir.join(OPTIMIZER_FILE),
    )?;
    // The best checkpoint of the interrupted run lives beside `last`.
    let best_dir = dir
        .parent()
        .map(|p| p.join("best"))
        .ok_or_else(|| err("has no parent directory holding `best`".into()))?;
    if state.best_score.is_some() {
        let best = Checkpoint::read(&best_dir)
            .map_err(|e| err(format!("cannot read the run's best checkpoint: {e}")))?;
        if best.meta.epoch != state.best_epoch {
            return Err(err(format!(
                "{} holds epoch {}, but the trainer state's best epoch is {}",
                best_dir.display(),
                best.meta.epoch,
                state.best_epoch
            )));
        }
        let target = out.join("best");
        let same = match (best_dir.canonicalize(), target.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same {
            best.write(&target)?;
        }
    }
    Ok(Resumed {
        weights: ck.weights,
        adam,
        state,
    })
}

fn progress(steps: usize, epoch: usize, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(steps as u64);
    if let Ok(style) =
        ProgressStyle::with_template("epoch {prefix:>3} {bar:30} {pos}/{len} {msg} [{elapsed}]")
    {
        pb.set_style(style);
    }
    pb.set_prefix(epoch.to_string());
    pb
}

/// Trains the model a config describes and writes `<out>/best` and `<out>/last`.
pub fn train(config: &Config, opts: &TrainOptions) -> Result<TrainReport, TrainError> {
    let mut config = config.clone();
    if let Some(seed) = opts.seed {
        config.train.seed = seed;
    }
    if let Some(epochs) = opts.epochs {
        config.train.epochs = epochs;
    }
    config.validate()?;
    model::check_supported(&config)?;
    let loading = Instant::now();
    let splits = load_data(&config, opts)?;
    println!(
        "data: {} train, {} validation, {} test rows (read in {:.2} s); bucket collisions:",
        splits.train.len(),
        splits.val.len(),
        splits.test.len(),
        loading.elapsed().as_secs_f64()
    );
    for (field, distinct, colliding) in &splits.collisions {
        println!("  {field}: {distinct} distinct training ids, {colliding} share a bucket");
    }
    let plan = Plan::new(&config);
    let dev = Cpu::default();
    let task_names = config.task_names();
    let best_dir = opts.out.join("best");
    let last_dir = opts.out.join("last");

    let (mut weights, mut adam, mut state) = match &opts.resume {
        Some(dir) => {
            let r = resume_from(&config, &plan, dir, &opts.out)?;
            println!(
                "resumed from {} after epoch {}",
                dir.display(),
                r.state.epoch
            );
            (r.weights, r.adam, r.state)
        }
        None => (
            model::init_weights(&config, &splits.train.batch.dense, config.train.seed),
            Adam::new(config.train.learning_rate),
            TrainerState {
                epoch: 0,
                best_score: None,
                best_epoch: 0,
                epochs_without_improvement: 0,
                adam_step: 0,
            },
        ),
    };

    let started = Instant::now();
    let mut step_seconds = 0f64;
    let mut samples = 0usize;
    let train = &splits.train;
    let batch_size = config.train.batch_size;
    while state.epoch < config.train.epochs
        && state.epochs_without_improvement < config.train.patience
    {
        let epoch = state.epoch + 1;
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(epoch_seed(
            config.train.seed,
            epoch,
        )));
        let steps = order.len().div_ceil(batch_size);
        let pb = progress(steps, epoch, opts.quiet);
        let mut loss_sum = 0f64;
        for (i, rows) in order.chunks(batch_size).enumerate() {
            let t0 = Instant::now();
            let batch = train.take(rows);
            let (loss, grads) = model::loss_and_gradients(&dev, &config, &plan, &weights, &batch)?;
            adam.update(&mut weights, &grads)?;
            step_seconds += t0.elapsed().as_secs_f64();
            samples += rows.len();
            loss_sum += f64::from(loss);
            pb.inc(1);
            pb.set_message(format!("loss {:.4}", loss_sum / (i + 1) as f64));
        }
        pb.finish_and_clear();
        let train_loss = loss_sum / steps.max(1) as f64;

        let params = DeviceParams::new(&dev, &plan, &weights)?;
        let probs = model::probs_on(&params, &plan, &splits.val.batch)?;
        let val = metrics::per_task(&task_names, &probs, &splits.val.labels)?;
        let score = metrics::mean_auc(&val);
        println!("epoch {epoch}: train loss {train_loss:.5}, mean val auc {score:.5}");
        for m in &val {
            println!("  val {m}");
        }
        state.epoch = epoch;
        state.adam_step = adam.step;
        let mut metrics = metric_map("val", &val);
        metrics.insert("train_loss".into(), train_loss);
        if state.best_score.is_none_or(|b| score > b) {
            state.best_score = Some(score);
            state.best_epoch = epoch;
            state.epochs_without_improvement = 0;
            Checkpoint {
                config: config.clone(),
                weights: weights.clone(),
                meta: meta(epoch, metrics.clone()),
                golden: None,
                extra: BTreeMap::new(),
            }
            .write(&best_dir)?;
        } else {
            state.epochs_without_improvement += 1;
        }
        let state_json = serde_json::to_vec_pretty(&state)
            .map_err(|e| TrainError::Diverged(format!("cannot serialise trainer state: {e}")))?;
        let extra = BTreeMap::from([
            (OPTIMIZER_FILE.to_string(), adam.to_bytes(&weights)?),
            (STATE_FILE.to_string(), state_json),
        ]);
        Checkpoint {
            config: config.clone(),
            weights: weights.clone(),
            meta: meta(epoch, metrics),
            golden: None,
            extra,
        }
        .write(&last_dir)?;
        if state.epochs_without_improvement >= config.train.patience {
            println!(
                "early stop: no better validation AUC for {} epochs (best epoch {})",
                state.epochs_without_improvement, state.best_epoch
            );
        }
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let samples_per_second = if step_seconds > 0.0 {
        samples as f64 / step_seconds
    } else {
        0.0
    };

    let mut best = Checkpoint::read(&best_dir)?;
    let val = evaluate(&best, &splits.val)?;
    let test = evaluate(&best, &splits.test)?;
    println!("best epoch {}: test", best.meta.epoch);
    for m in &test {
        println!("  test {m}");
    }
    let mut metrics = metric_map("val", &val);
    metrics.extend(metric_map("test", &test));
    metrics.insert("train_seconds".into(), train_seconds);
    metrics.insert("samples_per_second".into(), samples_per_second);
    best.meta.metrics = metrics;
    let golden: Dataset = splits.test.head(GOLDEN_ROWS);
    let probs = predict(&best, &golden.batch)?;
    best.golden = Some(golden.batch.to_golden(&best.config, &probs));
    best.write(&best_dir)?;
    Ok(TrainReport {
        best_epoch: best.meta.epoch,
        epochs_completed: state.epoch,
        val,
        test,
        train_seconds,
        samples_per_second,
        collisions: splits.collisions,
    })
}

/// Evaluates a checkpoint on the test split of its own config's data.
pub fn eval_checkpoint(
    checkpoint: &Checkpoint,
    data_root: &Path,
) -> Result<Vec<TaskMetrics>, TrainError> {
    let mut opts = TrainOptions::new(".");
    opts.data_root = data_root.to_path_buf();
    let splits = load_data(&checkpoint.config, &opts)?;
    evaluate(checkpoint, &splits.test)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn census_config() -> Config {
        let mut c = Config::load(&root().join("models/census-ple.toml")).expect("census config");
        c.train.batch_size = 128;
        c.train.patience = 5;
        c
    }

    fn opts(out: &Path, epochs: usize) -> TrainOptions {
        TrainOptions {
            out: out.to_path_buf(),
            data_root: root(),
            resume: None,
            seed: Some(11),
            epochs: Some(epochs),
            quiet: true,
            max_train_rows: Some(1500),
            max_eval_rows: Some(600),
        }
    }

    fn max_diff(a: &TensorMap, b: &TensorMap) -> f32 {
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        a.iter()
            .flat_map(|(name, t)| {
                let x = t.as_f32().expect("f32");
                let y = b[name].as_f32().expect("f32");
                assert_eq!(x.len(), y.len(), "{name}");
                x.iter()
                    .zip(y)
                    .map(|(p, q)| (p - q).abs())
                    .collect::<Vec<_>>()
            })
            .fold(0.0, f32::max)
    }

    #[test]
    fn resume_equals_an_uninterrupted_run() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = census_config();
        let straight = tmp.path().join("straight");
        let split = tmp.path().join("split");
        let a = train(&config, &opts(&straight, 2)).expect("2 epochs");
        let first = train(&config, &opts(&split, 1)).expect("1 epoch");
        assert_eq!(first.epochs_completed, 1);
        let mut o = opts(&split, 2);
        o.resume = Some(split.join("last"));
        let b = train(&config, &o).expect("resume 1 more");
        assert_eq!(b.epochs_completed, 2);

        let la = Checkpoint::read(&straight.join("last")).expect("a/last");
        let lb = Checkpoint::read(&split.join("last")).expect("b/last");
        let fresh = model::init_weights(&la.config, &[], 11);
        assert!(
            max_diff(&la.weights, &fresh) > 1e-3,
            "training moved the weights"
        );
        assert!(max_diff(&la.weights, &lb.weights) <= 1e-6);
        let sa: TrainerState = serde_json::from_slice(&la.extra[STATE_FILE]).expect("state");
        let sb: TrainerState = serde_json::from_slice(&lb.extra[STATE_FILE]).expect("state");
        assert_eq!(sa, sb);
        assert_eq!(sa.adam_step, 2 * 1500usize.div_ceil(128) as u64);
        let plan = Plan::new(&la.config);
        let names = model::trainable(&plan);
        let oa = Adam::from_bytes(
            0.1,
            0,
            &la.extra[OPTIMIZER_FILE],
            &names,
            &la.weights,
            Path::new("a"),
        )
        .expect("moments a");
        let ob = Adam::from_bytes(
            0.1,
            0,
            &lb.extra[OPTIMIZER_FILE],
            &names,
            &lb.weights,
            Path::new("b"),
        )
        .expect("moments b");
        for name in &names {
            for (x, y) in oa.m[name]
                .iter()
                .zip(&ob.m[name])
                .chain(oa.v[name].iter().zip(&ob.v[name]))
            {
                assert!((x - y).abs() <= 1e-6, "{name}");
            }
        }
        assert_eq!(a.best_epoch, b.best_epoch);
        assert_eq!(a.test, b.test);

        // best/ carries the test metrics and golden rows that this crate's predict reproduces.
        let best = Checkpoint::read(&split.join("best")).expect("best");
        for task in ["income", "never_married"] {
            for key in ["test_auc", "test_logloss", "val_auc"] {
                assert!(
                    best.meta.metrics.contains_key(&format!("{key}.{task}")),
                    "{key}.{task}"
                );
            }
        }
        assert!(best.meta.metrics.contains_key("samples_per_second"));
        let golden = best.golden.as_ref().expect("golden");
        let (rows, probs) = uie_model::RawBatch::from_golden(&best.config, golden).expect("rows");
        assert_eq!(rows.n, GOLDEN_ROWS);
        assert_eq!(predict(&best, &rows).expect("predict"), probs);
        let test = eval_checkpoint(&best, &root()).expect("eval");
        assert_eq!(test.len(), 2);
    }

    #[test]
    fn resume_refuses_a_different_model() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = census_config();
        let mut o = opts(tmp.path(), 1);
        o.max_train_rows = Some(300);
        o.max_eval_rows = Some(300);
        train(&config, &o).expect("1 epoch");
        let mut other = config.clone();
        other.ple.expert_hidden = vec![16, 8];
        let mut o2 = o.clone();
        o2.epochs = Some(2);
        o2.resume = Some(tmp.path().join("last"));
        let e = train(&other, &o2).expect_err("different model");
        assert!(e.to_string().contains("[ple]"), "{e}");
        // best/ has no optimizer state: not resumable.
        o2.resume = Some(tmp.path().join("best"));
        let e = train(&config, &o2).expect_err("not a last checkpoint");
        assert!(e.to_string().contains(STATE_FILE), "{e}");
    }

    #[test]
    fn unknown_feature_or_task_in_the_config_is_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut config = census_config();
        config.features.dense.push("shoe_size".into());
        let e = train(&config, &opts(tmp.path(), 1)).expect_err("unknown feature");
        assert!(e.to_string().contains("shoe_size"), "{e}");
        let mut config = census_config();
        config.tasks[1].name = "owns_a_boat".into();
        let e = train(&config, &opts(tmp.path(), 1)).expect_err("unknown task");
        assert!(e.to_string().contains("owns_a_boat"), "{e}");
    }
}

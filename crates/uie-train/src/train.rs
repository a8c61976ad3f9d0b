//! The training loop: mini-batch Adam (written here, over host vectors), one shuffle per epoch
//! seeded by the model seed and the epoch, validation after every epoch, early stopping on the mean
//! validation AUC, `best/` and `last/` checkpoints, resume from `last/`, and a final test
//! evaluation whose numbers and golden rows are stored in `best/`. [`train_with`] runs it in three
//! steps (one epoch's training and validation, its checkpoints, the finish with the test
//! evaluation) and reports each stage to an [`Observer`]; nothing here prints.
//!
//! `last/` carries producer-private files beside the weights: [`OPTIMIZER_FILE`] (Adam's first
//! and second moments as safetensors, `m.<tensor>` / `v.<tensor>`), [`STATE_FILE`] (a JSON
//! [`TrainerState`]), with UIE [`UIE_STATE_FILE`] (every centre table's stream-clustering state:
//! step count, last-assignment steps, ring of recent vectors; the tables themselves and `P` are
//! weights), and [`HISTORY_FILE`] (the [`EpochRecord`]s so far, also in `best/`). Resuming from it
//! continues bit-for-bit where the run left off.
//!
//! With UIE (`docs/model.md` §3–§4) a run has two phases:
//!
//! - **Warm-up** (`uie.warmup_epochs` epochs, recorded as [`Phase::Warmup`]): each step trains the
//!   auxiliary towers only, on `L_aux` (a separate Adam whose moments are dropped afterwards); the
//!   main model, the centres and `P` do not move. Validation is computed and recorded but does not
//!   count for early stopping or `best/`. During the last warm-up epoch the trainer collects the
//!   last 4096 `sg(v_u)`, positive `sg(v_i)` and non-empty `q_u`; at its end every enabled centre
//!   table is initialised by k-means++ on them and a fresh Adam starts the full phase. With
//!   `warmup_epochs = 0` the tables are initialised before the first step from a tape-less pass
//!   over the first batches of epoch 1 (see [`crate::model::stream`]).
//! - **Full** ([`Phase::Full`]): each step minimises `Σ_k w_k · BCE_k + α_aux · L_aux`, then, after
//!   the optimizer step, runs stream clustering on every centre table and updates `P`
//!   ([`crate::model::stream::UieRun::step`]), with one RNG per epoch seeded from the model seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dfdx::tensor::{Cache, Cpu};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use uie_model::checkpoint::{from_safetensors, to_safetensors, FORMAT_VERSION};
use uie_model::config::DataKind;
use uie_model::{Checkpoint, CheckpointMeta, Config, Plan, Tensor, TensorMap};

use crate::data::{census, movielens, Dataset, Splits};
use crate::error::TrainError;
use crate::metrics::{self, TaskMetrics};
use crate::model::stream::{Collected, SavedState, UieRun};
use crate::model::{self, evaluate, predict, DeviceParams, Objective};
use crate::observer::{DataLoaded, Observer, Silent};
use crate::report::{self, EpochRecord, EpochTimings, Phase, TableUsage};
use crate::rng;

/// Producer-private file of `last/` holding Adam's moments.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Producer-private file of `last/` holding the [`TrainerState`].
pub const STATE_FILE: &str = "trainer_state.json";
/// Producer-private file of `last/` holding the stream-clustering state of the centre tables.
pub const UIE_STATE_FILE: &str = "uie_state.json";
/// Producer-private file of `best/` and `last/` holding the epoch records (JSON array).
pub const HISTORY_FILE: &str = "history.json";
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
    /// Every epoch's record, including those before a resume.
    pub history: Vec<EpochRecord>,
    /// Peak resident set size of the process at the end of the run, bytes (`VmHWM`, Linux only).
    pub peak_rss_bytes: Option<u64>,
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
    /// Adam steps taken (by the current phase's optimizer).
    pub adam_step: u64,
    /// Whether the centre tables have been initialised by k-means++ (UIE only).
    #[serde(default)]
    pub centres_initialised: bool,
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
            // Zipped slices (no index bounds checks) let the compiler vectorise the loop; the
            // arithmetic, and so every result bit, is that of the element-by-element formula.
            let (b1, b2, lr, eps) = (self.beta1, self.beta2, self.lr, self.eps);
            for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let mh = *m / c1;
                let vh = *v / c2;
                *w -= lr * mh / (vh.sqrt() + eps);
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
    uie: Option<SavedState>,
    history: Vec<EpochRecord>,
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
    // In the warm-up, the optimizer holds the towers only.
    let in_warmup = plan.uie.is_some() && !state.centres_initialised;
    let names = if in_warmup {
        model::tower_tensors(plan)
    } else {
        model::trainable(plan)
    };
    let adam = Adam::from_bytes(
        config.train.learning_rate,
        state.adam_step,
        opt_bytes,
        &names,
        &ck.weights,
        &dir.join(OPTIMIZER_FILE),
    )?;
    let uie = match (&plan.uie, ck.extra.get(UIE_STATE_FILE)) {
        (None, _) => None,
        (Some(_), None) => return Err(err(format!("no {UIE_STATE_FILE}: the run has UIE tables"))),
        (Some(_), Some(bytes)) => Some(
            serde_json::from_slice::<SavedState>(bytes)
                .map_err(|e| err(format!("{UIE_STATE_FILE} is unreadable: {e}")))?,
        ),
    };
    let history: Vec<EpochRecord> = match ck.extra.get(HISTORY_FILE) {
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| err(format!("{HISTORY_FILE} is unreadable: {e}")))?,
        None => Vec::new(),
    };
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
        uie,
        history,
    })
}

fn json<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Vec<u8>, TrainError> {
    serde_json::to_vec_pretty(value)
        .map_err(|e| TrainError::Diverged(format!("cannot serialise {what}: {e}")))
}

/// Steps between two emptyings of dfdx's allocation cache (see [`Run::start`]).
const CACHE_STEPS: usize = 32;

/// Seeds of the per-epoch stream-clustering RNG and of the centre initialisation.
const CLUSTER_SEED: u64 = 0x5EED_C1A5_7E25_0001;
const INIT_SEED: u64 = 0x5EED_C1A5_7E25_0002;

/// Creates the output directory before any training, so a path that cannot hold the checkpoints
/// (a file, an unwritable place) is an error up front, not after the first epoch.
fn create_out_dir(out: &Path) -> Result<(), TrainError> {
    if out.exists() && !out.is_dir() {
        return Err(TrainError::io(
            out,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the output path exists and is not a directory",
            ),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))
}

/// Trains the model a config describes and writes `<out>/best` and `<out>/last`, reporting
/// nothing while it runs ([`train_with`] and [`Silent`]).
pub fn train(config: &Config, opts: &TrainOptions) -> Result<TrainReport, TrainError> {
    train_with(config, opts, &mut Silent)
}

/// Trains the model a config describes and writes `<out>/best` and `<out>/last`, telling
/// `observer` about every stage. The run has three steps: start (data, output directory, fresh or
/// resumed weights), then per epoch the epoch's training and validation and its checkpoints until
/// the epochs are done or early stopping ends the run, then the finish (the test evaluation of
/// `best/`, its golden rows and metrics).
pub fn train_with(
    config: &Config,
    opts: &TrainOptions,
    observer: &mut dyn Observer,
) -> Result<TrainReport, TrainError> {
    let mut run = Run::start(config, opts, observer)?;
    while run.wants_epoch() {
        let (record, score) = run.epoch(observer)?;
        run.checkpoint(record, score, observer)?;
    }
    run.finish(observer)
}

/// A training run between its start and its finish: the data, the weights, the optimizer, the
/// memory tables and the early-stopping state.
struct Run {
    config: Config,
    plan: Plan,
    splits: Splits,
    dev: Cpu,
    best_dir: PathBuf,
    last_dir: PathBuf,
    warmup_epochs: usize,
    weights: TensorMap,
    adam: Adam,
    state: TrainerState,
    uie: Option<UieRun>,
    history: Vec<EpochRecord>,
    /// Per training row, the user's training activity (balanced sampling).
    train_counts: Vec<u64>,
    /// The auxiliary towers' tensors, the only ones the warm-up trains.
    towers: Vec<String>,
    /// When the epoch loop started.
    started: Instant,
    /// Wall time of the optimisation steps of this run.
    step_seconds: f64,
    /// Training rows stepped over in this run.
    samples: usize,
}

impl Run {
    /// Applies the options' overrides to the config, loads the data, creates the output
    /// directory and starts from fresh weights or from the `last` checkpoint to resume.
    fn start(
        config: &Config,
        opts: &TrainOptions,
        observer: &mut dyn Observer,
    ) -> Result<Run, TrainError> {
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
        create_out_dir(&opts.out)?;
        observer.data_loaded(&DataLoaded {
            train_rows: splits.train.len(),
            val_rows: splits.val.len(),
            test_rows: splits.test.len(),
            seconds: loading.elapsed().as_secs_f64(),
            collisions: &splits.collisions,
        });
        let plan = Plan::new(&config);
        // dfdx's allocation cache: a buffer dropped by one step (activations, the full-size
        // gradient of every embedding table) is reused by the next instead of being freed and
        // allocated again (page faults and zeroing of fresh pages). Host-made buffers of sizes
        // dfdx never asks for also land in the cache, so it is emptied every `CACHE_STEPS` steps
        // and after each epoch.
        let dev = Cpu::default();
        dev.try_enable_cache()?;
        let warmup_epochs = if plan.uie.is_some() {
            config.uie.warmup_epochs
        } else {
            0
        };
        let (weights, adam, state, saved, history) = match &opts.resume {
            Some(dir) => {
                let r = resume_from(&config, &plan, dir, &opts.out)?;
                observer.resumed(dir, r.state.epoch);
                (r.weights, r.adam, r.state, r.uie, r.history)
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
                    centres_initialised: false,
                },
                None,
                Vec::new(),
            ),
        };
        let uie = UieRun::new(&config, &plan, &weights, saved.as_ref())?;
        let train_counts = splits.train_counts_of(&splits.train);
        let towers = model::tower_tensors(&plan);
        Ok(Run {
            best_dir: opts.out.join("best"),
            last_dir: opts.out.join("last"),
            config,
            plan,
            splits,
            dev,
            warmup_epochs,
            weights,
            adam,
            state,
            uie,
            history,
            train_counts,
            towers,
            started: Instant::now(),
            step_seconds: 0.0,
            samples: 0,
        })
    }

    /// Whether another epoch is due: epochs left and no early stop.
    fn wants_epoch(&self) -> bool {
        self.state.epoch < self.config.train.epochs
            && self.state.epochs_without_improvement < self.config.train.patience
    }

    /// Trains the next epoch and validates it: one shuffle seeded by the model seed and the
    /// epoch; without a warm-up, the centre initialisation before the first step; the steps (with
    /// stream clustering after each in the full phase); at the end of the warm-up, the centre
    /// initialisation and a fresh optimizer; then the validation report. Returns the epoch's
    /// record (without its checkpoint time) and its mean validation AUC.
    fn epoch(&mut self, observer: &mut dyn Observer) -> Result<(EpochRecord, f64), TrainError> {
        let Run {
            ref config,
            ref plan,
            ref splits,
            ref dev,
            warmup_epochs,
            ref mut weights,
            ref mut adam,
            ref mut state,
            ref mut uie,
            ref train_counts,
            ref towers,
            ref mut step_seconds,
            ref mut samples,
            ..
        } = *self;
        let (uie_d, embed_d) = (config.uie.dim, config.model.embed_dim);
        let train = &splits.train;
        let batch_size = config.train.batch_size;
        let epoch = state.epoch + 1;
        let epoch_started = Instant::now();
        let mut timings = EpochTimings::default();
        let warmup = uie.is_some() && epoch <= warmup_epochs;
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng::seeded(epoch_seed(config.train.seed, epoch)));
        timings.data += epoch_started.elapsed().as_secs_f64();
        let mut cluster_rng = rng::seeded(epoch_seed(config.train.seed ^ CLUSTER_SEED, epoch));
        if let Some(run) = uie
            .as_mut()
            .filter(|_| !warmup && !state.centres_initialised)
        {
            // No warm-up: initialise the centres from the first batches, before any step.
            let t0 = Instant::now();
            let params = DeviceParams::new(dev, plan, weights)?;
            let mut collected = Collected::new(uie_d, embed_d);
            for rows in order.chunks(batch_size) {
                if collected.full() {
                    break;
                }
                let batch = train.take(rows);
                let side = model::side_values(&params, plan, &batch.batch)?;
                collected.push(&side, &run.positives(&batch));
            }
            let mut rng = rng::seeded(epoch_seed(config.train.seed ^ INIT_SEED, epoch));
            run.init_centres(&collected, &mut rng, weights)?;
            state.centres_initialised = true;
            timings.clustering += t0.elapsed().as_secs_f64();
        }
        let collect = warmup && epoch == warmup_epochs;
        let mut collected = Collected::new(uie_d, embed_d);
        let objective = if warmup {
            Objective::Aux
        } else {
            Objective::Total
        };
        let steps = order.len().div_ceil(batch_size);
        // One set of device tensors for the epoch's steps, refreshed in place before each.
        let mut step_params: Option<DeviceParams> = None;
        observer.epoch_started(epoch, steps);
        let mut loss_sum = 0f64;
        let mut aux_sum = 0f64;
        let mut aux_steps = 0usize;
        for (i, rows) in order.chunks(batch_size).enumerate() {
            let t0 = Instant::now();
            let batch = train.take(rows);
            let t1 = Instant::now();
            timings.data += (t1 - t0).as_secs_f64();
            let mut r = model::train_step_with(
                &mut step_params,
                dev,
                config,
                plan,
                weights,
                &batch,
                objective,
            )?;
            timings.upload += r.times.upload;
            timings.forward += r.times.forward;
            timings.backward += r.times.backward;
            let t2 = Instant::now();
            if warmup {
                r.grads.retain(|name, _| towers.contains(name));
            }
            adam.update(weights, &r.grads)?;
            let t3 = Instant::now();
            timings.optimizer += (t3 - t2).as_secs_f64();
            if let Some(run) = uie.as_mut() {
                if collect {
                    collected.push(&r.side, &run.positives(&batch));
                } else if !warmup {
                    let counts: Vec<u64> = rows
                        .iter()
                        .map(|&row| train_counts.get(row).copied().unwrap_or(0))
                        .collect();
                    run.step(&batch, &counts, &r.side, &mut cluster_rng, weights)?;
                }
            }
            let t4 = Instant::now();
            timings.clustering += (t4 - t3).as_secs_f64();
            if (i + 1) % CACHE_STEPS == 0 {
                dev.try_empty_cache()?;
                timings.upload += t4.elapsed().as_secs_f64();
            }
            *step_seconds += t0.elapsed().as_secs_f64();
            *samples += rows.len();
            loss_sum += f64::from(r.loss);
            if let Some(a) = r.aux_loss {
                aux_sum += f64::from(a);
                aux_steps += 1;
            }
            observer.step_finished(i + 1, loss_sum / (i + 1) as f64);
        }
        observer.steps_finished();
        let train_loss = loss_sum / steps.max(1) as f64;
        if collect {
            if let Some(run) = uie.as_mut() {
                let t0 = Instant::now();
                let mut rng = rng::seeded(epoch_seed(config.train.seed ^ INIT_SEED, epoch));
                run.init_centres(&collected, &mut rng, weights)?;
                state.centres_initialised = true;
                // The full phase starts with a fresh optimizer over every trainable tensor.
                *adam = Adam::new(config.train.learning_rate);
                timings.clustering += t0.elapsed().as_secs_f64();
            }
        }
        let tables: Vec<TableUsage> = uie.as_mut().map(UieRun::usage).unwrap_or_default();

        let evaluating = Instant::now();
        // Validation runs without the allocation cache (disabling empties it): its large
        // tape-less chunks would otherwise leave every intermediate buffer size cached at once.
        drop(step_params);
        dev.try_disable_cache()?;
        let params = DeviceParams::new(dev, plan, weights)?;
        let probs = model::probs_on(&params, plan, &splits.val.batch)?;
        drop(params);
        dev.try_enable_cache()?;
        let val = report::eval_report(&config.task_names(), &probs, &splits.val)?;
        let score = metrics::mean_auc(&val.overall);
        timings.eval += evaluating.elapsed().as_secs_f64();
        let record = EpochRecord {
            epoch,
            phase: if warmup { Phase::Warmup } else { Phase::Full },
            train_loss,
            aux_loss: (aux_steps > 0).then(|| aux_sum / aux_steps as f64),
            val,
            tables,
            seconds: epoch_started.elapsed().as_secs_f64(),
            timings,
        };
        observer.epoch_validated(&record, score);
        Ok((record, score))
    }

    /// Records an epoch and writes its checkpoints: `best/` when its score beats the best so far
    /// (warm-up epochs never count), `last/` always, with the optimizer, trainer and UIE state.
    fn checkpoint(
        &mut self,
        record: EpochRecord,
        score: f64,
        observer: &mut dyn Observer,
    ) -> Result<(), TrainError> {
        let checkpointing = Instant::now();
        let epoch = record.epoch;
        let warmup = record.phase == Phase::Warmup;
        let mut metrics = metric_map("val", &record.val.overall);
        metrics.insert("train_loss".into(), record.train_loss);
        self.history.push(record);
        self.state.epoch = epoch;
        self.state.adam_step = self.adam.step;
        if !warmup {
            if self.state.best_score.is_none_or(|b| score > b) {
                self.state.best_score = Some(score);
                self.state.best_epoch = epoch;
                self.state.epochs_without_improvement = 0;
                Checkpoint {
                    config: self.config.clone(),
                    weights: self.weights.clone(),
                    meta: meta(epoch, metrics.clone()),
                    golden: None,
                    extra: BTreeMap::from([(
                        HISTORY_FILE.to_string(),
                        json(&self.history, "history")?,
                    )]),
                }
                .write(&self.best_dir)?;
            } else {
                self.state.epochs_without_improvement += 1;
            }
        }
        let mut extra = BTreeMap::from([
            (
                OPTIMIZER_FILE.to_string(),
                self.adam.to_bytes(&self.weights)?,
            ),
            (STATE_FILE.to_string(), json(&self.state, "trainer state")?),
            (HISTORY_FILE.to_string(), json(&self.history, "history")?),
        ]);
        if let Some(run) = &self.uie {
            extra.insert(UIE_STATE_FILE.to_string(), json(&run.saved(), "UIE state")?);
        }
        Checkpoint {
            config: self.config.clone(),
            weights: self.weights.clone(),
            meta: meta(epoch, metrics),
            golden: None,
            extra,
        }
        .write(&self.last_dir)?;
        // The checkpoint writes of this epoch are known only now: the in-memory record (and so
        // the final `best/history.json`) gets them; this epoch's record in `last/` has zero.
        if let Some(record) = self.history.last_mut() {
            record.timings.checkpoint = checkpointing.elapsed().as_secs_f64();
            observer.epoch_checkpointed(record);
        }
        if self.state.epochs_without_improvement >= self.config.train.patience {
            observer.early_stop(self.state.epochs_without_improvement, self.state.best_epoch);
        }
        Ok(())
    }

    /// Ends the run: evaluates `best/` on the validation and test splits and rewrites it with
    /// those metrics, the run's speed, the golden rows and the whole history.
    fn finish(self, observer: &mut dyn Observer) -> Result<TrainReport, TrainError> {
        let train_seconds = self.started.elapsed().as_secs_f64();
        let samples_per_second = if self.step_seconds > 0.0 {
            self.samples as f64 / self.step_seconds
        } else {
            0.0
        };
        if self.state.best_score.is_none() {
            // Only warm-up epochs ran: `best/` is the last state.
            Checkpoint {
                config: self.config.clone(),
                weights: self.weights.clone(),
                meta: meta(self.state.epoch, BTreeMap::new()),
                golden: None,
                extra: BTreeMap::new(),
            }
            .write(&self.best_dir)?;
        }
        let mut best = Checkpoint::read(&self.best_dir)?;
        let val = evaluate(&best, &self.splits.val)?;
        let test = evaluate(&best, &self.splits.test)?;
        observer.finished(best.meta.epoch, &test);
        let mut metrics = metric_map("val", &val);
        metrics.extend(metric_map("test", &test));
        metrics.insert("train_seconds".into(), train_seconds);
        metrics.insert("samples_per_second".into(), samples_per_second);
        let peak_rss_bytes = report::peak_rss_bytes();
        if let Some(bytes) = peak_rss_bytes {
            metrics.insert("peak_rss_mib".into(), bytes as f64 / (1024.0 * 1024.0));
        }
        best.meta.metrics = metrics;
        let golden: Dataset = self.splits.test.head(GOLDEN_ROWS);
        let probs = predict(&best, &golden.batch)?;
        best.golden = Some(golden.batch.to_golden(&best.config, &probs));
        best.extra = BTreeMap::from([(HISTORY_FILE.to_string(), json(&self.history, "history")?)]);
        best.write(&self.best_dir)?;
        Ok(TrainReport {
            best_epoch: best.meta.epoch,
            epochs_completed: self.state.epoch,
            val,
            test,
            train_seconds,
            samples_per_second,
            collisions: self.splits.collisions,
            history: self.history,
            peak_rss_bytes,
        })
    }
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
    fn adam_is_the_element_by_element_formula_bit_for_bit() {
        let w0 = vec![0.5f32, -1.0, 2.0, 0.0, 3.0, -0.25, 1e-3];
        let g = vec![0.1f32, -0.2, 0.0, 1e-3, 5.0, -7.5, 1e-6];
        let mut weights = TensorMap::from([("a".to_string(), Tensor::f32(vec![7], w0.clone()))]);
        let grads = BTreeMap::from([("a".to_string(), g.clone())]);
        let mut adam = Adam::new(0.01);
        let (mut w, mut m, mut v) = (w0, vec![0f32; 7], vec![0f32; 7]);
        for t in 1..=5 {
            adam.update(&mut weights, &grads).expect("update");
            let c1 = 1.0 - 0.9f32.powi(t);
            let c2 = 1.0 - 0.999f32.powi(t);
            for i in 0..7 {
                m[i] = 0.9 * m[i] + (1.0 - 0.9) * g[i];
                v[i] = 0.999 * v[i] + (1.0 - 0.999) * g[i] * g[i];
                w[i] -= 0.01 * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8);
            }
            let got: Vec<u32> = weights["a"]
                .as_f32()
                .expect("f32")
                .iter()
                .map(|x| x.to_bits())
                .collect();
            let want: Vec<u32> = w.iter().map(|x| x.to_bits()).collect();
            assert_eq!(got, want, "step {t}");
        }
        assert_eq!(adam.step, 5);
        let mut short = TensorMap::from([("a".to_string(), Tensor::f32(vec![2], vec![0.0; 2]))]);
        assert!(adam.update(&mut short, &grads).is_err());
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
    fn uie_resume_keeps_every_table() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut config =
            Config::load(&root().join("models/movielens-uie.toml")).expect("movielens config");
        config.train.batch_size = 128;
        config.train.patience = 10;
        config.uie.warmup_epochs = 1;
        // Reseeding within the run, so the saved rings matter.
        config.uie.clustering.reseed_after = 3;
        let o = |out: &Path, epochs: usize| TrainOptions {
            max_train_rows: Some(1200),
            max_eval_rows: Some(400),
            ..opts(out, epochs)
        };
        let straight = tmp.path().join("straight");
        let split = tmp.path().join("split");
        let a = train(&config, &o(&straight, 3)).expect("3 epochs");
        train(&config, &o(&split, 2)).expect("2 epochs");
        let mut resumed = o(&split, 3);
        resumed.resume = Some(split.join("last"));
        let b = train(&config, &resumed).expect("resume 1 more");
        assert_eq!(b.epochs_completed, 3);
        assert_eq!(a.history.len(), 3);
        assert_eq!(b.history.len(), 3);
        assert_eq!(a.history[0].phase, Phase::Warmup);
        assert_eq!(a.history[2].phase, Phase::Full);
        assert_eq!(a.history[2].tables, b.history[2].tables);
        assert!(
            a.history[2].tables.iter().all(|t| t.used > 0),
            "{:?}",
            a.history[2].tables
        );

        let la = Checkpoint::read(&straight.join("last")).expect("a/last");
        let lb = Checkpoint::read(&split.join("last")).expect("b/last");
        let fresh = model::init_weights(&la.config, &[], 11);
        for name in [
            "memory.upe",
            "memory.ucbe",
            "memory.ucse",
            "memory.personal",
        ] {
            assert!(
                max_diff(
                    &TensorMap::from([(name.to_string(), la.weights[name].clone())]),
                    &TensorMap::from([(name.to_string(), fresh[name].clone())])
                ) > 1e-3,
                "{name} never moved"
            );
        }
        assert!(max_diff(&la.weights, &lb.weights) <= 1e-6);
        assert_eq!(la.extra[UIE_STATE_FILE], lb.extra[UIE_STATE_FILE]);
        assert_eq!(la.extra[STATE_FILE], lb.extra[STATE_FILE]);
        assert_eq!(a.test, b.test);

        // best/ has the history and golden rows (with the sequence) that predict reproduces.
        let best = Checkpoint::read(&split.join("best")).expect("best");
        let history: Vec<EpochRecord> =
            serde_json::from_slice(&best.extra[HISTORY_FILE]).expect("history");
        // (serde_json's float parsing is not bit-exact: compare what is not a float.)
        assert_eq!(history.len(), b.history.len());
        for (h, r) in history.iter().zip(&b.history) {
            assert_eq!((h.epoch, h.phase), (r.epoch, r.phase));
            assert_eq!(h.val.overall.len(), r.val.overall.len());
        }
        let golden = best.golden.as_ref().expect("golden");
        let (rows, probs) = uie_model::RawBatch::from_golden(&best.config, golden).expect("rows");
        assert!(rows.history.is_some());
        assert_eq!(predict(&best, &rows).expect("predict"), probs);
    }

    /// Every observer call of a run, as text.
    #[derive(Default)]
    struct Recorder(Vec<String>);

    impl Observer for Recorder {
        fn data_loaded(&mut self, data: &DataLoaded<'_>) {
            self.0.push(format!("data {}", data.train_rows));
        }
        fn resumed(&mut self, _from: &Path, epoch: usize) {
            self.0.push(format!("resumed {epoch}"));
        }
        fn epoch_started(&mut self, epoch: usize, steps: usize) {
            self.0.push(format!("epoch {epoch} of {steps} steps"));
        }
        fn step_finished(&mut self, step: usize, mean_loss: f64) {
            assert!(mean_loss.is_finite() && mean_loss > 0.0, "{mean_loss}");
            self.0.push(format!("step {step}"));
        }
        fn steps_finished(&mut self) {
            self.0.push("steps done".into());
        }
        fn epoch_validated(&mut self, record: &EpochRecord, mean_val_auc: f64) {
            assert_eq!(record.timings.checkpoint, 0.0);
            assert_eq!(mean_val_auc, metrics::mean_auc(&record.val.overall));
            self.0.push(format!("validated {}", record.epoch));
        }
        fn epoch_checkpointed(&mut self, record: &EpochRecord) {
            assert!(record.timings.checkpoint > 0.0);
            self.0.push(format!("checkpointed {}", record.epoch));
        }
        fn early_stop(&mut self, epochs_without_improvement: usize, best_epoch: usize) {
            self.0.push(format!(
                "early stop {epochs_without_improvement} {best_epoch}"
            ));
        }
        fn finished(&mut self, best_epoch: usize, test: &[TaskMetrics]) {
            self.0.push(format!("finished {best_epoch} {}", test.len()));
        }
    }

    #[test]
    fn the_observer_sees_every_stage_in_order() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = census_config();
        let mut o = opts(tmp.path(), 2);
        o.max_train_rows = Some(300);
        o.max_eval_rows = Some(300);
        let mut seen = Recorder::default();
        let report = train_with(&config, &o, &mut seen).expect("2 epochs");
        let epoch = |e: usize| {
            vec![
                format!("epoch {e} of 3 steps"),
                "step 1".into(),
                "step 2".into(),
                "step 3".into(),
                "steps done".into(),
                format!("validated {e}"),
                format!("checkpointed {e}"),
            ]
        };
        let mut want = vec!["data 300".to_string()];
        want.extend(epoch(1));
        want.extend(epoch(2));
        want.push(format!("finished {} 2", report.best_epoch));
        assert_eq!(seen.0, want);

        o.epochs = Some(3);
        o.resume = Some(tmp.path().join("last"));
        let mut seen = Recorder::default();
        let report = train_with(&config, &o, &mut seen).expect("1 more epoch");
        let mut want = vec!["data 300".to_string(), "resumed 2".to_string()];
        want.extend(epoch(3));
        want.push(format!("finished {} 2", report.best_epoch));
        assert_eq!(seen.0, want);
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

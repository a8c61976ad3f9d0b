//! The training-time side of the UIE memory tables (`docs/model.md` §3–§4): the stream
//! clustering of `M_upe`, `M_ucbe`, `M_ucse` and the updates of the personalised memory `P`,
//! run on the host after every optimizer step of the full phase, and the k-means++ initialisation
//! of the centre tables after the warm-up.
//!
//! Per step, for each enabled table (in the order UPE, UCBE, UCSE), with one seeded RNG per epoch:
//!
//! 1. balanced sampling ([`balanced_sample`]) over the batch's users (`Dataset::users`; without
//!    them, the ids of the first user-group field), activity = the user's number of positive
//!    training events (`Splits::user_train_counts`), buckets `uie.clustering.activity_buckets`,
//!    at most `uie.clustering.per_bucket` users each. Eligible rows: every row for `M_upe`
//!    (vectors `sg(v_u)`), positive rows (`y_aux = 1`) for `M_ucbe` (vectors `sg(v_i)`), rows with
//!    `hist_len > 0` for `M_ucse` (vectors `q_u`);
//! 2. one [`StreamClusterer::step`] (rule `uie.clustering.update`, rate ρ, reseeding after
//!    `uie.clustering.reseed_after` steps without an assignment, ring of 4096 recent vectors);
//!
//! then `P` moves for **every** positive sample of the batch ([`PersonalMemory::update`] against
//! the `M_ucbe` just updated, `K2`, `ρ_p`), user row = `user_id mod H_user`.
//!
//! Initialisation ([`UieRun::init_centres`]): each enabled table becomes k-means++ (D² seeding, no
//! Lloyd iterations) over the last [`INIT_VECTORS`] eligible vectors collected
//! ([`Collected`]): during the last warm-up epoch, or, with `warmup_epochs = 0`, from a tape-less
//! forward pass over the first batches of the first epoch's order (before any step). A table with
//! fewer collected vectors than centres takes every vector once, then repeats them cyclically with
//! a uniform ±1e-3 jitter per value (so the duplicates are distinct); with none it keeps its
//! placeholder values.

use std::collections::BTreeMap;

use rand::RngExt;
use serde::{Deserialize, Serialize};
use uie_model::hashing::bucket;
use uie_model::schema::{Plan, Retrieval as RetrievalPlan};
use uie_model::{Config, Tensor, TensorMap};

use super::Side;
use crate::data::Dataset;
use crate::error::TrainError;
use crate::report::TableUsage;
use crate::rng::SeedRng;
use crate::uie::{
    balanced_sample, kmeans_pp_init, ActivityBuckets, ClusterConfig, ClustererState, MemoryConfig,
    PersonalMemory, StreamClusterer, Table,
};

/// Recent vectors per table kept for the k-means++ initialisation (and the reseeding ring).
pub const INIT_VECTORS: usize = 4096;

/// Which vectors a centre table clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `sg(v_u)` of every row.
    UserVectors,
    /// `sg(v_i)` of positive rows.
    PositiveItems,
    /// `q_u` of rows with `hist_len > 0`.
    Sequences,
}

/// One centre table being clustered.
struct TableRun {
    name: String,
    source: Source,
    clusterer: StreamClusterer,
    reseeded: usize,
}

/// The saved stream-clustering state of a run (`last/uie_state.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    /// Per centre table name, its clusterer state.
    pub tables: BTreeMap<String, ClustererState>,
}

/// Vectors collected for the k-means++ initialisation: the last [`INIT_VECTORS`] of each kind.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    v_u: Vec<f32>,
    v_i: Vec<f32>,
    q_u: Vec<f32>,
    d: usize,
    d_e: usize,
}

fn keep_last(buf: &mut Vec<f32>, width: usize) {
    let cap = INIT_VECTORS * width;
    if width > 0 && buf.len() > 2 * cap {
        buf.drain(..buf.len() - cap);
    }
}

fn last_rows(buf: &[f32], width: usize) -> (&[f32], usize) {
    if width == 0 {
        return (&[], 0);
    }
    let n = (buf.len() / width).min(INIT_VECTORS);
    (&buf[buf.len() - n * width..], n)
}

impl Collected {
    /// An empty collection for vectors of width `d` (`v_u`, `v_i`) and `d_e` (`q_u`).
    pub fn new(d: usize, d_e: usize) -> Collected {
        Collected {
            d,
            d_e,
            ..Collected::default()
        }
    }

    /// Adds a batch's eligible vectors.
    pub fn push(&mut self, side: &Side, positive: &[bool]) {
        let (d, e) = (self.d, self.d_e);
        for (r, &pos) in positive.iter().enumerate() {
            if let Some(v) = side.v_u.get(r * d..(r + 1) * d) {
                self.v_u.extend_from_slice(v);
            }
            if pos {
                if let Some(v) = side.v_i.get(r * d..(r + 1) * d) {
                    self.v_i.extend_from_slice(v);
                }
            }
            if side.has_hist.get(r).copied().unwrap_or(false) {
                if let Some(v) = side.q_u.get(r * e..(r + 1) * e) {
                    self.q_u.extend_from_slice(v);
                }
            }
        }
        keep_last(&mut self.v_u, d);
        keep_last(&mut self.v_i, d);
        keep_last(&mut self.q_u, e);
    }

    /// Whether every kind holds [`INIT_VECTORS`] vectors already.
    pub fn full(&self) -> bool {
        [
            (&self.v_u, self.d),
            (&self.v_i, self.d),
            (&self.q_u, self.d_e),
        ]
        .iter()
        .all(|(b, w)| *w == 0 || b.len() >= INIT_VECTORS * w)
    }

    fn vectors(&self, source: Source) -> (&[f32], usize) {
        match source {
            Source::UserVectors => last_rows(&self.v_u, self.d),
            Source::PositiveItems => last_rows(&self.v_i, self.d),
            Source::Sequences => last_rows(&self.q_u, self.d_e),
        }
    }
}

/// The UIE memory state of a training run.
pub struct UieRun {
    tables: Vec<TableRun>,
    personal: Option<(String, PersonalMemory)>,
    user_field: Option<(String, usize)>,
    fallback_user_field: Option<String>,
    buckets: ActivityBuckets,
    per_bucket: usize,
    aux_col: usize,
    n_tasks: usize,
}

fn table_of(weights: &TensorMap, r: &RetrievalPlan) -> Result<Table, TrainError> {
    let values = weights
        .get(&r.table)
        .and_then(|t| t.as_f32())
        .ok_or_else(|| TrainError::Tensor {
            name: r.table.clone(),
            message: "missing".into(),
        })?;
    Ok(Table::new(r.centres, r.width, values.to_vec())?)
}

fn store(weights: &mut TensorMap, name: &str, table: &Table) {
    weights.insert(
        name.to_string(),
        Tensor::f32(vec![table.rows(), table.width()], table.data().to_vec()),
    );
}

impl UieRun {
    /// The run's tables from `weights` (and, on resume, the saved clusterer states); `None` when
    /// no UIE module is enabled.
    pub fn new(
        config: &Config,
        plan: &Plan,
        weights: &TensorMap,
        saved: Option<&SavedState>,
    ) -> Result<Option<UieRun>, TrainError> {
        let Some(uie) = &plan.uie else {
            return Ok(None);
        };
        let c = &config.uie.clustering;
        let cluster_config = ClusterConfig {
            rho: c.rho,
            update: c.update,
            dead_after: c.reseed_after as u64,
            ring_capacity: INIT_VECTORS,
        };
        let mut tables = Vec::new();
        let specs = [
            (uie.upe.as_ref().map(|m| &m.retrieval), Source::UserVectors),
            (
                uie.ucbe.as_ref().map(|m| &m.retrieval),
                Source::PositiveItems,
            ),
            (uie.ucse.as_ref().map(|m| &m.retrieval), Source::Sequences),
        ];
        for (retrieval, source) in specs {
            let Some(r) = retrieval else { continue };
            let table = table_of(weights, r)?;
            let clusterer = match saved.and_then(|s| s.tables.get(&r.table)) {
                Some(state) => {
                    StreamClusterer::restore(table, cluster_config.clone(), state.clone())?
                }
                None if saved.is_some() => {
                    return Err(TrainError::Tensor {
                        name: r.table.clone(),
                        message: "no saved clustering state to resume from".into(),
                    })
                }
                None => StreamClusterer::new(table, cluster_config.clone())?,
            };
            tables.push(TableRun {
                name: r.table.clone(),
                source,
                clusterer,
                reseeded: 0,
            });
        }
        let mut personal = None;
        let mut user_field = None;
        if let Some(ucbe) = &uie.ucbe {
            let values = weights
                .get(&ucbe.personal)
                .and_then(|t| t.as_f32())
                .ok_or_else(|| TrainError::Tensor {
                    name: ucbe.personal.clone(),
                    message: "missing".into(),
                })?;
            let table = Table::new(ucbe.users, uie.dim, values.to_vec())?;
            let memory = PersonalMemory::from_table(
                table,
                MemoryConfig {
                    k2: ucbe.retrieval.k,
                    rho_p: config.uie.ucbe.rho_p,
                },
            )?;
            personal = Some((ucbe.personal.clone(), memory));
            user_field = Some((ucbe.user_field.clone(), ucbe.users));
        }
        Ok(Some(UieRun {
            tables,
            personal,
            user_field,
            fallback_user_field: uie.user_tower.fields.first().cloned(),
            buckets: ActivityBuckets::new(c.activity_buckets.clone())?,
            per_bucket: c.per_bucket,
            aux_col: super::aux_task_index(config)?,
            n_tasks: config.tasks.len(),
        }))
    }

    /// `y_aux = 1` per row of `data`.
    pub fn positives(&self, data: &Dataset) -> Vec<bool> {
        (0..data.len())
            .map(|r| {
                data.labels
                    .get(r * self.n_tasks + self.aux_col)
                    .is_some_and(|&y| y >= 0.5)
            })
            .collect()
    }

    /// The state to save in `last/`.
    pub fn saved(&self) -> SavedState {
        SavedState {
            tables: self
                .tables
                .iter()
                .map(|t| (t.name.clone(), t.clusterer.state()))
                .collect(),
        }
    }

    /// Replaces every centre table by k-means++ over the collected vectors (see the module doc)
    /// and writes the tables into `weights`.
    pub fn init_centres(
        &mut self,
        collected: &Collected,
        rng: &mut SeedRng,
        weights: &mut TensorMap,
    ) -> Result<(), TrainError> {
        for t in &mut self.tables {
            let (vectors, n) = collected.vectors(t.source);
            let rows = t.clusterer.table().rows();
            let width = t.clusterer.table().width();
            let table = if n >= rows {
                kmeans_pp_init(vectors, n, width, rows, 0, rng)?
            } else if n > 0 {
                let mut data = Vec::with_capacity(rows * width);
                for i in 0..rows {
                    let v = &vectors[(i % n) * width..(i % n + 1) * width];
                    if i < n {
                        data.extend_from_slice(v);
                    } else {
                        data.extend(v.iter().map(|x| x + rng.random_range(-1e-3f32..1e-3)));
                    }
                }
                Table::new(rows, width, data)?
            } else {
                continue;
            };
            t.clusterer.set_table(table)?;
            store(weights, &t.name, t.clusterer.table());
        }
        Ok(())
    }

    fn users_of(&self, data: &Dataset) -> Vec<i64> {
        if data.users.len() == data.len() {
            return data.users.clone();
        }
        self.fallback_user_field
            .as_ref()
            .and_then(|f| data.batch.categorical.get(f))
            .cloned()
            .unwrap_or_else(|| (0..data.len() as i64).collect())
    }

    /// One step of stream clustering of every table, then the `P` update (see the module doc);
    /// `counts[r]` is row r's user activity. Writes the moved tables into `weights`.
    pub fn step(
        &mut self,
        data: &Dataset,
        counts: &[u64],
        side: &Side,
        rng: &mut SeedRng,
        weights: &mut TensorMap,
    ) -> Result<(), TrainError> {
        let n = data.len();
        let users = self.users_of(data);
        let positive = self.positives(data);
        for t in &mut self.tables {
            let (values, width, eligible): (&[f32], usize, Option<&[bool]>) = match t.source {
                Source::UserVectors => (&side.v_u, t.clusterer.table().width(), None),
                Source::PositiveItems => (&side.v_i, t.clusterer.table().width(), Some(&positive)),
                Source::Sequences => (&side.q_u, t.clusterer.table().width(), Some(&side.has_hist)),
            };
            if values.len() != n * width {
                return Err(TrainError::Tensor {
                    name: t.name.clone(),
                    message: format!("{} clustering values for {n} rows", values.len()),
                });
            }
            let rows = balanced_sample(
                &users,
                counts,
                eligible,
                &self.buckets,
                self.per_bucket,
                rng,
            )?;
            let mut vectors = Vec::with_capacity(rows.len() * width);
            for &r in &rows {
                vectors.extend_from_slice(&values[r * width..(r + 1) * width]);
            }
            let report = t.clusterer.step(&vectors, rows.len(), rng)?;
            t.reseeded += report.reseeded.len();
            store(weights, &t.name, t.clusterer.table());
        }
        if let (Some((name, memory)), Some((field, users_rows))) =
            (&mut self.personal, &self.user_field)
        {
            let ucbe = self
                .tables
                .iter()
                .find(|t| t.source == Source::PositiveItems)
                .ok_or_else(|| TrainError::Tensor {
                    name: name.clone(),
                    message: "P needs the UCBE centre table".into(),
                })?;
            let ids = data
                .batch
                .categorical
                .get(field)
                .ok_or_else(|| TrainError::Tensor {
                    name: format!("input {field}"),
                    message: "missing from the batch".into(),
                })?;
            let rows: Vec<usize> = ids.iter().map(|&id| bucket(id, *users_rows)).collect();
            memory.update(&rows, &side.v_i, &positive, ucbe.clusterer.table())?;
            store(weights, name, memory.table());
        }
        Ok(())
    }

    /// The epoch's usage of every centre table; clears the epoch counters.
    pub fn usage(&mut self) -> Vec<TableUsage> {
        self.tables
            .iter_mut()
            .map(|t| {
                let d = t.clusterer.reset_epoch();
                let reseeded = std::mem::take(&mut t.reseeded);
                TableUsage {
                    table: t.name.clone(),
                    centres: d.centres,
                    used: d.used,
                    entropy: d.entropy,
                    reseeded,
                }
            })
            .collect()
    }
}

//! Stream clustering of one centre table (`docs/model.md` §4 steps 1–4), its collapse
//! diagnostics (§4, last paragraph) and the k-means++ initialisation of the warm-up (§3).
//!
//! One training step of a table (`M_upe`, `M_ucbe` or `M_ucse`) is:
//!
//! 1. **Balanced sampling** ([`balanced_sample`]): the batch's users are split into activity
//!    buckets by their training-interaction count ([`ActivityBuckets`], default upper bounds
//!    `[5, 20, 100]`: `0-5, 6-20, 21-100, >100`) and at most `m` *distinct* users are taken per
//!    bucket. **Choice:** a selected user contributes exactly **one** row (drawn uniformly among
//!    that user's eligible rows in the batch), so the cap on distinct users is also a cap on rows
//!    and a very active user with many rows in the batch still moves the centres once.
//! 2. **Assignment** ([`assign`]): `c(v) = argmax_i <v, M_i>`, ties toward the lower index.
//! 3. **Update** with rate ρ, on the table as it was before the step:
//!    - `"mean"` ([`update_mean`]): `M_c ← M_c + ρ · mean_{v: c(v)=c}(v − M_c)`; a centre with no
//!      assigned vector does not move.
//!    - `"softmax_ce"` ([`update_softmax_ce`]): one gradient step of rate ρ on
//!      `L(M) = (1/n) Σ_v −log softmax_i(<v, M_i>)[c(v)]`, with `c(v)` computed before the step and
//!      held fixed. By hand, with `p_j(v) = softmax_j(<v, M_·>)`:
//!      `∂L/∂M_j = (1/n) Σ_v (p_j(v) − 1[j = c(v)]) · v`, and `M_j ← M_j − ρ · ∂L/∂M_j`. Every
//!      centre moves (the non-target ones are pushed away from `v` in proportion to `p_j`). Scores
//!      and gradients are computed in f64 with the max-subtracted softmax.
//! 4. **Dead-centre reseeding** ([`StreamClusterer::step`]): each centre remembers the step of its
//!    last assignment (creation and reseeding count as an assignment). Steps are numbered from 1;
//!    after step `t` a centre with `t − last ≥ R` (default `R = 200`, `0` disables reseeding) was
//!    assigned nothing in the last `R` steps and is replaced by a vector drawn uniformly, without
//!    replacement, from a bounded ring buffer of the table's recent vectors (default 4096; every
//!    vector passed to `step` or [`StreamClusterer::remember`] enters it, this step's included).
//!    If the ring holds fewer vectors than there are dead centres, the lowest-index dead centres
//!    are reseeded and the rest wait for the next step.
//!
//! Diagnostics ([`Diagnostics`]): a per-epoch histogram of assignments gives the number of centres
//! used (count ≥ 1) and the entropy `−Σ p ln p` of the assignment distribution (natural log, 0 when
//! nothing was assigned); [`StreamClusterer::reset_epoch`] returns them and clears the histogram.
//!
//! k-means++ ([`kmeans_pp_indices`], [`kmeans_pp_init`]): **choice:** D² seeding uses squared
//! Euclidean distance (the standard rule; an inner-product "distance" is not a metric and has no
//! D² analogue). The first centre is uniform, each next one is drawn with probability ∝ D²(x), the
//! squared distance to the nearest chosen centre, so chosen points (D² = 0) are never drawn again;
//! if every remaining D² is 0 (fewer distinct vectors than `k`) the next centre is drawn uniformly
//! among the not-yet-chosen indices. Indices are always distinct. Optional Lloyd iterations then
//! refine the table with the **inner-product** assignment of step 2 (so the result is consistent
//! with stream clustering): each centre becomes the mean of its assigned vectors, empty centres
//! stay. Everything is deterministic for a seeded [`SeedRng`].

use std::collections::HashMap;

use rand::seq::index;
use rand::RngExt;

use super::retrieval::score_row;
use super::{check_finite, check_vectors, Table, UieError};
use crate::rng::SeedRng;

/// Upper bounds (inclusive) of the activity buckets of balanced sampling: `[5, 20, 100]` means the
/// buckets `0-5, 6-20, 21-100, >100`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityBuckets {
    upper: Vec<u64>,
}

impl Default for ActivityBuckets {
    fn default() -> Self {
        ActivityBuckets {
            upper: vec![5, 20, 100],
        }
    }
}

impl ActivityBuckets {
    /// Buckets from strictly increasing inclusive upper bounds (empty: one bucket for everyone).
    pub fn new(upper: Vec<u64>) -> Result<Self, UieError> {
        if upper.windows(2).any(|w| w[0] >= w[1]) {
            return Err(UieError::invalid(
                "activity buckets",
                format!("upper bounds {upper:?} must be strictly increasing"),
            ));
        }
        Ok(ActivityBuckets { upper })
    }

    /// The inclusive upper bounds.
    pub fn upper(&self) -> &[u64] {
        &self.upper
    }

    /// Number of buckets (`upper.len() + 1`).
    pub fn count(&self) -> usize {
        self.upper.len() + 1
    }

    /// The bucket of a user with `interactions` training interactions.
    pub fn bucket(&self, interactions: u64) -> usize {
        self.upper.partition_point(|&u| u < interactions)
    }
}

/// Balanced sampling (§4 step 1): returns ascending row indices of at most `m` distinct users per
/// activity bucket, one row per selected user.
///
/// `user_ids[r]` and `counts[r]` are row `r`'s user (any stable id, e.g. the user-id bucket row)
/// and that user's training-interaction count; a user's bucket is taken from its first row.
/// `eligible` (same length) restricts sampling to some rows, e.g. positive samples for `M_ucbe` or
/// `hist_len > 0` for `M_ucse`. When a bucket has more than `m` users, `m` of them are drawn
/// uniformly without replacement; each selected user's row is drawn uniformly among its eligible
/// rows. Deterministic for a given `rng` state.
pub fn balanced_sample(
    user_ids: &[i64],
    counts: &[u64],
    eligible: Option<&[bool]>,
    buckets: &ActivityBuckets,
    m: usize,
    rng: &mut SeedRng,
) -> Result<Vec<usize>, UieError> {
    if counts.len() != user_ids.len() {
        return Err(UieError::shape(
            "balanced sampling counts",
            format!("{} counts for {} rows", counts.len(), user_ids.len()),
        ));
    }
    if let Some(e) = eligible {
        if e.len() != user_ids.len() {
            return Err(UieError::shape(
                "balanced sampling eligible",
                format!("{} flags for {} rows", e.len(), user_ids.len()),
            ));
        }
    }
    if m == 0 {
        return Err(UieError::invalid(
            "balanced sampling m",
            "must be ≥ 1 user per bucket",
        ));
    }

    // Distinct users in order of first (eligible) occurrence, with their eligible rows.
    let mut group_of: HashMap<i64, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut per_bucket: Vec<Vec<usize>> = vec![Vec::new(); buckets.count()];
    for (r, (&u, &c)) in user_ids.iter().zip(counts).enumerate() {
        if eligible.is_some_and(|e| !e.get(r).copied().unwrap_or(false)) {
            continue;
        }
        match group_of.get(&u) {
            Some(&g) => groups[g].push(r),
            None => {
                let g = groups.len();
                group_of.insert(u, g);
                groups.push(vec![r]);
                if let Some(b) = per_bucket.get_mut(buckets.bucket(c)) {
                    b.push(g);
                }
            }
        }
    }

    let mut out = Vec::new();
    for users in &per_bucket {
        let chosen: Vec<usize> = if users.len() > m {
            let mut pick = index::sample(rng, users.len(), m).into_vec();
            pick.sort_unstable();
            pick.into_iter().map(|i| users[i]).collect()
        } else {
            users.clone()
        };
        for g in chosen {
            let rows = &groups[g];
            out.push(rows[rng.random_range(0..rows.len())]);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Assignment (§4 step 2): `c(v) = argmax_i <v, M_i>` for each of the `n` row-major `vectors`,
/// ties toward the lower index. Errors on a width mismatch or a non-finite score.
pub fn assign(vectors: &[f32], n: usize, table: &Table) -> Result<Vec<usize>, UieError> {
    check_vectors("clustering vectors", vectors, n, table.width())?;
    let mut scores = Vec::with_capacity(table.rows());
    let mut out = Vec::with_capacity(n);
    for (j, v) in vectors.chunks_exact(table.width()).enumerate() {
        score_row("assignment score of vector", j, v, table, &mut scores)?;
        let mut best = 0;
        for (i, &s) in scores.iter().enumerate() {
            if s > scores[best] {
                best = i;
            }
        }
        out.push(best);
    }
    Ok(out)
}

fn check_assignments(assignments: &[usize], n: usize, rows: usize) -> Result<(), UieError> {
    if assignments.len() != n {
        return Err(UieError::shape(
            "cluster assignments",
            format!("{} assignments for {n} vectors", assignments.len()),
        ));
    }
    if let Some(&c) = assignments.iter().find(|&&c| c >= rows) {
        return Err(UieError::invalid(
            "cluster assignments",
            format!("centre {c} out of range for {rows} centres"),
        ));
    }
    Ok(())
}

fn check_rho(rho: f32) -> Result<(), UieError> {
    if !(rho.is_finite() && rho > 0.0) {
        return Err(UieError::invalid(
            "clustering rate ρ",
            format!("{rho} must be finite and > 0"),
        ));
    }
    Ok(())
}

fn check_update_inputs(
    table: &Table,
    vectors: &[f32],
    n: usize,
    assignments: &[usize],
    rho: f32,
) -> Result<(), UieError> {
    check_vectors("clustering vectors", vectors, n, table.width())?;
    check_finite("clustering vectors", vectors)?;
    check_assignments(assignments, n, table.rows())?;
    check_rho(rho)
}

/// The `"mean"` update (§4 step 3): `M_c ← M_c + ρ · mean_{v: c(v)=c}(v − M_c)` for every centre
/// `c` with at least one assigned vector; the others do not move. Sums are taken in f64.
pub fn update_mean(
    table: &mut Table,
    vectors: &[f32],
    n: usize,
    assignments: &[usize],
    rho: f32,
) -> Result<(), UieError> {
    check_update_inputs(table, vectors, n, assignments, rho)?;
    let w = table.width();
    let mut sums = vec![0.0f64; table.rows() * w];
    let mut counts = vec![0u64; table.rows()];
    for (v, &c) in vectors.chunks_exact(w).zip(assignments) {
        counts[c] += 1;
        for (s, &x) in sums[c * w..(c + 1) * w].iter_mut().zip(v) {
            *s += f64::from(x);
        }
    }
    for (c, &cnt) in counts.iter().enumerate() {
        if cnt == 0 {
            continue;
        }
        let mean = &sums[c * w..(c + 1) * w];
        for (m, &s) in table.row_mut(c).iter_mut().zip(mean) {
            // mean(v − M_c) = mean(v) − M_c.
            let delta = s / cnt as f64 - f64::from(*m);
            *m = (f64::from(*m) + f64::from(rho) * delta) as f32;
        }
    }
    Ok(())
}

/// `softmax_i(<v, M_i>)` in f64 (max-subtracted) into `p`.
fn softmax_scores(v: &[f32], table: &Table, p: &mut Vec<f64>) {
    p.clear();
    p.extend(table.data().chunks_exact(table.width()).map(|m| {
        v.iter()
            .zip(m)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum::<f64>()
    }));
    let max = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut z = 0.0;
    for x in p.iter_mut() {
        *x = (*x - max).exp();
        z += *x;
    }
    for x in p.iter_mut() {
        *x /= z;
    }
}

/// The `"softmax_ce"` loss `(1/n) Σ_v −log softmax_i(<v, M_i>)[c(v)]` with the given (fixed)
/// assignments, in f64; 0 for `n = 0`. Useful as a collapse diagnostic and to check
/// [`update_softmax_ce`] against finite differences.
pub fn softmax_ce_loss(
    table: &Table,
    vectors: &[f32],
    n: usize,
    assignments: &[usize],
) -> Result<f64, UieError> {
    check_update_inputs(table, vectors, n, assignments, 1.0)?;
    let mut p = Vec::with_capacity(table.rows());
    let mut total = 0.0;
    for (v, &c) in vectors.chunks_exact(table.width()).zip(assignments) {
        softmax_scores(v, table, &mut p);
        total -= p[c].ln();
    }
    Ok(if n == 0 { 0.0 } else { total / n as f64 })
}

/// The `"softmax_ce"` update (§4 step 3 option): `M_j ← M_j − ρ · (1/n) Σ_v (p_j(v) − 1[j = c(v)])
/// · v` for every centre `j` (see the module doc for the derivation). No-op for `n = 0`.
pub fn update_softmax_ce(
    table: &mut Table,
    vectors: &[f32],
    n: usize,
    assignments: &[usize],
    rho: f32,
) -> Result<(), UieError> {
    check_update_inputs(table, vectors, n, assignments, rho)?;
    if n == 0 {
        return Ok(());
    }
    let w = table.width();
    let mut grad = vec![0.0f64; table.rows() * w];
    let mut p = Vec::with_capacity(table.rows());
    for (v, &c) in vectors.chunks_exact(w).zip(assignments) {
        softmax_scores(v, table, &mut p);
        for (j, (&pj, g)) in p.iter().zip(grad.chunks_exact_mut(w)).enumerate() {
            let coef = pj - if j == c { 1.0 } else { 0.0 };
            for (gi, &x) in g.iter_mut().zip(v) {
                *gi += coef * f64::from(x);
            }
        }
    }
    if grad.iter().any(|g| !g.is_finite()) {
        return Err(UieError::non_finite("softmax_ce gradient"));
    }
    let scale = f64::from(rho) / n as f64;
    for (m, &g) in table.data_mut().iter_mut().zip(&grad) {
        *m = (f64::from(*m) - scale * g) as f32;
    }
    Ok(())
}

/// Which update rule stream clustering uses (§4 step 3): the config's `uie.clustering.update`.
pub use uie_model::config::CentreUpdate as UpdateRule;

/// Settings of the stream clustering of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// Update rate ρ (default 0.05); finite and > 0.
    pub rho: f32,
    /// Update rule (default [`UpdateRule::Mean`]).
    pub update: UpdateRule,
    /// `R`: a centre with no assignment over the last `R` steps is reseeded (default 200; 0
    /// disables reseeding).
    pub dead_after: u64,
    /// Capacity of the ring buffer of recent vectors used for reseeding (default 4096; ≥ 1).
    pub ring_capacity: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            rho: 0.05,
            update: UpdateRule::Mean,
            dead_after: 200,
            ring_capacity: 4096,
        }
    }
}

impl ClusterConfig {
    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<(), UieError> {
        check_rho(self.rho)?;
        if self.ring_capacity == 0 {
            return Err(UieError::invalid("clustering ring capacity", "must be ≥ 1"));
        }
        Ok(())
    }
}

/// Collapse diagnostics of one table over an epoch (§4, last paragraph).
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics {
    /// Number of centres `N`.
    pub centres: usize,
    /// Centres assigned at least once.
    pub used: usize,
    /// Total number of assignments.
    pub assigned: u64,
    /// Entropy (natural log) of the assignment distribution; 0 when nothing was assigned. A
    /// uniform spread over `k` centres gives `ln k`.
    pub entropy: f64,
}

/// Diagnostics of an assignment histogram (`histogram[i]` = assignments of centre `i`).
pub fn histogram_diagnostics(histogram: &[u64]) -> Diagnostics {
    let assigned: u64 = histogram.iter().sum();
    let used = histogram.iter().filter(|&&c| c > 0).count();
    let entropy = if assigned == 0 {
        0.0
    } else {
        let total = assigned as f64;
        -histogram
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / total;
                p * p.ln()
            })
            .sum::<f64>()
    };
    Diagnostics {
        centres: histogram.len(),
        used,
        assigned,
        // −0.0 (one used centre) prints oddly; normalise it.
        entropy: entropy.max(0.0),
    }
}

/// What one [`StreamClusterer::step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The step number (1 for the first step).
    pub step: u64,
    /// `c(v)` of each input vector, computed on the table before the update.
    pub assignments: Vec<usize>,
    /// Centres replaced by a recent vector at the end of this step, ascending.
    pub reseeded: Vec<usize>,
}

/// A fixed-capacity ring of recent vectors (order is irrelevant: reseeding draws uniformly).
#[derive(Debug, Clone)]
struct Ring {
    width: usize,
    capacity: usize,
    len: usize,
    next: usize,
    data: Vec<f32>,
}

impl Ring {
    fn push(&mut self, v: &[f32]) {
        let w = self.width;
        if self.len < self.capacity {
            self.data.extend_from_slice(v);
            self.len += 1;
        } else {
            if let Some(slot) = self.data.get_mut(self.next * w..(self.next + 1) * w) {
                slot.copy_from_slice(v);
            }
            self.next = (self.next + 1) % self.capacity;
        }
    }

    fn get(&self, i: usize) -> &[f32] {
        self.data
            .get(i * self.width..(i + 1) * self.width)
            .unwrap_or(&[])
    }
}

/// What [`StreamClusterer::state`] saves beyond the table and the settings: enough to continue
/// exactly where a run left off (the epoch histogram is not saved: runs stop at epoch ends).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClustererState {
    /// Steps taken.
    pub step: u64,
    /// Per centre, the step of its last assignment.
    pub last_assigned: Vec<u64>,
    /// Vectors held by the ring of recent vectors.
    pub ring_len: usize,
    /// The ring's next overwrite position (once full).
    pub ring_next: usize,
    /// The ring's values, row-major, `ring_len` rows.
    pub ring: Vec<f32>,
}

/// The stream-clustering state of one centre table: the table, the step counter, the step of each
/// centre's last assignment, the epoch histogram and the ring of recent vectors.
#[derive(Debug, Clone)]
pub struct StreamClusterer {
    table: Table,
    config: ClusterConfig,
    step: u64,
    last_assigned: Vec<u64>,
    histogram: Vec<u64>,
    ring: Ring,
}

impl StreamClusterer {
    /// Starts clustering `table` (e.g. random or k-means++ centres) at step 0.
    pub fn new(table: Table, config: ClusterConfig) -> Result<Self, UieError> {
        config.validate()?;
        let ring = Ring {
            width: table.width(),
            capacity: config.ring_capacity,
            len: 0,
            next: 0,
            data: Vec::new(),
        };
        Ok(StreamClusterer {
            last_assigned: vec![0; table.rows()],
            histogram: vec![0; table.rows()],
            table,
            config,
            step: 0,
            ring,
        })
    }

    /// The current centre table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Consumes the clusterer and returns its table.
    pub fn into_table(self) -> Table {
        self.table
    }

    /// Replaces the centres (e.g. after the warm-up's k-means++); the new table must have the same
    /// shape. Every centre counts as assigned at the current step (a fresh grace period of `R`).
    pub fn set_table(&mut self, table: Table) -> Result<(), UieError> {
        if table.rows() != self.table.rows() || table.width() != self.table.width() {
            return Err(UieError::shape(
                "clustering table",
                format!(
                    "{} × {} replaces {} × {}",
                    table.rows(),
                    table.width(),
                    self.table.rows(),
                    self.table.width()
                ),
            ));
        }
        check_finite("clustering table", table.data())?;
        self.table = table;
        self.last_assigned.fill(self.step);
        Ok(())
    }

    /// The settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Number of steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// For each centre, the step of its last assignment (or creation / reseeding).
    pub fn last_assigned(&self) -> &[u64] {
        &self.last_assigned
    }

    /// The epoch's assignment histogram.
    pub fn histogram(&self) -> &[u64] {
        &self.histogram
    }

    /// The recent vectors held for reseeding, row-major, and their count (in no particular
    /// order). Also a natural input for the warm-up's [`kmeans_pp_init`].
    pub fn recent(&self) -> (&[f32], usize) {
        (&self.ring.data, self.ring.len)
    }

    /// Adds `n` vectors to the ring of recent vectors without clustering them (e.g. the whole
    /// batch, when only a balanced sample is passed to [`step`](Self::step)).
    pub fn remember(&mut self, vectors: &[f32], n: usize) -> Result<(), UieError> {
        check_vectors("recent vectors", vectors, n, self.table.width())?;
        check_finite("recent vectors", vectors)?;
        for v in vectors.chunks_exact(self.table.width()) {
            self.ring.push(v);
        }
        Ok(())
    }

    /// One stream-clustering step on the `n` (already balanced-sampled) row-major `vectors`:
    /// assignment, update, histogram, ring, then dead-centre reseeding (see the module doc). A
    /// step with `n = 0` still counts towards `R`. On error nothing has changed.
    pub fn step(
        &mut self,
        vectors: &[f32],
        n: usize,
        rng: &mut SeedRng,
    ) -> Result<StepReport, UieError> {
        check_vectors("clustering vectors", vectors, n, self.table.width())?;
        check_finite("clustering vectors", vectors)?;
        let assignments = assign(vectors, n, &self.table)?;
        let mut table = self.table.clone();
        match self.config.update {
            UpdateRule::Mean => update_mean(&mut table, vectors, n, &assignments, self.config.rho)?,
            UpdateRule::SoftmaxCe => {
                update_softmax_ce(&mut table, vectors, n, &assignments, self.config.rho)?
            }
        }
        check_finite("clustering table after update", table.data())?;

        self.table = table;
        self.step += 1;
        for &c in &assignments {
            self.histogram[c] += 1;
            self.last_assigned[c] = self.step;
        }
        for v in vectors.chunks_exact(self.table.width()) {
            self.ring.push(v);
        }

        let mut reseeded = Vec::new();
        if self.config.dead_after > 0 {
            let dead: Vec<usize> = (0..self.table.rows())
                .filter(|&i| self.step - self.last_assigned[i] >= self.config.dead_after)
                .collect();
            let take = dead.len().min(self.ring.len);
            if take > 0 {
                let picks = index::sample(rng, self.ring.len, take).into_vec();
                for (&c, &p) in dead.iter().zip(&picks) {
                    let v = self.ring.get(p).to_vec();
                    self.table.row_mut(c).copy_from_slice(&v);
                    self.last_assigned[c] = self.step;
                    reseeded.push(c);
                }
            }
        }
        Ok(StepReport {
            step: self.step,
            assignments,
            reseeded,
        })
    }

    /// The resumable state (see [`ClustererState`]).
    pub fn state(&self) -> ClustererState {
        ClustererState {
            step: self.step,
            last_assigned: self.last_assigned.clone(),
            ring_len: self.ring.len,
            ring_next: self.ring.next,
            ring: self.ring.data.clone(),
        }
    }

    /// A clusterer continuing from a saved [`ClustererState`] on `table`; errors when the state
    /// does not fit the table or the settings.
    pub fn restore(
        table: Table,
        config: ClusterConfig,
        state: ClustererState,
    ) -> Result<Self, UieError> {
        let mut c = StreamClusterer::new(table, config)?;
        let w = c.table.width();
        let ok = state.last_assigned.len() == c.table.rows()
            && state.last_assigned.iter().all(|&s| s <= state.step)
            && state.ring_len <= c.config.ring_capacity
            && state.ring.len() == state.ring_len * w
            && (state.ring_next < state.ring_len.max(1));
        if !ok {
            return Err(UieError::shape(
                "clustering state",
                "does not fit the table or the ring capacity",
            ));
        }
        check_finite("clustering state ring", &state.ring)?;
        c.step = state.step;
        c.last_assigned = state.last_assigned;
        c.ring.len = state.ring_len;
        c.ring.next = state.ring_next;
        c.ring.data = state.ring;
        Ok(c)
    }

    /// Diagnostics of the current epoch's histogram.
    pub fn epoch_diagnostics(&self) -> Diagnostics {
        histogram_diagnostics(&self.histogram)
    }

    /// Returns the epoch's diagnostics and clears the histogram for the next epoch.
    pub fn reset_epoch(&mut self) -> Diagnostics {
        let d = self.epoch_diagnostics();
        self.histogram.fill(0);
        d
    }
}

/// Squared Euclidean distance in f64.
fn dist2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum()
}

/// k-means++ D² seeding (see the module doc): `k` distinct indices into the `n` row-major
/// `vectors` of width `width`, in the order chosen. Errors unless `1 ≤ k ≤ n` and the vectors are
/// finite.
pub fn kmeans_pp_indices(
    vectors: &[f32],
    n: usize,
    width: usize,
    k: usize,
    rng: &mut SeedRng,
) -> Result<Vec<usize>, UieError> {
    if width == 0 {
        return Err(UieError::shape("k-means++ vectors", "width must be ≥ 1"));
    }
    check_vectors("k-means++ vectors", vectors, n, width)?;
    check_finite("k-means++ vectors", vectors)?;
    if k == 0 || k > n {
        return Err(UieError::invalid(
            "k-means++ k",
            format!("{k} centres from {n} vectors: need 1 ≤ k ≤ n"),
        ));
    }
    let row = |i: usize| &vectors[i * width..(i + 1) * width];
    let mut chosen = Vec::with_capacity(k);
    let mut is_chosen = vec![false; n];
    let first = rng.random_range(0..n);
    chosen.push(first);
    is_chosen[first] = true;
    let mut d2: Vec<f64> = (0..n).map(|i| dist2(row(i), row(first))).collect();
    while chosen.len() < k {
        let total: f64 = d2.iter().sum();
        let next = if total > 0.0 && total.is_finite() {
            let target = rng.random::<f64>() * total;
            let mut acc = 0.0;
            let mut pick = None;
            let mut last_positive = None;
            for (i, &d) in d2.iter().enumerate() {
                if d > 0.0 {
                    last_positive = Some(i);
                    acc += d;
                    if acc > target {
                        pick = Some(i);
                        break;
                    }
                }
            }
            // Rounding can leave `acc ≤ target` at the end: take the last positive entry.
            pick.or(last_positive)
        } else {
            None
        };
        let next = match next {
            Some(i) => i,
            None => {
                // Every remaining point duplicates a chosen one: uniform over the unchosen.
                let free: Vec<usize> = (0..n).filter(|&i| !is_chosen[i]).collect();
                free[rng.random_range(0..free.len())]
            }
        };
        chosen.push(next);
        is_chosen[next] = true;
        for (i, d) in d2.iter_mut().enumerate() {
            *d = d.min(dist2(row(i), row(next)));
        }
        d2[next] = 0.0;
    }
    Ok(chosen)
}

/// A `k × width` centre table initialised by k-means++ ([`kmeans_pp_indices`]) on the `n`
/// row-major `vectors`, then refined by `lloyd_iters` Lloyd iterations with inner-product
/// assignment (`0` = pure k-means++).
pub fn kmeans_pp_init(
    vectors: &[f32],
    n: usize,
    width: usize,
    k: usize,
    lloyd_iters: usize,
    rng: &mut SeedRng,
) -> Result<Table, UieError> {
    let picks = kmeans_pp_indices(vectors, n, width, k, rng)?;
    let mut data = Vec::with_capacity(k * width);
    for &i in &picks {
        data.extend_from_slice(&vectors[i * width..(i + 1) * width]);
    }
    let mut table = Table::new(k, width, data)?;
    for _ in 0..lloyd_iters {
        let a = assign(vectors, n, &table)?;
        update_mean(&mut table, vectors, n, &a, 1.0)?;
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;

    fn table(rows: usize, width: usize, data: &[f32]) -> Table {
        Table::new(rows, width, data.to_vec()).expect("table")
    }

    #[test]
    fn activity_buckets_follow_inclusive_bounds() {
        let b = ActivityBuckets::default();
        let got: Vec<usize> = [0, 5, 6, 20, 21, 100, 101, u64::MAX]
            .iter()
            .map(|&c| b.bucket(c))
            .collect();
        assert_eq!(got, vec![0, 0, 1, 1, 2, 2, 3, 3]);
        assert_eq!(b.count(), 4);
        assert!(ActivityBuckets::new(vec![5, 5]).is_err());
        assert!(ActivityBuckets::new(vec![20, 5]).is_err());
        assert_eq!(
            ActivityBuckets::new(vec![]).expect("one bucket").bucket(7),
            0
        );
    }

    #[test]
    fn balanced_sampling_caps_distinct_users_per_bucket() {
        // 10 light users (count 3) with 2 rows each, 3 heavy users (count 500) with 4 rows each,
        // one medium user (count 10) with 1 row.
        let mut users = Vec::new();
        let mut counts = Vec::new();
        for round in 0..4 {
            for u in 0..10i64 {
                if round < 2 {
                    users.push(u);
                    counts.push(3);
                }
            }
            for u in 100..103i64 {
                users.push(u);
                counts.push(500);
            }
        }
        users.push(50);
        counts.push(10);
        let buckets = ActivityBuckets::default();
        for seed in 0..20 {
            let mut rng = seeded(seed);
            let rows =
                balanced_sample(&users, &counts, None, &buckets, 2, &mut rng).expect("sample");
            assert!(rows.windows(2).all(|w| w[0] < w[1]), "ascending, distinct");
            let picked: Vec<i64> = rows.iter().map(|&r| users[r]).collect();
            let mut distinct = picked.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), picked.len(), "one row per user: {picked:?}");
            let per_bucket = |b: usize| {
                rows.iter()
                    .filter(|&&r| buckets.bucket(counts[r]) == b)
                    .count()
            };
            assert_eq!(per_bucket(0), 2, "light bucket capped at m");
            assert_eq!(per_bucket(1), 1, "medium bucket has one user");
            assert_eq!(per_bucket(2), 0);
            assert_eq!(per_bucket(3), 2, "heavy bucket capped at m");
        }
        // Deterministic for a seed; m larger than every bucket keeps every user once.
        let a = balanced_sample(&users, &counts, None, &buckets, 2, &mut seeded(7)).expect("a");
        let b = balanced_sample(&users, &counts, None, &buckets, 2, &mut seeded(7)).expect("b");
        assert_eq!(a, b);
        let all =
            balanced_sample(&users, &counts, None, &buckets, 100, &mut seeded(1)).expect("all");
        assert_eq!(all.len(), 14);
    }

    #[test]
    fn balanced_sampling_respects_eligibility_and_checks_lengths() {
        let users = [1i64, 1, 2, 3];
        let counts = [1u64, 1, 1, 1];
        let eligible = [false, true, false, true];
        let mut rng = seeded(0);
        let rows = balanced_sample(
            &users,
            &counts,
            Some(&eligible),
            &ActivityBuckets::default(),
            10,
            &mut rng,
        )
        .expect("sample");
        assert_eq!(rows, vec![1, 3]);
        let b = ActivityBuckets::default();
        assert!(balanced_sample(&users, &counts[..3], None, &b, 1, &mut rng).is_err());
        assert!(balanced_sample(&users, &counts, Some(&eligible[..2]), &b, 1, &mut rng).is_err());
        assert!(balanced_sample(&users, &counts, None, &b, 0, &mut rng).is_err());
    }

    #[test]
    fn assignment_is_argmax_with_lower_index_ties() {
        let m = table(3, 2, &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
        let a = assign(&[2.0, 1.0, 1.0, 3.0, -1.0, -1.0], 3, &m).expect("assign");
        // v0: [2, 1, 2] → 0 (tie with 2); v1: [1, 3, 1] → 1; v2: [-1, -1, -1] → 0.
        assert_eq!(a, vec![0, 1, 0]);
        assert!(assign(&[1.0, 0.0, 0.0], 2, &m).is_err());
    }

    #[test]
    fn mean_update_moves_centre_by_rho_mean_difference() {
        let mut m = table(3, 2, &[1.0, 0.0, 0.0, 1.0, -1.0, -1.0]);
        let before = m.clone();
        // Two vectors assigned to centre 0, one to centre 1, none to centre 2.
        let v = [3.0, 1.0, 2.0, -1.0, 0.0, 4.0];
        let a = assign(&v, 3, &m).expect("assign");
        assert_eq!(a, vec![0, 0, 1]);
        update_mean(&mut m, &v, 3, &a, 0.5).expect("update");
        // Centre 0: mean(v − c) = ([2, 1] + [1, −1]) / 2 = [1.5, 0]; moves by 0.5 · that.
        assert_eq!(m.row(0), Some(&[1.75, 0.0][..]));
        // Centre 1: mean(v − c) = [0, 3]; moves by [0, 1.5].
        assert_eq!(m.row(1), Some(&[0.0, 2.5][..]));
        // Centre 2: nothing assigned, bit-identical.
        let bits = |t: &Table| {
            t.row(2)
                .map(|r| r.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        };
        assert_eq!(bits(&m), bits(&before));
    }

    #[test]
    fn unassigned_centre_does_not_move_in_clusterer() {
        let m = table(2, 2, &[1.0, 0.0, 0.3, -0.7]);
        let config = ClusterConfig {
            rho: 0.1,
            ..ClusterConfig::default()
        };
        let mut c = StreamClusterer::new(m.clone(), config).expect("clusterer");
        let mut rng = seeded(0);
        let rep = c.step(&[2.0, 0.0, 4.0, 2.0], 2, &mut rng).expect("step");
        assert_eq!(rep.assignments, vec![0, 0]);
        assert_eq!(c.table().row(1), m.row(1));
        // Centre 0: 1 + 0.1 · (3 − 1) = 1.2; 0 + 0.1 · (1 − 0) = 0.1.
        let r0 = c.table().row(0).expect("row");
        assert!(
            (r0[0] - 1.2).abs() < 1e-6 && (r0[1] - 0.1).abs() < 1e-6,
            "{r0:?}"
        );
    }

    #[test]
    fn softmax_ce_update_matches_finite_difference_gradient() {
        let m0 = table(3, 2, &[0.5, -0.2, -0.3, 0.8, 0.1, 0.1]);
        let v = [1.0, 0.5, -0.4, 1.2, 0.3, -0.9, 0.7, 0.7];
        let n = 4;
        let a = assign(&v, n, &m0).expect("assign");
        let rho = 0.01f32;
        let mut m1 = m0.clone();
        update_softmax_ce(&mut m1, &v, n, &a, rho).expect("update");
        let eps = 1e-3f32;
        for e in 0..m0.data().len() {
            let perturbed = |delta: f32| {
                let mut d = m0.data().to_vec();
                d[e] += delta;
                let t = Table::new(3, 2, d).expect("table");
                softmax_ce_loss(&t, &v, n, &a).expect("loss")
            };
            let fd = (perturbed(eps) - perturbed(-eps)) / (2.0 * f64::from(eps));
            let step = f64::from(m0.data()[e] - m1.data()[e]) / f64::from(rho);
            assert!(
                (fd - step).abs() < 1e-3 * (1.0 + fd.abs()),
                "entry {e}: finite difference {fd}, update {step}"
            );
        }
        // The step decreases the loss.
        let l0 = softmax_ce_loss(&m0, &v, n, &a).expect("l0");
        let l1 = softmax_ce_loss(&m1, &v, n, &a).expect("l1");
        assert!(l1 < l0, "{l1} !< {l0}");
    }

    #[test]
    fn reseeding_replaces_exactly_the_dead_centres() {
        // Centre 0 gets every vector; centre 1 is assigned at step 1 only; centre 2 never.
        let m = table(3, 2, &[10.0, 0.0, 0.0, 10.0, -10.0, -10.0]);
        let config = ClusterConfig {
            rho: 0.05,
            update: UpdateRule::Mean,
            dead_after: 3,
            ring_capacity: 8,
        };
        let mut c = StreamClusterer::new(m, config).expect("clusterer");
        let mut rng = seeded(3);
        let rep = c.step(&[1.0, 0.1, 0.1, 1.0], 2, &mut rng).expect("step 1");
        assert_eq!(rep.assignments, vec![0, 1]);
        assert!(rep.reseeded.is_empty());
        let rep = c.step(&[2.0, 0.0], 1, &mut rng).expect("step 2");
        assert!(rep.reseeded.is_empty());
        // After step 3: centre 2 has 3 − 0 = 3 ≥ R steps without assignment; centre 1 only 2.
        let before = c.table().clone();
        let rep = c.step(&[3.0, 0.0], 1, &mut rng).expect("step 3");
        assert_eq!(rep.reseeded, vec![2]);
        let (recent, len) = c.recent();
        assert_eq!(len, 4);
        let row2 = c.table().row(2).expect("row 2").to_vec();
        assert!(
            recent.chunks_exact(2).any(|v| v == row2.as_slice()),
            "{row2:?} is a recent vector"
        );
        assert_eq!(c.table().row(1), before.row(1), "centre 1 is not dead yet");
        assert_ne!(c.table().row(0), before.row(0), "centre 0 was updated");
        // After step 4: centre 1 (last assigned at step 1) is dead, centre 2 has its grace.
        let rep = c.step(&[4.0, 0.0], 1, &mut rng).expect("step 4");
        assert_eq!(rep.reseeded, vec![1]);
        assert_eq!(c.last_assigned(), &[4, 4, 3]);
        // With reseeding disabled nothing is replaced.
        let config = ClusterConfig {
            dead_after: 0,
            ..ClusterConfig::default()
        };
        let mut c = StreamClusterer::new(table(2, 1, &[1.0, -1.0]), config).expect("c");
        for _ in 0..5 {
            assert!(c
                .step(&[1.0], 1, &mut rng)
                .expect("step")
                .reseeded
                .is_empty());
        }
    }

    #[test]
    fn ring_buffer_is_bounded() {
        let config = ClusterConfig {
            ring_capacity: 3,
            ..ClusterConfig::default()
        };
        let mut c = StreamClusterer::new(table(1, 1, &[1.0]), config).expect("c");
        c.remember(&[1.0, 2.0, 3.0, 4.0, 5.0], 5).expect("remember");
        let (recent, len) = c.recent();
        assert_eq!(len, 3);
        let mut got = recent.to_vec();
        got.sort_by(f32::total_cmp);
        assert_eq!(got, vec![3.0, 4.0, 5.0]);
        assert!(c.remember(&[1.0, 2.0], 1).is_err());
    }

    #[test]
    fn entropy_of_uniform_histogram_is_ln_k() {
        let d = histogram_diagnostics(&[4, 0, 4, 4, 0, 4]);
        assert_eq!(d.used, 4);
        assert_eq!(d.assigned, 16);
        assert!((d.entropy - 4f64.ln()).abs() < 1e-12, "{}", d.entropy);
        let d = histogram_diagnostics(&[0, 0, 0]);
        assert_eq!((d.used, d.entropy), (0, 0.0));
        let d = histogram_diagnostics(&[0, 7, 0]);
        assert_eq!((d.used, d.entropy), (1, 0.0));
        // p = [3/4, 1/4].
        let d = histogram_diagnostics(&[3, 1]);
        let want = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        assert!((d.entropy - want).abs() < 1e-12);
    }

    #[test]
    fn epoch_histogram_resets() {
        let mut c =
            StreamClusterer::new(table(2, 1, &[1.0, -1.0]), ClusterConfig::default()).expect("c");
        let mut rng = seeded(0);
        c.step(&[1.0, -1.0, 2.0, -2.0], 4, &mut rng).expect("step");
        let d = c.reset_epoch();
        assert_eq!((d.used, d.assigned), (2, 4));
        assert!((d.entropy - 2f64.ln()).abs() < 1e-12);
        assert_eq!(c.histogram(), &[0, 0]);
        assert_eq!(c.epoch_diagnostics().used, 0);
    }

    #[test]
    fn kmeans_pp_is_deterministic_and_picks_distinct_points() {
        // 12 points in 3 tight clusters plus duplicates.
        let mut v = Vec::new();
        for c in [[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0]] {
            for j in 0..4 {
                v.push(c[0] + 0.01 * j as f32);
                v.push(c[1]);
            }
        }
        let n = 12;
        for seed in 0..10 {
            let a = kmeans_pp_indices(&v, n, 2, 5, &mut seeded(seed)).expect("a");
            let b = kmeans_pp_indices(&v, n, 2, 5, &mut seeded(seed)).expect("b");
            assert_eq!(a, b, "deterministic for seed {seed}");
            let mut d = a.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), 5, "distinct: {a:?}");
            // The first three picks cover the three clusters (far apart, D² dominates).
            let mut clusters: Vec<usize> = a[..3].iter().map(|i| i / 4).collect();
            clusters.sort_unstable();
            assert_eq!(clusters, vec![0, 1, 2], "seed {seed}: {a:?}");
        }
        // All points identical: still k distinct indices.
        let same = [1.0f32; 8];
        let idx = kmeans_pp_indices(&same, 4, 2, 4, &mut seeded(0)).expect("same");
        let mut d = idx.clone();
        d.sort_unstable();
        assert_eq!(d, vec![0, 1, 2, 3]);
        assert!(kmeans_pp_indices(&v, n, 2, 13, &mut seeded(0)).is_err());
        assert!(kmeans_pp_indices(&v, n, 2, 0, &mut seeded(0)).is_err());
        let t = kmeans_pp_init(&v, n, 2, 3, 2, &mut seeded(1)).expect("init");
        assert_eq!((t.rows(), t.width()), (3, 2));
        assert!(t.data().iter().all(|x| x.is_finite()));
    }
}

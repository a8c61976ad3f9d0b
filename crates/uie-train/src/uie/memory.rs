//! The personalised user memory `P [H_user, d]` of UCBE (`docs/model.md` §4 step 5):
//!
//! for each positive sample `(u, v_i)`: take the top-`K2` centres of `<v_i, M_ucbe>` (same top-K
//! and tie rule as retrieval, §5), keep those with score `> 0`, let `t` be their plain **mean**
//! (not softmax-weighted; the sample is skipped when nothing is kept), and
//! `P[u] ← P[u] + ρ_p · (t − P[u])`.
//!
//! **Choice:** samples are processed **sequentially, in batch order**: a user with two positive
//! samples in one batch moves twice, the second move starting from the first one's result (an
//! exponential moving average over the user's positive items, exactly as if the samples had
//! arrived in consecutive batches). Rows of users never updated stay exactly zero (bit-identical),
//! which is also what the inference graph gathers for an unseen user.
//!
//! The whole batch is validated (shapes, rows in range, finite vectors, `K2 ≤ N`) before `P`
//! changes, so an error leaves `P` untouched.

use super::retrieval::{check_k, score_row, top_k_into};
use super::{check_finite, check_vectors, Table, UieError};

/// Settings of the personalised memory update.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    /// `K2`: centres of `M_ucbe` retrieved per positive item (default 3); `1 ≤ K2 ≤ N`.
    pub k2: usize,
    /// `ρ_p`: update rate of `P` (default 0.1); in `(0, 1]`.
    pub rho_p: f32,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig { k2: 3, rho_p: 0.1 }
    }
}

impl MemoryConfig {
    /// Checks `ρ_p ∈ (0, 1]` and `K2 ≥ 1` (`K2 ≤ N` is checked against the table on update).
    pub fn validate(&self) -> Result<(), UieError> {
        if !(self.rho_p.is_finite() && self.rho_p > 0.0 && self.rho_p <= 1.0) {
            return Err(UieError::invalid(
                "memory rate ρ_p",
                format!("{} must be in (0, 1]", self.rho_p),
            ));
        }
        if self.k2 == 0 {
            return Err(UieError::invalid("memory K2", "must be ≥ 1"));
        }
        Ok(())
    }
}

/// What one [`PersonalMemory::update`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryUpdateReport {
    /// Positive samples that moved their user's row.
    pub updated: usize,
    /// Positive samples skipped because no retrieved centre had a score `> 0`.
    pub skipped: usize,
}

/// The personalised user memory `P`: one row of width `d` per user-id bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonalMemory {
    table: Table,
    config: MemoryConfig,
}

impl PersonalMemory {
    /// An all-zero memory of `users` rows (`H_user`) and width `d`.
    pub fn new(users: usize, d: usize, config: MemoryConfig) -> Result<Self, UieError> {
        PersonalMemory::from_table(Table::zeros(users, d)?, config)
    }

    /// Resumes from a saved table.
    pub fn from_table(table: Table, config: MemoryConfig) -> Result<Self, UieError> {
        config.validate()?;
        check_finite("personal memory", table.data())?;
        Ok(PersonalMemory { table, config })
    }

    /// The table `P`, `[H_user, d]`.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Consumes the memory and returns `P`.
    pub fn into_table(self) -> Table {
        self.table
    }

    /// The settings.
    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// Updates `P` from one batch (see the module doc): `user_rows[s]` is sample `s`'s user row in
    /// `0..H_user`, `item_vecs` is row-major `[n, d]` (`sg(v_i)`), `positive[s]` marks the
    /// positive samples (`y_aux = 1`); other samples are ignored. `centres` is `M_ucbe`, `[N, d]`.
    pub fn update(
        &mut self,
        user_rows: &[usize],
        item_vecs: &[f32],
        positive: &[bool],
        centres: &Table,
    ) -> Result<MemoryUpdateReport, UieError> {
        let n = user_rows.len();
        let d = self.table.width();
        if centres.width() != d {
            return Err(UieError::shape(
                "memory centres",
                format!("width {} for a memory of width {d}", centres.width()),
            ));
        }
        check_vectors("memory item vectors", item_vecs, n, d)?;
        if positive.len() != n {
            return Err(UieError::shape(
                "memory positive flags",
                format!("{} flags for {n} samples", positive.len()),
            ));
        }
        if let Some(&u) = user_rows.iter().find(|&&u| u >= self.table.rows()) {
            return Err(UieError::invalid(
                "memory user row",
                format!("{u} out of range for {} rows", self.table.rows()),
            ));
        }
        check_k("memory K2", self.config.k2, centres.rows())?;
        check_finite("memory item vectors", item_vecs)?;

        // Targets first (scores can still fail), then the sequential moves.
        let mut targets: Vec<Option<Vec<f32>>> = Vec::with_capacity(n);
        let mut scores = Vec::with_capacity(centres.rows());
        let (mut idx, mut val) = (Vec::new(), Vec::new());
        for (s, (v, &pos)) in item_vecs.chunks_exact(d).zip(positive).enumerate() {
            if !pos {
                targets.push(None);
                continue;
            }
            score_row("memory score of sample", s, v, centres, &mut scores)?;
            top_k_into(&scores, self.config.k2, &mut idx, &mut val);
            let kept: Vec<usize> = idx
                .iter()
                .zip(&val)
                .filter(|&(_, &sc)| sc > 0.0)
                .map(|(&i, _)| i)
                .collect();
            if kept.is_empty() {
                targets.push(None);
                continue;
            }
            let mut t = vec![0.0f32; d];
            for &i in &kept {
                for (ti, &m) in t.iter_mut().zip(centres.row_or_empty(i)) {
                    *ti += m;
                }
            }
            let count = kept.len() as f32;
            for ti in t.iter_mut() {
                *ti /= count;
            }
            targets.push(Some(t));
        }

        let mut report = MemoryUpdateReport::default();
        let rho = self.config.rho_p;
        for ((&u, &pos), target) in user_rows.iter().zip(positive).zip(&targets) {
            match target {
                Some(t) => {
                    for (p, &ti) in self.table.row_mut(u).iter_mut().zip(t) {
                        *p += rho * (ti - *p);
                    }
                    report.updated += 1;
                }
                None if pos => report.skipped += 1,
                None => {}
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn centres() -> Table {
        // Scores of v = [1, 0]: [2, 1, -1, 0.5]; of v = [0, -1]: [0, -1, 1, 0]; of v = [0, 0]: 0.
        Table::new(4, 2, vec![2.0, 0.0, 1.0, 1.0, -1.0, -1.0, 0.5, 0.0]).expect("centres")
    }

    #[test]
    fn memory_moves_toward_plain_mean_of_kept_centres() {
        let config = MemoryConfig { k2: 3, rho_p: 0.5 };
        let mut p = PersonalMemory::new(3, 2, config).expect("memory");
        let rep = p
            .update(&[1], &[1.0, 0.0], &[true], &centres())
            .expect("update");
        assert_eq!(
            rep,
            MemoryUpdateReport {
                updated: 1,
                skipped: 0
            }
        );
        // Top-3 of [2, 1, -1, 0.5] = centres 0, 1, 3, all > 0; plain mean of
        // [2, 0], [1, 1], [0.5, 0] = [3.5/3, 1/3]; P[1] = 0 + 0.5 · t.
        let row = p.table().row(1).expect("row");
        assert!((row[0] - 3.5 / 6.0).abs() < 1e-6 && (row[1] - 1.0 / 6.0).abs() < 1e-6);
        // Second update is sequential: P[1] ← P[1] + 0.5 · (t − P[1]) = 0.75 · t.
        p.update(&[1], &[1.0, 0.0], &[true], &centres())
            .expect("update");
        let row = p.table().row(1).expect("row");
        assert!((row[0] - 0.75 * 3.5 / 3.0).abs() < 1e-6, "{row:?}");
    }

    #[test]
    fn memory_changes_only_users_with_positive_samples() {
        let mut p = PersonalMemory::new(5, 2, MemoryConfig::default()).expect("memory");
        // Sample 0: user 0, negative. Sample 1: user 2, positive. Sample 2: user 3, positive but
        // v = [0, 0] scores 0 everywhere, so nothing is kept and it is skipped. Sample 3: user 4,
        // negative with a strong item. User 1 has no sample.
        let vecs = [5.0, 0.0, 1.0, 0.0, 0.0, 0.0, 9.0, 9.0];
        let rep = p
            .update(
                &[0, 2, 3, 4],
                &vecs,
                &[false, true, true, false],
                &centres(),
            )
            .expect("update");
        assert_eq!(
            rep,
            MemoryUpdateReport {
                updated: 1,
                skipped: 1
            }
        );
        for u in [0usize, 1, 3, 4] {
            let row = p.table().row(u).expect("row");
            assert!(row.iter().all(|x| x.to_bits() == 0), "user {u}: {row:?}");
        }
        assert!(p.table().row(2).expect("row").iter().any(|&x| x != 0.0));
        // A skipped positive sample leaves a non-zero row bit-identical.
        let before = p.clone();
        let rep = p
            .update(&[2], &[0.0, 0.0], &[true], &centres())
            .expect("update");
        assert_eq!(
            rep,
            MemoryUpdateReport {
                updated: 0,
                skipped: 1
            }
        );
        assert_eq!(p, before);
    }

    #[test]
    fn memory_mean_uses_only_kept_centres() {
        let config = MemoryConfig { k2: 3, rho_p: 1.0 };
        let mut p = PersonalMemory::new(1, 2, config).expect("memory");
        // v = [0, -1]: scores [0, -1, 1, 0]; top-3 = 2 (1), 0 (0), 3 (0): only centre 2 is kept.
        p.update(&[0], &[0.0, -1.0], &[true], &centres())
            .expect("update");
        assert_eq!(p.table().row(0), Some(&[-1.0, -1.0][..]));
    }

    #[test]
    fn memory_rejects_bad_input_without_changing_p() {
        let mut p = PersonalMemory::new(2, 2, MemoryConfig::default()).expect("memory");
        let c = centres();
        assert!(
            p.update(&[2], &[1.0, 0.0], &[true], &c).is_err(),
            "row range"
        );
        assert!(p.update(&[0], &[1.0], &[true], &c).is_err(), "width");
        assert!(p.update(&[0], &[1.0, 0.0], &[], &c).is_err(), "flags");
        assert!(
            p.update(&[0, 1], &[1.0, 0.0, f32::NAN, 0.0], &[true, true], &c)
                .is_err(),
            "NaN in a later sample"
        );
        let small = Table::new(2, 2, vec![1.0; 4]).expect("small");
        assert!(
            p.update(&[0], &[1.0, 0.0], &[true], &small).is_err(),
            "K2 > N"
        );
        let wide = Table::new(4, 3, vec![1.0; 12]).expect("wide");
        assert!(
            p.update(&[0], &[1.0, 0.0], &[true], &wide).is_err(),
            "centre width"
        );
        assert!(p.table().data().iter().all(|x| x.to_bits() == 0));
        assert!(PersonalMemory::new(2, 2, MemoryConfig { k2: 3, rho_p: 1.5 }).is_err());
        assert!(PersonalMemory::new(2, 2, MemoryConfig { k2: 0, rho_p: 0.1 }).is_err());
    }
}

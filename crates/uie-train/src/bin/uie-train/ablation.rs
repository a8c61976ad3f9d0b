//! The ablation of `docs/evaluation.md` Protocol B: four variants of one config — `PLE` (every
//! `[uie]` module off; the behaviour sequence stays, it is part of the base model), `+UPE`,
//! `+UPE+UCBE` and `full UIE` — each trained once per seed into `<out>/<variant>-s<seed>/`, then
//! summarised in `<out>/ablation.md`: per task, test AUC per cohort (mean ± sample std over seeds),
//! GAUC, the centres used per memory table at the last epoch, training time and throughput, and
//! one line of facts per variant (sparse-cohort AUC difference to PLE, the larger of the two
//! stds). The reading of those facts is left to a person.
//!
//! A run whose `best/meta.json` already holds test metrics is reused, not retrained. Its test
//! report per cohort is computed once from `best/` and cached as [`TEST_REPORT_FILE`] in the run
//! directory; the plots of every run go to `<run>/plots/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uie_model::{Checkpoint, CheckpointMeta, Config};

use uie_train::data::{Splits, COHORTS};
use uie_train::model::predict;
use uie_train::report::{eval_report, EpochRecord, EvalReport, TableUsage, SPARSE};
use uie_train::train::{load_data, train_with, TrainOptions, HISTORY_FILE};
use uie_train::TrainError;

use crate::console::Console;
use crate::plots::write_plots;
use crate::tables::thousands;

/// The test report of a run per cohort, cached in the run directory.
pub const TEST_REPORT_FILE: &str = "test_report.json";
/// The directory of a run's plots, inside the run directory.
pub const PLOTS_DIR: &str = "plots";
/// The markdown summary, in the output directory.
pub const TABLE_FILE: &str = "ablation.md";
/// Every run's numbers as JSON (an array of [`RunResult`]), in the output directory.
pub const RESULTS_FILE: &str = "ablation.json";

/// One row of the ablation: which `[uie]` modules are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// Directory prefix of its runs (`<key>-s<seed>`).
    pub key: &'static str,
    /// Row label in the tables.
    pub label: &'static str,
    /// `[uie.upe] enabled`.
    pub upe: bool,
    /// `[uie.ucbe] enabled`.
    pub ucbe: bool,
    /// `[uie.ucse] enabled`.
    pub ucse: bool,
}

/// The four rows of Protocol B, in table order; the first is the baseline.
pub const VARIANTS: [Variant; 4] = [
    Variant {
        key: "ple",
        label: "PLE",
        upe: false,
        ucbe: false,
        ucse: false,
    },
    Variant {
        key: "upe",
        label: "+UPE",
        upe: true,
        ucbe: false,
        ucse: false,
    },
    Variant {
        key: "upe-ucbe",
        label: "+UPE+UCBE",
        upe: true,
        ucbe: true,
        ucse: false,
    },
    Variant {
        key: "full-uie",
        label: "full UIE",
        upe: true,
        ucbe: true,
        ucse: true,
    },
];

impl Variant {
    /// `base` with this variant's module switches (everything else unchanged).
    pub fn config(&self, base: &Config) -> Config {
        let mut c = base.clone();
        c.uie.upe.enabled = self.upe;
        c.uie.ucbe.enabled = self.ucbe;
        c.uie.ucse.enabled = self.ucse;
        c
    }

    /// `<out>/<key>-s<seed>`.
    pub fn run_dir(&self, out: &Path, seed: u64) -> PathBuf {
        out.join(format!("{}-s{seed}", self.key))
    }
}

/// The label of a variant key (the key itself when unknown).
fn label_of(key: &str) -> &str {
    VARIANTS
        .iter()
        .find(|v| v.key == key)
        .map(|v| v.label)
        .unwrap_or(key)
}

/// What an ablation is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct AblationOptions {
    /// The full-UIE config the variants are derived from (its `[uie]` settings are kept, only the
    /// `enabled` switches change).
    pub config: Config,
    /// A label of the config for the summary (for example its path).
    pub config_label: String,
    /// Model seeds; every variant is trained once per seed.
    pub seeds: Vec<u64>,
    /// Output directory.
    pub out: PathBuf,
    /// Directory a relative `data.path` is resolved against.
    pub data_root: PathBuf,
    /// Overrides `train.epochs`.
    pub epochs: Option<usize>,
    /// No progress bars.
    pub quiet: bool,
    /// Keep only the first this many training rows (quick runs; not recorded in the checkpoints,
    /// so do not mix runs with different values in one output directory).
    pub max_train_rows: Option<usize>,
    /// Keep only the first this many validation and test rows (quick runs, same caveat).
    pub max_eval_rows: Option<usize>,
}

/// The numbers of one finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Variant key ([`Variant::key`]).
    pub variant: String,
    /// Model seed.
    pub seed: u64,
    /// Epoch of the weights in `best/`.
    pub best_epoch: usize,
    /// Test evaluation of `best/`: all rows, per cohort, GAUC.
    pub test: EvalReport,
    /// Wall time of the epoch loop, seconds (`best/meta.json`).
    pub train_seconds: f64,
    /// Training rows per second of optimisation steps (`best/meta.json`).
    pub samples_per_second: f64,
    /// Memory-table usage at the last epoch of the run (empty without UIE or history).
    pub tables: Vec<TableUsage>,
    /// Whether the run was found complete and not retrained.
    pub reused: bool,
}

/// What [`run`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct AblationReport {
    /// Every run, variants in [`VARIANTS`] order, seeds in the given order within a variant.
    pub runs: Vec<RunResult>,
    /// The markdown written to `<out>/ablation.md`.
    pub markdown: String,
    /// Path of `ablation.md`.
    pub table_path: PathBuf,
}

/// The cached test report of a run: valid while `best/` still holds `best_epoch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CachedTest {
    best_epoch: usize,
    report: EvalReport,
}

/// Runs (or reuses) every variant × seed, then writes `<out>/ablation.md` and
/// `<out>/ablation.json`.
pub fn run(opts: &AblationOptions) -> Result<AblationReport, TrainError> {
    if opts.seeds.is_empty() {
        return Err(TrainError::EmptyData(
            "the ablation needs at least one seed".into(),
        ));
    }
    let mut seeds = opts.seeds.clone();
    seeds.sort_unstable();
    seeds.dedup();
    if seeds.len() != opts.seeds.len() {
        return Err(TrainError::EmptyData(format!(
            "seeds {:?} repeat a seed",
            opts.seeds
        )));
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| TrainError::io(&opts.out, e))?;
    let mut splits: Option<Splits> = None;
    let mut runs = Vec::new();
    for variant in &VARIANTS {
        let mut config = variant.config(&opts.config);
        if let Some(epochs) = opts.epochs {
            config.train.epochs = epochs;
        }
        config.validate()?;
        for &seed in &opts.seeds {
            let dir = variant.run_dir(&opts.out, seed);
            let mut expected = config.clone();
            expected.train.seed = seed;
            let reused = completed_run(&dir, &expected)?;
            if reused {
                println!(
                    "{} seed {seed}: reusing the completed run in {}",
                    variant.label,
                    dir.display()
                );
            } else {
                println!(
                    "{} seed {seed}: training into {}",
                    variant.label,
                    dir.display()
                );
                let topts = TrainOptions {
                    out: dir.clone(),
                    data_root: opts.data_root.clone(),
                    resume: None,
                    seed: Some(seed),
                    epochs: opts.epochs,
                    max_train_rows: opts.max_train_rows,
                    max_eval_rows: opts.max_eval_rows,
                };
                train_with(&config, &topts, &mut Console::new(opts.quiet))?;
            }
            let result = collect_run(variant, seed, &dir, reused, opts, &mut splits)?;
            runs.push(result);
        }
    }
    let markdown = render_markdown(&opts.config_label, &runs);
    let table_path = opts.out.join(TABLE_FILE);
    write_atomically(&table_path, markdown.as_bytes())?;
    let json = serde_json::to_vec_pretty(&runs)
        .map_err(|e| TrainError::io(opts.out.join(RESULTS_FILE), std::io::Error::other(e)))?;
    write_atomically(&opts.out.join(RESULTS_FILE), &json)?;
    Ok(AblationReport {
        runs,
        markdown,
        table_path,
    })
}

/// Whether `<dir>/best/meta.json` exists and holds test metrics. A completed run trained with a
/// different config (sections `[model]` … `[train]` after the seed and epoch overrides) is an
/// error rather than silently reused or overwritten.
fn completed_run(dir: &Path, expected: &Config) -> Result<bool, TrainError> {
    let best = dir.join("best");
    let meta_path = best.join("meta.json");
    let Ok(bytes) = std::fs::read(&meta_path) else {
        return Ok(false);
    };
    let Ok(meta) = serde_json::from_slice::<CheckpointMeta>(&bytes) else {
        return Ok(false);
    };
    if !meta.metrics.keys().any(|k| k.starts_with("test_auc.")) {
        return Ok(false);
    }
    let saved = Config::load(&best.join("config.toml"))?;
    let differs: Vec<&str> = [
        ("model", saved.model == expected.model),
        ("features", saved.features == expected.features),
        ("ple", saved.ple == expected.ple),
        ("tasks", saved.tasks == expected.tasks),
        ("uie", saved.uie == expected.uie),
        ("data", saved.data == expected.data),
        ("train", saved.train == expected.train),
    ]
    .iter()
    .filter(|(_, same)| !same)
    .map(|(name, _)| *name)
    .collect();
    if !differs.is_empty() {
        return Err(TrainError::io(
            best,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "a completed run with a different config ([{}] differ{}): remove it or use \
                     another output directory",
                    differs.join("], ["),
                    if differs.len() == 1 { "s" } else { "" }
                ),
            ),
        ));
    }
    Ok(true)
}

/// The epoch records of a run: `last/history.json`, else `best/history.json`, else none.
pub fn read_history(run_dir: &Path) -> Result<Vec<EpochRecord>, TrainError> {
    for sub in ["last", "best"] {
        let path = run_dir.join(sub).join(HISTORY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                return serde_json::from_slice(&bytes).map_err(|e| {
                    TrainError::io(
                        &path,
                        std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    )
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(TrainError::io(&path, e)),
        }
    }
    Ok(Vec::new())
}

fn collect_run(
    variant: &Variant,
    seed: u64,
    dir: &Path,
    reused: bool,
    opts: &AblationOptions,
    splits: &mut Option<Splits>,
) -> Result<RunResult, TrainError> {
    let best_dir = dir.join("best");
    let meta_path = best_dir.join("meta.json");
    let bytes = std::fs::read(&meta_path).map_err(|e| TrainError::io(&meta_path, e))?;
    let meta: CheckpointMeta = serde_json::from_slice(&bytes).map_err(|e| {
        TrainError::io(
            &meta_path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    let history = read_history(dir)?;
    if !history.is_empty() {
        // A plot that cannot be drawn does not invalidate the run's numbers.
        if let Err(e) = write_plots(&dir.join(PLOTS_DIR), &history) {
            eprintln!("warning: plots of {}: {e}", dir.display());
        }
    }
    let test = cached_or_computed_test(dir, &meta, opts, splits)?;
    Ok(RunResult {
        variant: variant.key.to_string(),
        seed,
        best_epoch: meta.epoch,
        test,
        train_seconds: meta
            .metrics
            .get("train_seconds")
            .copied()
            .unwrap_or(f64::NAN),
        samples_per_second: meta
            .metrics
            .get("samples_per_second")
            .copied()
            .unwrap_or(f64::NAN),
        tables: history.last().map(|r| r.tables.clone()).unwrap_or_default(),
        reused,
    })
}

/// The cached test report when it belongs to the same best epoch and its overall AUCs are the
/// ones in `meta.json`; otherwise evaluates `best/` on the test split and caches the result.
fn cached_or_computed_test(
    dir: &Path,
    meta: &CheckpointMeta,
    opts: &AblationOptions,
    splits: &mut Option<Splits>,
) -> Result<EvalReport, TrainError> {
    let cache_path = dir.join(TEST_REPORT_FILE);
    let agrees = |report: &EvalReport| {
        report.overall.iter().all(|m| {
            match (m.auc, meta.metrics.get(&format!("test_auc.{}", m.task))) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9,
                (None, None) => true,
                _ => false,
            }
        })
    };
    if let Ok(bytes) = std::fs::read(&cache_path) {
        if let Ok(cached) = serde_json::from_slice::<CachedTest>(&bytes) {
            if cached.best_epoch == meta.epoch && agrees(&cached.report) {
                return Ok(cached.report);
            }
        }
    }
    let ck = Checkpoint::read(&dir.join("best"))?;
    let data = match splits {
        Some(s) => s,
        None => {
            let mut lopts = TrainOptions::new(dir);
            lopts.data_root = opts.data_root.clone();
            lopts.max_train_rows = opts.max_train_rows;
            lopts.max_eval_rows = opts.max_eval_rows;
            splits.insert(load_data(&ck.config, &lopts)?)
        }
    };
    let probs = predict(&ck, &data.test.batch)?;
    let report = eval_report(&ck.config.task_names(), &probs, &data.test)?;
    if !agrees(&report) {
        eprintln!(
            "warning: {}: the test AUC recomputed from best/ differs from best/meta.json",
            dir.display()
        );
    }
    let cached = CachedTest {
        best_epoch: meta.epoch,
        report,
    };
    let json = serde_json::to_vec_pretty(&cached)
        .map_err(|e| TrainError::io(&cache_path, std::io::Error::other(e)))?;
    write_atomically(&cache_path, &json)?;
    Ok(cached.report)
}

/// Writes `bytes` to `<path>.tmp-<pid>` and renames it to `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TrainError::io(path, e)
    })
}

/// Mean and sample standard deviation (`n − 1` in the denominator; `None` for fewer than two
/// values) of the finite values of `xs`; `None` when none is finite.
pub fn mean_std(xs: &[f64]) -> Option<(f64, Option<f64>)> {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.len() >= 2)
        .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Some((mean, std))
}

/// `mean ± std` with `decimals`, `mean` alone for one value, `n/a` for none; `(k/n seeds)` is
/// appended when only `k` of the `n` runs have the value.
fn cell(values: &[Option<f64>], decimals: usize) -> String {
    let present: Vec<f64> = values
        .iter()
        .filter_map(|v| *v)
        .filter(|v| v.is_finite())
        .collect();
    let Some((mean, std)) = mean_std(&present) else {
        return "n/a".into();
    };
    let mut s = match std {
        Some(sd) => format!("{mean:.decimals$} ± {sd:.decimals$}"),
        None => format!("{mean:.decimals$}"),
    };
    if present.len() < values.len() {
        let _ = write!(s, " ({}/{} seeds)", present.len(), values.len());
    }
    s
}

/// The test AUC of `task` in cohort `group` (`all` for every row).
fn auc_of(run: &RunResult, group: &str, task: &str) -> Option<f64> {
    let metrics = if group == "all" {
        &run.test.overall
    } else {
        &run.test.cohorts.iter().find(|c| c.cohort == group)?.tasks
    };
    metrics.iter().find(|m| m.task == task)?.auc
}

fn gauc_of(run: &RunResult, task: &str) -> Option<f64> {
    run.test.gauc.iter().find(|g| g.task == task)?.gauc
}

/// The markdown summary of an ablation's runs: test rows per cohort; per task, a table of test
/// AUC per cohort (`0`, `1-5`, `6-20`, `21-100`, `>100`, `sparse`, all) and GAUC, mean ± sample
/// std over seeds, one row per variant; the facts per variant (sparse-cohort AUC minus PLE's, and
/// the larger of the two stds); and a table of best epochs, training time, throughput and centres
/// used per memory table at the last epoch. Variants are listed in [`VARIANTS`] order, unknown
/// keys after them.
pub fn render_markdown(config_label: &str, runs: &[RunResult]) -> String {
    let mut keys: Vec<&str> = VARIANTS
        .iter()
        .map(|v| v.key)
        .filter(|k| runs.iter().any(|r| r.variant == *k))
        .collect();
    for r in runs {
        if !keys.contains(&r.variant.as_str()) {
            keys.push(&r.variant);
        }
    }
    let of = |key: &str| -> Vec<&RunResult> { runs.iter().filter(|r| r.variant == key).collect() };
    let mut seeds: Vec<u64> = runs.iter().map(|r| r.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let seeds_text = seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let tasks: Vec<String> = runs
        .first()
        .map(|r| r.test.overall.iter().map(|m| m.task.clone()).collect())
        .unwrap_or_default();
    let groups: Vec<&str> = COHORTS.iter().copied().chain([SPARSE, "all"]).collect();

    let mut out = String::new();
    let _ = writeln!(out, "# Protocol B ablation: {config_label}\n");
    let _ = writeln!(
        out,
        "Test split, `best/` checkpoint of every run (early stopping on mean validation AUC); \
         model seeds {seeds_text}; every cell is mean ± sample std over seeds. Cohorts by the \
         user's number of ratings before the sample; `sparse` = `0-20`.\n"
    );
    if let Some(first) = runs.first() {
        let mut counts = vec![format!(
            "all {}",
            thousands(first.test.overall.first().map(|m| m.n).unwrap_or(0))
        )];
        counts.extend(
            first
                .test
                .cohorts
                .iter()
                .map(|c| format!("{} {}", c.cohort, thousands(c.rows))),
        );
        let _ = writeln!(out, "Test rows: {}.\n", counts.join(", "));
    }

    for task in &tasks {
        let _ = writeln!(out, "## Test AUC: `{task}`\n");
        let _ = writeln!(
            out,
            "| variant | {} | GAUC |",
            groups
                .iter()
                .map(|g| if *g == SPARSE { "sparse (0-20)" } else { g })
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(out, "|---|{}---:|", "---:|".repeat(groups.len()));
        for key in &keys {
            let rs = of(key);
            let mut cells: Vec<String> = groups
                .iter()
                .map(|g| {
                    let v: Vec<Option<f64>> = rs.iter().map(|r| auc_of(r, g, task)).collect();
                    cell(&v, 4)
                })
                .collect();
            let g: Vec<Option<f64>> = rs.iter().map(|r| gauc_of(r, task)).collect();
            cells.push(cell(&g, 4));
            let _ = writeln!(out, "| {} | {} |", label_of(key), cells.join(" | "));
        }
        out.push('\n');
    }

    let _ = writeln!(out, "## Facts: sparse-cohort test AUC vs PLE\n");
    let _ = writeln!(
        out,
        "Δ = variant mean − PLE mean; σ = the larger of the two sample stds.\n"
    );
    let base = VARIANTS[0].key;
    let sparse_stats = |key: &str, task: &str| {
        let v: Vec<f64> = of(key)
            .iter()
            .filter_map(|r| auc_of(r, SPARSE, task))
            .collect();
        mean_std(&v)
    };
    for key in keys.iter().filter(|k| **k != base) {
        let parts: Vec<String> = tasks
            .iter()
            .map(
                |task| match (sparse_stats(key, task), sparse_stats(base, task)) {
                    (Some((m, s)), Some((mb, sb))) => {
                        let sigma = match (s, sb) {
                            (Some(a), Some(b)) => format!("{:.4}", a.max(b)),
                            _ => "n/a".into(),
                        };
                        format!("{task} Δ {:+.4}, σ {sigma}", m - mb)
                    }
                    _ => format!("{task} Δ n/a"),
                },
            )
            .collect();
        let _ = writeln!(out, "- {}: {}", label_of(key), parts.join("; "));
    }
    out.push('\n');

    let mut tables: Vec<(String, usize)> = Vec::new();
    for r in runs {
        for t in &r.tables {
            if !tables.iter().any(|(name, _)| name == &t.table) {
                tables.push((t.table.clone(), t.centres));
            }
        }
    }
    let _ = writeln!(out, "## Training and memory tables\n");
    let _ = writeln!(
        out,
        "Centres used = centres assigned at least once in the run's last epoch (mean ± std over \
         seeds / table size). `train s` is the wall time of the epoch loop; `samples/s` counts \
         optimisation steps only.\n"
    );
    let mut header = String::from("| variant | best epochs | train s | samples/s |");
    let mut rule = String::from("|---|---|---:|---:|");
    for (name, _) in &tables {
        let _ = write!(header, " {name} used |");
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for key in &keys {
        let rs = of(key);
        let epochs = rs
            .iter()
            .map(|r| r.best_epoch.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let secs: Vec<Option<f64>> = rs.iter().map(|r| Some(r.train_seconds)).collect();
        let sps: Vec<Option<f64>> = rs.iter().map(|r| Some(r.samples_per_second)).collect();
        let mut line = format!(
            "| {} | {epochs} | {} | {} |",
            label_of(key),
            cell(&secs, 1),
            cell(&sps, 0)
        );
        for (name, centres) in &tables {
            let used: Vec<Option<f64>> = rs
                .iter()
                .map(|r| {
                    r.tables
                        .iter()
                        .find(|t| &t.table == name)
                        .map(|t| t.used as f64)
                })
                .collect();
            if used.iter().all(Option::is_none) {
                line.push_str(" — |");
            } else {
                let _ = write!(line, " {} / {centres} |", cell(&used, 1));
            }
        }
        let _ = writeln!(out, "{line}");
    }
    let reused: Vec<String> = runs
        .iter()
        .filter(|r| r.reused)
        .map(|r| format!("{}-s{}", r.variant, r.seed))
        .collect();
    if !reused.is_empty() {
        let _ = writeln!(
            out,
            "\nReused completed runs (not retrained): {}.",
            reused.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use uie_train::metrics::TaskMetrics;
    use uie_train::report::{CohortMetrics, Gauc};

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]).expect("values");
        assert!((m - 2.5).abs() < 1e-12);
        // Sample std: sqrt(((1.5² + 0.5²) · 2) / 3) = sqrt(5 / 3).
        assert!((s.expect("std") - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[0.7]), Some((0.7, None)));
        assert_eq!(mean_std(&[]), None);
        assert_eq!(mean_std(&[f64::NAN]), None);
        let (m, s) = mean_std(&[0.5, f64::NAN, 0.7]).expect("finite ones");
        assert!((m - 0.6).abs() < 1e-12);
        assert!((s.expect("std") - 0.02f64.sqrt()).abs() < 1e-12);
        assert_eq!(cell(&[Some(0.5), Some(0.7)], 4), "0.6000 ± 0.1414");
        assert_eq!(cell(&[Some(0.5), None], 4), "0.5000 (1/2 seeds)");
        assert_eq!(cell(&[None, None], 4), "n/a");
    }

    #[test]
    fn variants_switch_only_the_modules() {
        let base = Config::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/movielens-uie.toml"),
        )
        .expect("config");
        let ple = VARIANTS[0].config(&base);
        assert!(!ple.uie.any());
        assert!(ple.features.sequence.is_some(), "the sequence stays in PLE");
        ple.validate().expect("PLE variant is valid");
        let full = VARIANTS[3].config(&base);
        assert_eq!(full, base);
        let two = VARIANTS[2].config(&base);
        assert!(two.uie.upe.enabled && two.uie.ucbe.enabled && !two.uie.ucse.enabled);
        assert_eq!(
            VARIANTS[1].run_dir(Path::new("out"), 3),
            Path::new("out/upe-s3")
        );
    }

    fn metrics(task: &str, auc: f64) -> TaskMetrics {
        TaskMetrics {
            task: task.into(),
            auc: Some(auc),
            logloss: 0.5,
            n: 100,
        }
    }

    /// A run whose AUCs are `base` everywhere except the sparse cohort (`sparse`).
    fn run_result(
        variant: &str,
        seed: u64,
        base: f64,
        sparse: f64,
        used: Option<usize>,
    ) -> RunResult {
        let cohorts = COHORTS
            .iter()
            .copied()
            .chain([SPARSE])
            .map(|c| CohortMetrics {
                cohort: c.into(),
                rows: 1000,
                tasks: vec![
                    metrics("watch", if c == SPARSE { sparse } else { base }),
                    metrics("like", base - 0.1),
                ],
            })
            .collect();
        RunResult {
            variant: variant.into(),
            seed,
            best_epoch: 3 + seed as usize,
            test: EvalReport {
                overall: vec![metrics("watch", base), metrics("like", base - 0.1)],
                cohorts,
                gauc: vec![
                    Gauc {
                        task: "watch".into(),
                        gauc: Some(0.6),
                        users: 10,
                    },
                    Gauc {
                        task: "like".into(),
                        gauc: None,
                        users: 0,
                    },
                ],
            },
            train_seconds: 10.0 * seed as f64,
            samples_per_second: 1000.0,
            tables: used
                .map(|u| {
                    vec![TableUsage {
                        table: "memory.upe".into(),
                        centres: 256,
                        used: u,
                        entropy: 4.0,
                        reseeded: 0,
                    }]
                })
                .unwrap_or_default(),
            reused: seed == 1,
        }
    }

    #[test]
    fn renders_tables_and_facts() {
        // Out of order on purpose: the table follows VARIANTS order.
        let runs = vec![
            run_result("full-uie", 1, 0.8, 0.72, Some(200)),
            run_result("full-uie", 2, 0.8, 0.74, Some(210)),
            run_result("ple", 1, 0.8, 0.70, None),
            run_result("ple", 2, 0.8, 0.71, None),
        ];
        let md = render_markdown("models/movielens-uie.toml", &runs);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "# Protocol B ablation: models/movielens-uie.toml");
        assert!(md.contains("model seeds 1, 2;"), "{md}");
        assert!(
            md.contains("Test rows: all 100, 0 1,000, 1-5 1,000, 6-20 1,000, 21-100 1,000, >100 1,000, sparse 1,000."),
            "{md}"
        );
        let header = "| variant | 0 | 1-5 | 6-20 | 21-100 | >100 | sparse (0-20) | all | GAUC |";
        assert_eq!(md.matches(header).count(), 2, "one table per task");
        let watch = md.find("## Test AUC: `watch`").expect("watch table");
        let like = md.find("## Test AUC: `like`").expect("like table");
        assert!(watch < like);
        let ple =
            "| PLE | 0.8000 ± 0.0000 | 0.8000 ± 0.0000 | 0.8000 ± 0.0000 | 0.8000 ± 0.0000 | \
                   0.8000 ± 0.0000 | 0.7050 ± 0.0071 | 0.8000 ± 0.0000 | 0.6000 ± 0.0000 |";
        assert!(md.contains(ple), "{md}");
        assert!(md.find(ple).expect("ple row") < md.find("| full UIE | 0.8000").expect("uie row"));
        // like has no GAUC.
        assert!(md.contains("| 0.7000 ± 0.0000 | n/a |"), "{md}");
        // Facts: Δ = 0.73 − 0.705, σ = max(0.01414, 0.00707).
        assert!(
            md.contains("- full UIE: watch Δ +0.0250, σ 0.0141; like Δ +0.0000, σ 0.0000"),
            "{md}"
        );
        assert!(!md.contains("- PLE:"), "no facts line for the baseline");
        assert!(md.contains("| variant | best epochs | train s | samples/s | memory.upe used |"));
        assert!(
            md.contains("| PLE | 4, 5 | 15.0 ± 7.1 | 1000 ± 0 | — |"),
            "{md}"
        );
        assert!(
            md.contains("| full UIE | 4, 5 | 15.0 ± 7.1 | 1000 ± 0 | 205.0 ± 7.1 / 256 |"),
            "{md}"
        );
        assert!(md.contains("Reused completed runs (not retrained): full-uie-s1, ple-s1."));
    }

    #[test]
    fn one_seed_renders_without_std_and_missing_ple_gives_na_facts() {
        let runs = vec![run_result("upe", 1, 0.8, 0.72, Some(100))];
        let md = render_markdown("x", &runs);
        assert!(md.contains("| +UPE | 0.8000 | 0.8000 |"), "{md}");
        assert!(md.contains("- +UPE: watch Δ n/a; like Δ n/a"), "{md}");
        // No runs at all: a header, no panic.
        let empty = render_markdown("x", &[]);
        assert!(empty.starts_with("# Protocol B ablation: x"));
    }

    #[test]
    fn completed_runs_are_detected_and_mismatches_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = Config::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/movielens-uie.toml"),
        )
        .expect("config");
        let dir = tmp.path().join("ple-s1");
        assert!(!completed_run(&dir, &base).expect("absent"));
        let best = dir.join("best");
        std::fs::create_dir_all(&best).expect("mkdir");
        let meta = |metrics: &str| {
            format!(
                r#"{{"format_version": 1, "producer": "t", "epoch": 2, "metrics": {{{metrics}}}}}"#
            )
        };
        std::fs::write(best.join("meta.json"), meta(r#""val_auc.watch": 0.7"#)).expect("meta");
        assert!(!completed_run(&dir, &base).expect("no test metrics"));
        std::fs::write(best.join("meta.json"), meta(r#""test_auc.watch": 0.7"#)).expect("meta");
        std::fs::write(
            best.join("config.toml"),
            base.to_toml_string().expect("toml"),
        )
        .expect("config");
        assert!(completed_run(&dir, &base).expect("complete"));
        let mut other = base.clone();
        other.train.seed = 2;
        let e = completed_run(&dir, &other).expect_err("different seed");
        assert!(e.to_string().contains("[train]"), "{e}");
        assert!(read_history(&dir).expect("no history").is_empty());
        std::fs::create_dir_all(dir.join("last")).expect("mkdir");
        std::fs::write(dir.join("last").join(HISTORY_FILE), "not json").expect("write");
        assert!(read_history(&dir).is_err());
    }
}

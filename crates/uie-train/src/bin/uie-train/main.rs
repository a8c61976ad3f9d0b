//! `uie-train`: train a model from a config, evaluate a checkpoint on its test split, or run the
//! Protocol B ablation.
//!
//! ```text
//! uie-train train --config models/census-ple.toml --out out/census [--seed N] [--epochs N]
//!                 [--resume out/census/last] [--data-root .] [--quiet]
//! uie-train eval --checkpoint out/census/best [--data-root .]
//! uie-train prepare --config models/movielens-uie.toml [--data-root .]
//! uie-train export --config models/census-ple.toml --out out/export [--seed N] [--data-root .]
//! uie-train ablation --config models/movielens-uie.toml --seeds 1,2,3 --out out/ablation
//!                    [--data-root .] [--epochs N] [--quiet]
//! ```
//!
//! `train` shows a progress bar and prints every epoch's validation metrics (see [`console`]), and
//! draws the run's plots into `<out>/plots/` ([`plots`]); `eval` prints, for data with history
//! cohorts (MovieLens), the test metrics per cohort and GAUC as markdown ([`tables`]); `ablation`
//! runs Protocol B ([`ablation`]). The library below them never prints.

mod ablation;
mod console;
mod plots;
mod tables;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use uie_model::config::DataKind;
use uie_model::{Checkpoint, Config};
use uie_train::report::eval_report;
use uie_train::train::load_data;
use uie_train::{eval_checkpoint, predict, train_with, TrainOptions};

use crate::ablation::AblationOptions;
use crate::console::Console;
use crate::tables::cohort_table;

#[derive(Parser)]
#[command(
    name = "uie-train",
    version,
    about = "Train PLE and UIE models with dfdx"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model and write <out>/best and <out>/last.
    Train {
        /// Model config (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Override train.seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Override train.epochs (total, counting epochs before a resume).
        #[arg(long)]
        epochs: Option<usize>,
        /// Resume from a `last` checkpoint.
        #[arg(long)]
        resume: Option<PathBuf>,
        /// Directory relative data paths are resolved against.
        #[arg(long, default_value = ".")]
        data_root: PathBuf,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Keep only the first N training rows (quick runs).
        #[arg(long)]
        max_train_rows: Option<usize>,
    },
    /// Print test AUC and logloss per task of a checkpoint (per history cohort, with GAUC, for
    /// MovieLens).
    Eval {
        /// Checkpoint directory.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Directory relative data paths are resolved against.
        #[arg(long, default_value = ".")]
        data_root: PathBuf,
    },
    /// Prepare the MovieLens data of a config (Protocol B) and print its statistics.
    Prepare {
        /// Model config (TOML) with `data.kind = "movielens"`.
        #[arg(long)]
        config: PathBuf,
        /// Directory relative data paths are resolved against.
        #[arg(long, default_value = ".")]
        data_root: PathBuf,
    },
    /// Write the prepared train/val/test splits (inputs and labels, the trainer's rows) and the
    /// initial weights as safetensors into <out>, for training the same model elsewhere.
    Export {
        /// Model config (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Output directory (replaced).
        #[arg(long)]
        out: PathBuf,
        /// Seed of the initial weights (default train.seed).
        #[arg(long)]
        seed: Option<u64>,
        /// Directory relative data paths are resolved against.
        #[arg(long, default_value = ".")]
        data_root: PathBuf,
    },
    /// Protocol B ablation: PLE, +UPE, +UPE+UCBE and full UIE per seed, into <out>/<variant>-s<seed>,
    /// summarised in <out>/ablation.md. Completed runs are reused.
    Ablation {
        /// The full-UIE config (TOML); the variants switch its [uie] modules off.
        #[arg(long)]
        config: PathBuf,
        /// Model seeds, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        seeds: Vec<u64>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Directory relative data paths are resolved against.
        #[arg(long, default_value = ".")]
        data_root: PathBuf,
        /// Override train.epochs for every run.
        #[arg(long)]
        epochs: Option<usize>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// Keep only the first N training rows (quick runs; do not mix with full runs in one --out).
        #[arg(long)]
        max_train_rows: Option<usize>,
        /// Keep only the first N validation and test rows (quick runs; same caveat).
        #[arg(long)]
        max_eval_rows: Option<usize>,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line naming the problem: the context chain joined by ": ".
            eprintln!("error: {}", uie_cli::one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train {
            config,
            out,
            seed,
            epochs,
            resume,
            data_root,
            quiet,
            max_train_rows,
        } => {
            let cfg = Config::load(&config)
                .with_context(|| format!("loading config {}", config.display()))?;
            let opts = TrainOptions {
                out: out.clone(),
                data_root,
                resume,
                seed,
                epochs,
                max_train_rows,
                max_eval_rows: None,
            };
            let report =
                train_with(&cfg, &opts, &mut Console::new(quiet)).context("training failed")?;
            if !report.history.is_empty() {
                let dir = out.join("plots");
                // The checkpoints are written; a plot that cannot be drawn is only reported.
                match plots::write_plots(&dir, &report.history) {
                    Ok(paths) => {
                        for p in paths {
                            println!("plot {}", p.display());
                        }
                    }
                    Err(e) => eprintln!("warning: plots not written: {e}"),
                }
            }
            let peak = report
                .peak_rss_bytes
                .map(|b| format!(", peak RSS {:.1} MiB", b as f64 / (1024.0 * 1024.0)))
                .unwrap_or_default();
            println!(
                "done: best epoch {} of {}, {:.1} s, {:.0} samples/s{peak}; best checkpoint {}",
                report.best_epoch,
                report.epochs_completed,
                report.train_seconds,
                report.samples_per_second,
                out.join("best").display()
            );
        }
        Command::Eval {
            checkpoint,
            data_root,
        } => {
            let ck = Checkpoint::read(&checkpoint)
                .with_context(|| format!("reading checkpoint {}", checkpoint.display()))?;
            if ck.config.data.kind == DataKind::Movielens {
                let mut opts = TrainOptions::new(".");
                opts.data_root = data_root;
                let splits = load_data(&ck.config, &opts).context("loading the data failed")?;
                let probs = predict(&ck, &splits.test.batch).context("prediction failed")?;
                let report = eval_report(&ck.config.task_names(), &probs, &splits.test)
                    .context("evaluation failed")?;
                println!(
                    "test split of {} (epoch {}):\n",
                    checkpoint.display(),
                    ck.meta.epoch
                );
                print!("{}", cohort_table(&report));
            } else {
                let metrics = eval_checkpoint(&ck, &data_root).context("evaluation failed")?;
                for m in metrics {
                    println!("test {m}");
                }
            }
        }
        Command::Prepare { config, data_root } => {
            let cfg = Config::load(&config)
                .with_context(|| format!("loading config {}", config.display()))?;
            if cfg.data.kind != DataKind::Movielens {
                anyhow::bail!(
                    "{}: prepare reads MovieLens data only (data.kind = \"movielens\")",
                    config.display()
                );
            }
            let (_, report) = uie_train::data::movielens::prepare(&cfg, &data_root)
                .context("preparing the data failed")?;
            println!("{report}");
        }
        Command::Export {
            config,
            out,
            seed,
            data_root,
        } => {
            let cfg = Config::load(&config)
                .with_context(|| format!("loading config {}", config.display()))?;
            let report =
                uie_train::export::export(&cfg, &data_root, seed, &out).context("export failed")?;
            for (split, rows) in report {
                println!("{split}: {rows} rows");
            }
            println!("written: {}", out.display());
        }
        Command::Ablation {
            config,
            seeds,
            out,
            data_root,
            epochs,
            quiet,
            max_train_rows,
            max_eval_rows,
        } => {
            let cfg = Config::load(&config)
                .with_context(|| format!("loading config {}", config.display()))?;
            let opts = AblationOptions {
                config: cfg,
                config_label: config.display().to_string(),
                seeds,
                out,
                data_root,
                epochs,
                quiet,
                max_train_rows,
                max_eval_rows,
            };
            let report = ablation::run(&opts).context("ablation failed")?;
            println!("\n{}", report.markdown);
            println!("table: {}", report.table_path.display());
        }
    }
    Ok(())
}

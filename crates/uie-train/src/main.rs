//! `uie-train`: train a model from a config, or evaluate a checkpoint on its test split.
//!
//! ```text
//! uie-train train --config models/census-ple.toml --out out/census [--seed N] [--epochs N]
//!                 [--resume out/census/last] [--data-root .] [--quiet]
//! uie-train eval --checkpoint out/census/best [--data-root .]
//! uie-train prepare --config models/movielens-uie.toml [--data-root .]
//! ```

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use uie_model::config::DataKind;
use uie_model::{Checkpoint, Config};
use uie_train::{eval_checkpoint, train, TrainOptions};

#[derive(Parser)]
#[command(name = "uie-train", version, about = "Train PLE models with dfdx")]
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
    /// Print test AUC and logloss per task of a checkpoint.
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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
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
                quiet,
                max_train_rows,
                max_eval_rows: None,
            };
            let report = train(&cfg, &opts).context("training failed")?;
            println!(
                "done: best epoch {} of {}, {:.1} s, {:.0} samples/s; best checkpoint {}",
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
            let metrics = eval_checkpoint(&ck, &data_root).context("evaluation failed")?;
            for m in metrics {
                println!("test {m}");
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
    }
    Ok(())
}

//! `uie-compile`: the command line over the library (build, inspect, verify, dump).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Compiles uie checkpoints into self-contained ONNX files.
#[derive(Parser)]
#[command(name = "uie-compile", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a checkpoint directory into one ONNX file.
    Build {
        /// The checkpoint directory.
        checkpoint: PathBuf,
        /// Output file.
        #[arg(short, long, default_value = "model.onnx")]
        output: PathBuf,
    },
    /// Print a model's inputs, outputs, op counts, initializers and metadata.
    Inspect {
        /// The ONNX file.
        model: PathBuf,
    },
    /// Check a model against a checkpoint's golden rows in tract (plain and optimised).
    Verify {
        /// The ONNX file.
        model: PathBuf,
        /// The checkpoint directory holding golden.safetensors.
        #[arg(long)]
        checkpoint: PathBuf,
    },
    /// Print the IR text dump of a checkpoint's graph.
    Dump {
        /// The checkpoint directory.
        checkpoint: PathBuf,
    },
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Build { checkpoint, output } => {
            let n = uie_compile::compile_to_file(&checkpoint, &output)
                .with_context(|| format!("compiling {}", checkpoint.display()))?;
            println!("wrote {} ({n} bytes)", output.display());
        }
        Command::Inspect { model } => {
            let bytes =
                std::fs::read(&model).with_context(|| format!("reading {}", model.display()))?;
            let summary = uie_compile::onnx::summarize(&bytes)
                .with_context(|| format!("reading {}", model.display()))?;
            print!("{summary}");
        }
        Command::Verify { model, checkpoint } => {
            let report = uie_compile::verify::verify(&model, &checkpoint).with_context(|| {
                format!(
                    "verifying {} against {}",
                    model.display(),
                    checkpoint.display()
                )
            })?;
            print!("{report}");
            return Ok(report.passed());
        }
        Command::Dump { checkpoint } => {
            let ck = uie_model::Checkpoint::read(&checkpoint)
                .with_context(|| format!("reading {}", checkpoint.display()))?;
            let graph = uie_compile::pipeline::build_graph(&ck)?;
            print!("{}", graph.dump());
        }
    }
    Ok(true)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

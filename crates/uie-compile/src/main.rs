//! `uie-compile`: the command line over the library (build, triton, inspect, verify, dump).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use uie_compile::onnx::{ExternalDataOptions, WriteOptions};
use uie_compile::pipeline::CompileOptions;

/// Compiles uie checkpoints into self-contained ONNX files.
#[derive(Parser)]
#[command(name = "uie-compile", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a checkpoint directory into an ONNX file (plus `<output>.<hash>.data` with
    /// external data). A model that would pass the 2 GiB protobuf limit inline always gets external data.
    Build {
        /// The checkpoint directory.
        checkpoint: PathBuf,
        /// Output file.
        #[arg(short, long, default_value = "model.onnx")]
        output: PathBuf,
        /// Store large initializers in ONE data file beside the model (`<output>.<hash>.data`,
        /// named by its content hash; ONNX external data, offsets aligned). Load such a model
        /// from its path.
        #[arg(long)]
        external_data: bool,
        /// With --external-data: initializers of at least this many bytes go to the data file.
        #[arg(long, value_name = "BYTES", default_value_t = uie_compile::onnx::DEFAULT_EXTERNAL_THRESHOLD, requires = "external_data")]
        external_threshold: u64,
        /// With --external-data: alignment of tensor offsets in the data file (a power of two).
        #[arg(long, value_name = "BYTES", default_value_t = uie_compile::onnx::DEFAULT_ALIGNMENT, requires = "external_data")]
        external_align: u64,
        /// Also output the intermediate UIE values (`debug.*` outputs) for debugging parity.
        #[arg(long)]
        debug_outputs: bool,
    },
    /// Compile a checkpoint into a Triton model repository for the onnxruntime backend:
    /// `<repo>/<name>/config.pbtxt` and `<repo>/<name>/1/model.onnx` (plus
    /// `model.onnx.<hash>.data` with external data).
    Triton {
        /// The checkpoint directory.
        #[arg(long)]
        checkpoint: PathBuf,
        /// The model repository directory (created if absent).
        #[arg(long)]
        repo: PathBuf,
        /// The model's name in the repository (default: the config's model name).
        #[arg(long)]
        name: Option<String>,
        /// Triton's `max_batch_size`.
        #[arg(long, default_value_t = uie_compile::triton::DEFAULT_MAX_BATCH_SIZE)]
        max_batch_size: u32,
        /// Store large initializers in `model.onnx.<hash>.data` beside the model (ONNX external
        /// data).
        #[arg(long)]
        external_data: bool,
        /// With --external-data: initializers of at least this many bytes go to the data file.
        #[arg(long, value_name = "BYTES", default_value_t = uie_compile::onnx::DEFAULT_EXTERNAL_THRESHOLD, requires = "external_data")]
        external_threshold: u64,
    },
    /// Print a model's inputs, outputs, op counts, node counts per sub-graph, initializers
    /// (inline or external), memory tables and metadata. Never loads external data.
    Inspect {
        /// The ONNX file.
        model: PathBuf,
        /// Leave out the per-initializer list.
        #[arg(long)]
        summary: bool,
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
        Command::Build {
            checkpoint,
            output,
            external_data,
            external_threshold,
            external_align,
            debug_outputs,
        } => {
            let compile = CompileOptions {
                debug_outputs,
                ..CompileOptions::default()
            };
            let opts = WriteOptions {
                external_data: external_data.then_some(ExternalDataOptions {
                    threshold: external_threshold,
                    alignment: external_align,
                }),
                progress: true,
                ..WriteOptions::default()
            };
            let report =
                uie_compile::pipeline::compile_to_path(&checkpoint, &output, &compile, &opts)
                    .with_context(|| format!("compiling {}", checkpoint.display()))?;
            if report.automatic {
                eprintln!(
                    "note: inline the model would be about {} bytes, past the 2 GiB protobuf \
                     limit: large initializers went to external data",
                    report.inline_estimate
                );
            }
            println!(
                "wrote {} ({} bytes)",
                report.model_path.display(),
                report.model_bytes
            );
            if let Some(d) = &report.data {
                println!(
                    "wrote {} ({} bytes, {} tensors)",
                    d.path.display(),
                    d.bytes,
                    d.tensors
                );
            }
        }
        Command::Triton {
            checkpoint,
            repo,
            name,
            max_batch_size,
            external_data,
            external_threshold,
        } => {
            let opts = WriteOptions {
                external_data: external_data.then_some(ExternalDataOptions {
                    threshold: external_threshold,
                    ..ExternalDataOptions::default()
                }),
                progress: true,
                ..WriteOptions::default()
            };
            let report = uie_compile::triton::write_repository(
                &checkpoint,
                &repo,
                name.as_deref(),
                max_batch_size,
                &opts,
            )
            .with_context(|| {
                format!("writing a Triton repository from {}", checkpoint.display())
            })?;
            println!("wrote {}", report.config_path.display());
            println!(
                "wrote {} ({} bytes)",
                report.model.model_path.display(),
                report.model.model_bytes
            );
            if let Some(d) = &report.model.data {
                println!("wrote {} ({} bytes)", d.path.display(), d.bytes);
            }
        }
        Command::Inspect { model, summary } => {
            let s = uie_compile::onnx::summarize_file(&model)
                .with_context(|| format!("reading {}", model.display()))?;
            print!("{}", s.render(!summary));
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
            let ck = uie_model::Checkpoint::read_model(&checkpoint)
                .with_context(|| format!("reading {}", checkpoint.display()))?;
            let graph = uie_compile::pipeline::build_graph_owned(ck, &CompileOptions::default())?;
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
            eprintln!("error: {}", uie_cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

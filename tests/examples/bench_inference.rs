//! The tract side of the inference benchmark (`scripts/bench-inference.sh`): the compiled
//! MovieLens model through the public `uie-runtime` API (`Model::load_with`, `Model::predict`, one
//! thread: tract runs a plan on the calling thread), against ONNX Runtime on the same file and the
//! same inputs (`tests/python/bench_ort.py`).
//!
//! - `prepare [--checkpoint DIR] [--out DIR]`: compiles the checkpoint (default
//!   `out/protocol-b/full-uie-s2/best`; trained briefly when absent) to `<out>/model.onnx` and writes
//!   `<out>/inputs_<n>.json` for each batch size: real MovieLens test rows, spread over the test
//!   split.
//! - `serve --model FILE --inputs DIR [--batches 1,16,256]`: loads the model twice, with the
//!   default [`EngineOptions`] (`default`: whatever rewrites the runtime applies by default, so
//!   future ones are measured automatically) and with every runtime addition off (`nofuse`: no
//!   rewrite, no upper-state clearing; plain tract on the standard graph), prints
//!   one JSON line `{"ready": …}`, then answers each stdin line `VARIANT BATCH SECONDS MIN_CALLS
//!   WARMUP` with one JSON line of per-call latencies in ns. The Python driver interleaves these
//!   requests with its ONNX Runtime runs, so load on the machine affects both sides alike.
//! - `run --model FILE --inputs DIR [--batches …] [--seconds S] [--min-calls C]`: times the
//!   default variant alone and prints p50, p99 and rows/s per batch size.
//!
//! A timed call is `Model::predict` on a prepared `Batch`: request validation, input assembly and
//! the tract run — what a service pays per request.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use uie_compile::verify::batch_inputs;
use uie_e2e::latency::{read_batch_values, summarise, time_calls, write_inputs_json, Budget};
use uie_e2e::repo_root;
use uie_model::Checkpoint;
use uie_runtime::{EngineOptions, Model, RawBatch};

#[derive(Parser)]
#[command(about = "tract side of the inference benchmark")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile the checkpoint and write the model and real test inputs.
    Prepare {
        /// Checkpoint directory (default out/protocol-b/full-uie-s2/best).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Output directory.
        #[arg(long, default_value = "target/bench-inference")]
        out: PathBuf,
        /// Batch sizes to write inputs for.
        #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
        batches: Vec<usize>,
    },
    /// Answer timing requests on stdin (used by tests/python/bench_ort.py).
    Serve {
        #[command(flatten)]
        files: Files,
    },
    /// Time the default variant alone and print a table.
    Run {
        #[command(flatten)]
        files: Files,
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        #[arg(long, default_value_t = 200)]
        min_calls: usize,
    },
}

/// The model and the inputs a timing command reads.
#[derive(Args)]
struct Files {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    inputs: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    batches: Vec<usize>,
}

fn prepare(checkpoint: Option<PathBuf>, out: &Path, batches: &[usize]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let dir = checkpoint.unwrap_or_else(|| repo_root().join("out/protocol-b/full-uie-s2/best"));
    let (ck, test) = if dir.is_dir() {
        let ck = Checkpoint::read(&dir).with_context(|| format!("reading {}", dir.display()))?;
        let opts = uie_train::TrainOptions {
            data_root: repo_root(),
            quiet: true,
            ..uie_train::TrainOptions::new(out.join("run"))
        };
        let splits = uie_train::train::load_data(&ck.config, &opts)?;
        (ck, splits.test)
    } else {
        eprintln!(
            "{} does not exist: training a MovieLens UIE model briefly (two epochs)",
            dir.display()
        );
        let (ck, splits) = uie_e2e::train_movielens_uie(out)?;
        (ck, splits.test)
    };
    let model = out.join("model.onnx");
    uie_compile::onnx::write_atomically(&model, &uie_compile::compile(&ck)?)?;
    eprintln!(
        "compiled {} ({} bytes) to {}",
        dir.display(),
        std::fs::metadata(&model)?.len(),
        model.display()
    );
    for &n in batches {
        if n == 0 || n > test.batch.n {
            bail!("batch {n} is outside [1, {}] (the test rows)", test.batch.n);
        }
        let step = (test.batch.n / n).max(1);
        let rows: Vec<usize> = (0..test.batch.n).step_by(step).take(n).collect();
        let inputs = batch_inputs(&ck.config, &test.batch.take(&rows))?;
        write_inputs_json(&out.join(format!("inputs_{n}.json")), &inputs)?;
    }
    Ok(())
}

/// The request of a batch size, read from `<inputs>/inputs_<n>.json`.
fn load_batch(model: &Model, inputs: &Path, n: usize) -> Result<RawBatch> {
    Ok(RawBatch::from_tensors(
        model.schema(),
        read_batch_values(inputs, n)?,
    )?)
}

fn time_predict(model: &Model, batch: &RawBatch, budget: Budget) -> Result<Vec<u64>> {
    time_calls(budget, || {
        model.predict(batch)?;
        Ok(())
    })
}

fn serve(model_path: &Path, inputs: &Path, batches: &[usize]) -> Result<()> {
    let default = Model::load_with(model_path, EngineOptions::default())?;
    let nofuse = Model::load_with(
        model_path,
        // The runtime's rewrites and its upper-state clearing all off: the standard ONNX graph as
        // tract optimises and runs it.
        EngineOptions {
            optimize: true,
            fuse_retrieval: false,
            fuse_attention: false,
            fuse_gates: false,
            fuse_lookups: false,
            merge_linear: false,
            clear_upper_state: false,
        },
    )?;
    let mut requests = Vec::new();
    for &n in batches {
        requests.push((n, load_batch(&default, inputs, n)?));
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        json!({
            "ready": true,
            "fused_retrievals": {
                "default": default.engine().fused_retrievals(),
                "nofuse": nofuse.engine().fused_retrievals(),
            },
            "rewrites": format!(
                "{} retrievals, {} attentions, {} gate mixes, {} embedding lookups fused; {} \
                 MatMuls merged",
                default.engine().fused_retrievals(),
                default.engine().fused_attentions(),
                default.engine().fused_gates(),
                default.engine().fused_lookups(),
                default.engine().merged_linear()
            ),
        })
    )?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [variant, n, seconds, min_calls, warmup] = parts[..] else {
            bail!("bad request {line:?}: expected VARIANT BATCH SECONDS MIN_CALLS WARMUP");
        };
        let model = match variant {
            "default" => &default,
            "nofuse" => &nofuse,
            other => bail!("unknown variant {other:?} (default, nofuse)"),
        };
        let n: usize = n.parse().context("BATCH")?;
        let (_, batch) = requests
            .iter()
            .find(|(m, _)| *m == n)
            .with_context(|| format!("batch {n} was not loaded (--batches)"))?;
        let budget = Budget {
            warmup_calls: warmup.parse().context("WARMUP")?,
            min_seconds: seconds.parse().context("SECONDS")?,
            min_calls: min_calls.parse().context("MIN_CALLS")?,
        };
        let samples = time_predict(model, batch, budget)?;
        writeln!(
            out,
            "{}",
            json!({"variant": variant, "batch": n, "samples_ns": samples})
        )?;
        out.flush()?;
    }
    Ok(())
}

fn run(model_path: &Path, inputs: &Path, batches: &[usize], budget: Budget) -> Result<()> {
    let model = Model::load_with(model_path, EngineOptions::default())?;
    println!(
        "{}: default options, {} retrievals fused, one thread",
        model_path.display(),
        model.engine().fused_retrievals()
    );
    println!("\n| batch | calls | p50 (µs) | p99 (µs) | rows/s |\n|---:|---:|---:|---:|---:|");
    for &n in batches {
        let batch = load_batch(&model, inputs, n)?;
        let s = summarise(&time_predict(&model, &batch, budget)?, n);
        println!(
            "| {n} | {} | {:.1} | {:.1} | {:.0} |",
            s.calls, s.p50_us, s.p99_us, s.rows_per_s
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Prepare {
            checkpoint,
            out,
            batches,
        } => prepare(checkpoint, &out, &batches),
        Cmd::Serve { files } => serve(&files.model, &files.inputs, &files.batches),
        Cmd::Run {
            files,
            seconds,
            min_calls,
        } => run(
            &files.model,
            &files.inputs,
            &files.batches,
            Budget {
                warmup_calls: 20,
                min_seconds: seconds,
                min_calls,
            },
        ),
    }
}

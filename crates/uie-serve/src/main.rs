//! `uie-serve`: serves a compiled uie model over HTTP with the KServe v2 inference protocol.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use uie_serve::http::Limits;
use uie_serve::{ModelHandle, ServeConfig, Server};

/// Serves a compiled uie model (KServe v2 / Triton HTTP protocol) until SIGINT or SIGTERM.
#[derive(Parser)]
#[command(name = "uie-serve", version, about)]
struct Cli {
    /// The model file written by `uie-compile build` (external data is read beside it).
    #[arg(long)]
    model: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: String,
    /// Worker threads running requests.
    #[arg(long, default_value_t = 4, value_parser = at_least_one)]
    workers: usize,
    /// Largest batch (rows) one request may carry.
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    max_batch: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 16 << 20, value_parser = at_least_one)]
    max_body_bytes: usize,
    /// The model's name in URLs (default: the model's `uie.model_name`).
    #[arg(long)]
    name: Option<String>,
    /// Largest request head (request line and header fields) in bytes; more is a 431.
    #[arg(long, default_value_t = 64 << 10, value_parser = at_least_one)]
    max_head_bytes: usize,
    /// Seconds a whole request (head and body) may take to arrive; more is a 408.
    #[arg(long, default_value_t = 30, value_parser = at_least_one)]
    read_timeout: usize,
    /// Seconds an idle keep-alive connection is kept open.
    #[arg(long, default_value_t = 15, value_parser = at_least_one)]
    idle_timeout: usize,
    /// Seconds writing a response may block before the connection is dropped.
    #[arg(long, default_value_t = 30, value_parser = at_least_one)]
    write_timeout: usize,
}

/// Parses a count that must be at least 1 (0 workers, rows or bytes would refuse everything).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn secs(n: usize) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(u64::MAX))
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
    let handle = ModelHandle::load(&cli.model)
        .with_context(|| format!("loading {}", cli.model.display()))?;
    let config = ServeConfig {
        addr: cli.addr,
        workers: cli.workers,
        max_batch: cli.max_batch,
        max_body_bytes: cli.max_body_bytes,
        model_name: cli.name,
        http: Limits {
            max_head_bytes: cli.max_head_bytes,
            read_timeout: secs(cli.read_timeout),
            idle_timeout: secs(cli.idle_timeout),
            write_timeout: secs(cli.write_timeout),
        },
    };
    let server = Server::start(handle, &config)?;
    let stopper = server.stopper();
    ctrlc::set_handler(move || stopper.stop()).context("installing the signal handler")?;
    eprintln!(
        "uie-serve: model {} on http://{} ({} workers, max batch {})",
        server.model_name(),
        server.addr(),
        config.workers,
        config.max_batch
    );
    server.wait();
    eprintln!("uie-serve: stopped");
    Ok(())
}

//! `uie-serve`: an HTTP server for compiled uie models speaking the KServe v2 inference protocol
//! (REST), the one Triton speaks, so `tritonclient.http` calls it exactly like Triton.
//!
//! Endpoints: `GET /v2/health/live`, `GET /v2/health/ready`, `GET /v2` (server metadata),
//! `GET /v2/models/{name}[/versions/1]` (model metadata), `GET /v2/models/{name}[/versions/1]/ready`,
//! `POST /v2/models/{name}[/versions/1]/infer` (JSON tensors, or Triton's binary tensor data
//! extension). The model's inputs are the ONNX graph's: one `INT64 [N]` per categorical field,
//! `dense` `FP32 [N, d]`, and with a behaviour sequence `hist_items` `INT64 [N, L]` and `hist_len`
//! `INT64 [N]`; the output is `probs` `FP32 [N, tasks]`. Every request is validated by
//! `uie-runtime` before it runs; errors answer `{"error": "..."}` with 400 (bad request, naming
//! the input), 404 (unknown model or path), 413 (body or batch above the limit) or 500 (engine
//! failure).
//!
//! [`Server::start`] binds, then an acceptor thread queues connections and `workers` std threads
//! serve them (HTTP/1.1 with keep-alive, [`http`]: bounded heads and bodies, timeouts) on one
//! shared [`ModelHandle`] (which can be hot-reloaded while serving). [`Stopper::stop`] (or
//! [`Server::shutdown`]) stops accepting and lets in-flight requests finish.
//!
//! Architecture invariant: depends on `uie-runtime` only, never on tract, the compiler or the
//! trainer.

pub mod error;
pub mod http;
pub mod kserve;
mod server;

pub use error::ServeError;
pub use server::{ServeConfig, Server, Stopper};
pub use uie_runtime::ModelHandle;

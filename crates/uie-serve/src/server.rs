//! The HTTP side: binding, the worker threads, routing, body limits and graceful shutdown.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value as Json;
use tiny_http::{Header, Method, Request, Response};
use uie_runtime::ModelHandle;

use crate::error::ServeError;
use crate::kserve;

/// How a [`Server`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Address to bind, e.g. `127.0.0.1:8000` (port 0 picks a free port).
    pub addr: String,
    /// Worker threads running requests (at least 1).
    pub workers: usize,
    /// Largest batch (rows) one request may carry; more is a 413.
    pub max_batch: usize,
    /// Largest request body in bytes; more is a 413.
    pub max_body_bytes: usize,
    /// The model's name in URLs; `None` takes the model's `uie.model_name`, else `uie`.
    pub model_name: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: "127.0.0.1:8000".into(),
            workers: 4,
            max_batch: 256,
            max_body_bytes: 16 << 20,
            model_name: None,
        }
    }
}

struct Shared {
    handle: ModelHandle,
    name: String,
    max_batch: usize,
    max_body_bytes: usize,
}

/// Stops a running [`Server`] from anywhere (a signal handler, another thread). Cheap to clone.
#[derive(Clone)]
pub struct Stopper {
    http: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    workers: usize,
}

impl std::fmt::Debug for Stopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stopper")
            .field("stopped", &self.stop.load(Ordering::SeqCst))
            .finish()
    }
}

impl Stopper {
    /// Asks every worker to stop once its current request is answered, and wakes idle ones.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for _ in 0..self.workers {
            self.http.unblock();
        }
    }

    /// Whether [`Stopper::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    name: String,
    stopper: Stopper,
    workers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds `config.addr` and starts `config.workers` threads serving `handle`.
    pub fn start(handle: ModelHandle, config: &ServeConfig) -> Result<Server, ServeError> {
        let bind_err = |message: String| ServeError::Bind {
            addr: config.addr.clone(),
            message,
        };
        let http =
            tiny_http::Server::http(config.addr.as_str()).map_err(|e| bind_err(e.to_string()))?;
        let addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| bind_err("not an IP address".into()))?;
        let http = Arc::new(http);
        let name = config
            .model_name
            .clone()
            .or_else(|| handle.current().name().map(str::to_string))
            .unwrap_or_else(|| "uie".to_string());
        let shared = Arc::new(Shared {
            handle,
            name: name.clone(),
            max_batch: config.max_batch,
            max_body_bytes: config.max_body_bytes,
        });
        let n = config.workers.max(1);
        let stopper = Stopper {
            http: Arc::clone(&http),
            stop: Arc::new(AtomicBool::new(false)),
            workers: n,
        };
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let http = Arc::clone(&http);
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stopper.stop);
            let worker = std::thread::Builder::new()
                .name(format!("uie-serve-{i}"))
                .spawn(move || worker_loop(&http, &shared, &stop))
                .map_err(ServeError::Io)?;
            workers.push(worker);
        }
        Ok(Server {
            addr,
            name,
            stopper,
            workers,
        })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The model's name in URLs.
    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// A handle that stops this server.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Waits until the server is stopped (by a [`Stopper`]) and every worker has finished its
    /// request.
    pub fn wait(self) {
        for w in self.workers {
            // A worker never panics (requests are answered from Results); nothing to report.
            let _ = w.join();
        }
    }

    /// Stops accepting, finishes in-flight requests, and returns when every worker is done.
    pub fn shutdown(self) {
        self.stopper.stop();
        self.wait();
    }
}

fn worker_loop(http: &tiny_http::Server, shared: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        // The timeout bounds how long a worker can miss the stop flag if an unblock went to
        // another worker.
        match http.recv_timeout(Duration::from_millis(250)) {
            Ok(Some(request)) => answer(request, shared),
            Ok(None) | Err(_) => continue,
        }
    }
}

fn json_response(status: u16, body: &Json) -> Response<std::io::Cursor<Vec<u8>>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::from_data(bytes).with_status_code(status);
    if let Ok(h) = Header::from_bytes("Content-Type", "application/json") {
        r.add_header(h);
    }
    r
}

fn answer(mut request: Request, shared: &Shared) {
    let response = match route(&mut request, shared) {
        Ok((status, body)) => json_response(status, &body),
        Err(e) => json_response(e.status(), &kserve::error_body(&e.to_string())),
    };
    // The client may have gone away; nothing else to do then.
    let _ = request.respond(response);
}

fn read_body(request: &mut Request, limit: usize) -> Result<Vec<u8>, ServeError> {
    let too_large = |n: String| {
        ServeError::TooLarge(format!(
            "the request body ({n} bytes) is above the limit of {limit} bytes"
        ))
    };
    if let Some(n) = request.body_length() {
        if n > limit {
            return Err(too_large(n.to_string()));
        }
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)?;
    if body.len() > limit {
        return Err(too_large("more than that".into()));
    }
    Ok(body)
}

fn header_length(request: &Request) -> Result<Option<usize>, ServeError> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(kserve::HEADER_LENGTH))
        .map(|h| kserve::parse_header_length(h.value.as_str()))
        .transpose()
}

fn route(request: &mut Request, shared: &Shared) -> Result<(u16, Json), ServeError> {
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or("");
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let method = request.method().clone();
    let get = |what: &str| {
        if method == Method::Get {
            Ok(())
        } else {
            Err(ServeError::MethodNotAllowed(format!(
                "{what} answers GET only"
            )))
        }
    };
    match parts.as_slice() {
        ["v2", "health", "live"] | ["v2", "health", "ready"] => {
            get(path)?;
            Ok((200, Json::Object(Default::default())))
        }
        ["v2"] => {
            get(path)?;
            Ok((200, kserve::server_metadata()))
        }
        ["v2", "models", name, rest @ ..] => {
            let rest = match rest {
                ["versions", v, tail @ ..] => {
                    if *v != kserve::VERSION {
                        return Err(ServeError::NotFound(format!(
                            "model {name} has no version {v} (only {})",
                            kserve::VERSION
                        )));
                    }
                    tail
                }
                other => other,
            };
            if *name != shared.name {
                return Err(ServeError::NotFound(format!(
                    "unknown model {name}: this server serves {}",
                    shared.name
                )));
            }
            match rest {
                [] => {
                    get(path)?;
                    Ok((
                        200,
                        kserve::model_metadata(&shared.name, &shared.handle.current()),
                    ))
                }
                ["ready"] => {
                    get(path)?;
                    Ok((200, Json::Object(Default::default())))
                }
                ["infer"] => {
                    if method != Method::Post {
                        return Err(ServeError::MethodNotAllowed(format!(
                            "{path} answers POST only"
                        )));
                    }
                    infer(request, shared)
                }
                _ => Err(ServeError::NotFound(format!("no endpoint {path}"))),
            }
        }
        _ => Err(ServeError::NotFound(format!("no endpoint {path}"))),
    }
}

fn infer(request: &mut Request, shared: &Shared) -> Result<(u16, Json), ServeError> {
    let header_length = header_length(request)?;
    let body = read_body(request, shared.max_body_bytes)?;
    // One model for the whole request, even if a reload lands meanwhile.
    let model = shared.handle.current();
    let (req, batch) = kserve::decode_request(&model, &body, header_length, shared.max_batch)?;
    let preds = model.predict(&batch)?;
    Ok((
        200,
        kserve::infer_response(&shared.name, req.id.as_deref(), &preds),
    ))
}

//! The server: binding, the acceptor and worker threads, routing, body limits and graceful
//! shutdown. The HTTP/1.1 transport itself is [`crate::http`].
//!
//! One acceptor thread takes connections and queues them; `workers` threads each serve one
//! connection at a time, request after request while the client keeps it alive. A worker whose
//! connection goes idle while other connections wait in the queue puts it back at the end of the
//! queue and serves the next one, so idle keep-alive clients cannot starve new ones.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value as Json;
use uie_runtime::ModelHandle;

use crate::error::ServeError;
use crate::http::{Connection, HttpError, Limits, Ready, Request};
use crate::kserve;

/// How long an idle worker or connection waits before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(250);

/// How long an idle keep-alive connection is watched while other connections wait for a worker.
const YIELD_AFTER: Duration = Duration::from_millis(5);

/// The most accepted connections waiting for a worker; more are closed at once.
const MAX_QUEUED: usize = 1024;

/// How a [`Server`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Address to bind, e.g. `127.0.0.1:8000` (port 0 picks a free port).
    pub addr: String,
    /// Worker threads running requests (at least 1).
    pub workers: usize,
    /// Largest batch (rows) one request may carry; more is a 413.
    pub max_batch: usize,
    /// Largest request body in bytes; more is a 413, answered before any of the body is read.
    pub max_body_bytes: usize,
    /// The model's name in URLs; `None` takes the model's `uie.model_name`, else `uie`.
    pub model_name: Option<String>,
    /// The HTTP layer's head size limit and timeouts.
    pub http: Limits,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: "127.0.0.1:8000".into(),
            workers: 4,
            max_batch: 256,
            max_body_bytes: 16 << 20,
            model_name: None,
            http: Limits::default(),
        }
    }
}

struct Shared {
    handle: ModelHandle,
    name: String,
    max_batch: usize,
    max_body_bytes: usize,
}

/// The connections waiting for a worker, and the stop flag.
struct Pool {
    queue: Mutex<VecDeque<Connection>>,
    ready: Condvar,
    stop: AtomicBool,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Connection>> {
        // A worker never panics while holding the lock; if one did, the queue is still sound.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn waiting(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Queues a connection for a worker (dropped at once, without lingering, when the queue is
    /// full or the server is stopping: the acceptor must not wait on a client).
    fn push(&self, conn: Connection) {
        let mut queue = self.lock();
        if self.stopped() || queue.len() >= MAX_QUEUED {
            drop(queue);
            drop(conn);
            return;
        }
        queue.push_back(conn);
        drop(queue);
        self.ready.notify_one();
    }

    /// The next queued connection, or `None` once the server is stopping.
    fn pop(&self) -> Option<Connection> {
        let mut queue = self.lock();
        loop {
            if self.stopped() {
                // Connections nobody started serving are dropped, not left open.
                queue.clear();
                return None;
            }
            if let Some(conn) = queue.pop_front() {
                return Some(conn);
            }
            queue = match self.ready.wait_timeout(queue, POLL) {
                Ok((q, _)) => q,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// Stops a running [`Server`] from anywhere (a signal handler, another thread). Cheap to clone.
#[derive(Clone)]
pub struct Stopper {
    pool: Arc<Pool>,
    /// Where to connect to wake the acceptor out of `accept`.
    wake: SocketAddr,
}

impl std::fmt::Debug for Stopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stopper")
            .field("stopped", &self.pool.stopped())
            .finish()
    }
}

impl Stopper {
    /// Stops accepting, asks every worker to stop once its current request is answered, and
    /// wakes idle ones.
    pub fn stop(&self) {
        self.pool.stop.store(true, Ordering::SeqCst);
        self.pool.ready.notify_all();
        // Wakes the acceptor, which sees the flag and drops the listener. If this fails the
        // acceptor is already gone (or the address is unreachable, and then so is the server).
        let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
    }

    /// Whether [`Stopper::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.pool.stopped()
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    name: String,
    stopper: Stopper,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds `config.addr` and starts an acceptor and `config.workers` threads serving `handle`.
    pub fn start(handle: ModelHandle, config: &ServeConfig) -> Result<Server, ServeError> {
        let bind_err = |message: String| ServeError::Bind {
            addr: config.addr.clone(),
            message,
        };
        let listener =
            TcpListener::bind(config.addr.as_str()).map_err(|e| bind_err(e.to_string()))?;
        let addr = listener.local_addr().map_err(|e| bind_err(e.to_string()))?;
        let name = config
            .model_name
            .clone()
            .unwrap_or_else(|| handle.current().name().to_string());
        let shared = Arc::new(Shared {
            handle,
            name: name.clone(),
            max_batch: config.max_batch,
            max_body_bytes: config.max_body_bytes,
        });
        let pool = Arc::new(Pool {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        // An unspecified bind address (0.0.0.0, ::) is reached through loopback.
        let mut wake = addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let stopper = Stopper {
            pool: Arc::clone(&pool),
            wake,
        };
        let n = config.workers.max(1);
        let mut threads = Vec::with_capacity(n + 1);
        let limits = config.http;
        {
            let pool = Arc::clone(&pool);
            let acceptor = std::thread::Builder::new()
                .name("uie-serve-accept".into())
                .spawn(move || accept_loop(&listener, &pool, limits))
                .map_err(ServeError::Io)?;
            threads.push(acceptor);
        }
        for i in 0..n {
            let shared = Arc::clone(&shared);
            let pool = Arc::clone(&pool);
            let worker = std::thread::Builder::new()
                .name(format!("uie-serve-{i}"))
                .spawn(move || worker_loop(&pool, &shared))
                .map_err(|e| {
                    stopper.stop();
                    ServeError::Io(e)
                })?;
            threads.push(worker);
        }
        Ok(Server {
            addr,
            name,
            stopper,
            threads,
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
        for t in self.threads {
            // A worker never panics (requests are answered from Results); nothing to report.
            let _ = t.join();
        }
    }

    /// Stops accepting, finishes in-flight requests, and returns when every worker is done.
    pub fn shutdown(self) {
        self.stopper.stop();
        self.wait();
    }
}

fn accept_loop(listener: &TcpListener, pool: &Pool, limits: Limits) {
    loop {
        let accepted = listener.accept();
        if pool.stopped() {
            // The listener drops here: new connections are refused from now on.
            return;
        }
        match accepted {
            Ok((stream, _)) => match Connection::new(stream, limits) {
                Ok(conn) => pool.push(conn),
                // The client is already gone.
                Err(_) => continue,
            },
            // Out of file descriptors and the like: back off a little instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn worker_loop(pool: &Pool, shared: &Shared) {
    while let Some(conn) = pool.pop() {
        if let Some(idle) = serve(conn, pool, shared) {
            pool.push(idle);
        }
    }
}

/// Serves requests on `conn` until it closes; returns it when it went idle while other
/// connections were waiting (to be queued again).
fn serve(mut conn: Connection, pool: &Pool, shared: &Shared) -> Option<Connection> {
    loop {
        loop {
            if pool.stopped() || conn.idle_expired() {
                conn.close();
                return None;
            }
            let others = pool.waiting();
            match conn.wait_request(if others { YIELD_AFTER } else { POLL }) {
                Ok(Ready::Request) => break,
                Ok(Ready::Idle) if others => return Some(conn),
                Ok(Ready::Idle) => continue,
                Ok(Ready::Closed) | Err(_) => return None,
            }
        }
        let request = match conn.read_head() {
            Ok(r) => r,
            Err(e) => {
                if let Some(status) = e.status() {
                    // The client may have gone away; the connection closes either way.
                    let _ = respond(
                        &mut conn,
                        status,
                        &kserve::error_body(&e.to_string()),
                        false,
                    );
                }
                conn.close();
                return None;
            }
        };
        let (status, body) = match route(&request, &mut conn, shared) {
            Ok(answer) => answer,
            Err(e) => (e.status(), kserve::error_body(&e.to_string())),
        };
        let keep = request.keep_alive && !pool.stopped() && conn.reusable(shared.max_body_bytes);
        if respond(&mut conn, status, &body, keep).is_err() || !keep {
            conn.close();
            return None;
        }
        if conn.discard_body().is_err() {
            conn.close();
            return None;
        }
    }
}

fn respond(conn: &mut Connection, status: u16, body: &Json, keep: bool) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    conn.respond(status, "application/json", &bytes, keep)
}

fn read_body(conn: &mut Connection, limit: usize) -> Result<Vec<u8>, ServeError> {
    conn.read_body(limit).map_err(|e| match e {
        HttpError::BodyTooLarge { .. } => ServeError::TooLarge(e.to_string()),
        other => ServeError::Http(other),
    })
}

fn header_length(request: &Request) -> Result<Option<usize>, ServeError> {
    request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(kserve::HEADER_LENGTH))
        .map(|(_, value)| kserve::parse_header_length(std::str::from_utf8(value).unwrap_or("")))
        .transpose()
}

fn route(
    request: &Request,
    conn: &mut Connection,
    shared: &Shared,
) -> Result<(u16, Json), ServeError> {
    let path = request.target.split('?').next().unwrap_or("");
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let method = request.method.as_str();
    let get = |what: &str| {
        if method == "GET" {
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
                    if method != "POST" {
                        return Err(ServeError::MethodNotAllowed(format!(
                            "{path} answers POST only"
                        )));
                    }
                    infer(request, conn, shared)
                }
                _ => Err(ServeError::NotFound(format!("no endpoint {path}"))),
            }
        }
        _ => Err(ServeError::NotFound(format!("no endpoint {path}"))),
    }
}

fn infer(
    request: &Request,
    conn: &mut Connection,
    shared: &Shared,
) -> Result<(u16, Json), ServeError> {
    let header_length = header_length(request)?;
    let body = read_body(conn, shared.max_body_bytes)?;
    // One model for the whole request, even if a reload lands meanwhile.
    let model = shared.handle.current();
    let (req, batch) = kserve::decode_request(&model, &body, header_length, shared.max_batch)?;
    let preds = model.predict(&batch)?;
    Ok((
        200,
        kserve::infer_response(&shared.name, req.id.as_deref(), &preds),
    ))
}

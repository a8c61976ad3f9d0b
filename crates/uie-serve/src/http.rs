//! uie-serve's HTTP/1.1 transport: one TCP connection at a time, request heads parsed by
//! `httparse`, bodies read in bounded chunks.
//!
//! What a client can and cannot make this layer do:
//! - a request head is read up to [`Limits::max_head_bytes`] (more is 431, then the connection
//!   closes), with at most [`MAX_HEADERS`] header fields (more is 431);
//! - a body is only ever sized by its `Content-Length` after that length was checked against the
//!   caller's limit ([`Connection::read_body`]); a body above the limit is refused before a byte of
//!   it is read, and the connection then closes, so a huge announced length never allocates;
//! - `Transfer-Encoding` bodies (chunked) are refused with 411 (send `Content-Length`);
//!   `Expect: 100-continue` is honoured (the `100 Continue` goes out only when the body is about
//!   to be read, so a refused body is never sent); any other expectation is 417;
//! - keep-alive is the HTTP/1.1 default (`Connection: close` ends it; HTTP/1.0 keeps the
//!   connection only with `Connection: keep-alive`), and pipelined requests are answered in order;
//! - a whole request (head and body) must arrive within [`Limits::read_timeout`] of its first
//!   byte (else 408 and close), an idle keep-alive connection is closed after
//!   [`Limits::idle_timeout`], and every write gives up after [`Limits::write_timeout`], so a slow
//!   or silent client cannot hold a worker for ever.
//!
//! The layer is synchronous and knows nothing of KServe: `server.rs` routes the requests.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// The most header fields one request head may carry (more is 431).
pub const MAX_HEADERS: usize = 64;

/// Bytes read from the socket at a time (heads and bodies are read in chunks of this size).
const CHUNK: usize = 8 << 10;

/// How long a closing connection keeps reading (and discarding) what the client still sends, so
/// that closing with unread bytes does not reset the connection before the client has read the
/// answer.
const LINGER: Duration = Duration::from_secs(1);

/// The most bytes a closing connection discards before it closes anyway.
const LINGER_BYTES: usize = 1 << 20;

/// The limits of the HTTP layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest request head (request line and header fields) in bytes; more is a 431.
    pub max_head_bytes: usize,
    /// How long a whole request (head and body) may take to arrive after its first byte; more is
    /// a 408 and the connection closes.
    pub read_timeout: Duration,
    /// How long a keep-alive connection may sit without a request before it is closed.
    pub idle_timeout: Duration,
    /// How long one write of a response may block before the connection is dropped.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 64 << 10,
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(15),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request head is longer than [`Limits::max_head_bytes`] (431).
    #[error("the request head is above the limit of {limit} bytes")]
    HeadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The head has more than [`MAX_HEADERS`] header fields (431).
    #[error("the request has more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    /// The head is not HTTP/1.x (400).
    #[error("malformed request head: {0}")]
    Malformed(String),
    /// The request is HTTP, but not version 1.0 or 1.1 (505).
    #[error("only HTTP/1.0 and HTTP/1.1 are served")]
    Version,
    /// `Content-Length` is not a number, or two of them disagree (400).
    #[error("bad Content-Length: {0}")]
    BadLength(String),
    /// The body is sent with a `Transfer-Encoding` (chunked), which is not served (411).
    #[error("Transfer-Encoding {0:?} is not supported: send the body with a Content-Length")]
    TransferEncoding(String),
    /// An `Expect` other than `100-continue` (417).
    #[error("Expect {0:?} is not supported (only 100-continue)")]
    Expectation(String),
    /// The announced body is above the caller's limit; none of it was read (413).
    #[error("the request body ({announced} bytes) is above the limit of {limit} bytes")]
    BodyTooLarge {
        /// The `Content-Length` the client announced.
        announced: u64,
        /// The limit.
        limit: usize,
    },
    /// The request did not arrive within [`Limits::read_timeout`] (408).
    #[error("the request did not arrive within {0:?}")]
    Timeout(Duration),
    /// The client closed the connection in the middle of a request (nobody to answer).
    #[error("the client closed the connection in the middle of a request")]
    Closed,
    /// A socket error (nobody to answer).
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

impl HttpError {
    /// The status to answer this error with, or `None` when nobody is left to answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders => Some(431),
            HttpError::Malformed(_) | HttpError::BadLength(_) => Some(400),
            HttpError::Version => Some(505),
            HttpError::TransferEncoding(_) => Some(411),
            HttpError::Expectation(_) => Some(417),
            HttpError::BodyTooLarge { .. } => Some(413),
            HttpError::Timeout(_) => Some(408),
            HttpError::Closed | HttpError::Io(_) => None,
        }
    }
}

/// The reason phrase of a status this server answers with.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A request head (the body stays on the [`Connection`] until [`Connection::read_body`]).
#[derive(Debug, Clone)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent, e.g. `/v2/models/m/infer?x=1`.
    pub target: String,
    /// The header fields in order (names as sent, values as bytes).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The announced body length (0 without `Content-Length`).
    pub content_length: u64,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
}

impl Request {
    /// The first value of header `name` (case-insensitive) as text, if present and UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Whether some value of header `name` lists `token` (comma-separated, case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// What waiting for the next request found.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready {
    /// Bytes of a request are there.
    Request,
    /// Nothing arrived within the wait.
    Idle,
    /// The client closed the connection (between requests: a normal end).
    Closed,
}

/// One client connection: the socket, the bytes read ahead of the current request, and the state
/// of the current request's body.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    limits: Limits,
    /// Bytes read from the socket and not consumed yet (the start of a head, or of the body, or a
    /// pipelined next request).
    buf: Vec<u8>,
    /// Body bytes of the current request still unread.
    body_left: u64,
    /// The client asked for `100 Continue` and it has not been sent.
    continue_pending: bool,
    /// When the current request must have arrived.
    deadline: Instant,
    /// When the last request was answered (or the connection opened).
    last_active: Instant,
}

impl Connection {
    /// Wraps an accepted socket; sets its write timeout.
    pub fn new(stream: TcpStream, limits: Limits) -> io::Result<Connection> {
        stream.set_write_timeout(Some(limits.write_timeout.max(Duration::from_millis(1))))?;
        // Answers are written whole; Nagle would only delay them.
        stream.set_nodelay(true)?;
        let now = Instant::now();
        Ok(Connection {
            stream,
            limits,
            buf: Vec::new(),
            body_left: 0,
            continue_pending: false,
            deadline: now,
            last_active: now,
        })
    }

    /// How long the connection has been without a request.
    pub fn idle_for(&self) -> Duration {
        self.last_active.elapsed()
    }

    /// Whether the connection has been idle longer than [`Limits::idle_timeout`].
    pub fn idle_expired(&self) -> bool {
        self.idle_for() >= self.limits.idle_timeout
    }

    /// Waits up to `wait` for the first bytes of the next request.
    pub fn wait_request(&mut self, wait: Duration) -> io::Result<Ready> {
        if !self.buf.is_empty() {
            return Ok(Ready::Request);
        }
        self.stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        let mut chunk = [0u8; CHUNK];
        match self.stream.read(&mut chunk) {
            Ok(0) => Ok(Ready::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(Ready::Request)
            }
            Err(e) if is_timeout(&e) => Ok(Ready::Idle),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Ready::Idle),
            Err(e) => Err(e),
        }
    }

    /// Reads more bytes into `buf` (at most `max`), before the request's deadline.
    fn fill(&mut self, max: usize) -> Result<(), HttpError> {
        let mut chunk = [0u8; CHUNK];
        let want = max.clamp(1, CHUNK);
        loop {
            let left = self
                .deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or(HttpError::Timeout(self.limits.read_timeout))?;
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut chunk[..want]) {
                Ok(0) => return Err(HttpError::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(HttpError::Io(e)),
            }
        }
    }

    /// Reads the next request head. Call after [`Connection::wait_request`] found a request.
    ///
    /// On an error the connection must be answered (if [`HttpError::status`] says so) and closed.
    pub fn read_head(&mut self) -> Result<Request, HttpError> {
        self.deadline = Instant::now() + self.limits.read_timeout;
        self.body_left = 0;
        self.continue_pending = false;
        let max = self.limits.max_head_bytes;
        loop {
            if let Some((request, len)) = self.parse_head()? {
                if len > max {
                    return Err(HttpError::HeadTooLarge { limit: max });
                }
                self.buf.drain(..len);
                return self.accept_head(request);
            }
            if self.buf.len() >= max {
                return Err(HttpError::HeadTooLarge { limit: max });
            }
            self.fill(max + 1 - self.buf.len())?;
        }
    }

    /// Parses `buf` as a request head: `None` when it is not complete yet.
    fn parse_head(&self) -> Result<Option<(Request, usize)>, HttpError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut fields);
        let len = match parsed.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
            Err(httparse::Error::Version) => {
                // "HTTP/2.0" is a version this server does not speak; anything else is garbage.
                let line = self.buf.split(|&b| b == b'\n').next().unwrap_or(&[]);
                return Err(if line.windows(6).any(|w| w == b" HTTP/") {
                    HttpError::Version
                } else {
                    HttpError::Malformed("no HTTP version in the request line".into())
                });
            }
            Err(e) => return Err(HttpError::Malformed(e.to_string())),
        };
        let (Some(method), Some(target), Some(version)) =
            (parsed.method, parsed.path, parsed.version)
        else {
            return Err(HttpError::Malformed("incomplete request line".into()));
        };
        let headers: Vec<(String, Vec<u8>)> = parsed
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect();
        let mut request = Request {
            method: method.to_string(),
            target: target.to_string(),
            headers,
            content_length: 0,
            keep_alive: version >= 1,
        };
        if request.has_token("Connection", "close") {
            request.keep_alive = false;
        } else if request.has_token("Connection", "keep-alive") {
            request.keep_alive = true;
        }
        Ok(Some((request, len)))
    }

    /// Checks the body framing of a parsed head and sets up its body.
    fn accept_head(&mut self, mut request: Request) -> Result<Request, HttpError> {
        if let Some((_, te)) = request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Transfer-Encoding"))
        {
            return Err(HttpError::TransferEncoding(
                String::from_utf8_lossy(te).into_owned(),
            ));
        }
        let mut length: Option<u64> = None;
        for (_, v) in request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        {
            let text = std::str::from_utf8(v).unwrap_or("").trim();
            let n = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                text.parse::<u64>().ok()
            } else {
                None
            }
            .ok_or_else(|| {
                HttpError::BadLength(format!("{:?} is not a number", String::from_utf8_lossy(v)))
            })?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::BadLength(
                    "two Content-Length headers disagree".into(),
                ));
            }
            length = Some(n);
        }
        request.content_length = length.unwrap_or(0);
        self.body_left = request.content_length;
        if let Some((_, expect)) = request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Expect"))
        {
            let expect = String::from_utf8_lossy(expect);
            if !expect.trim().eq_ignore_ascii_case("100-continue") {
                return Err(HttpError::Expectation(expect.into_owned()));
            }
            self.continue_pending = self.body_left > 0;
        }
        Ok(request)
    }

    /// Reads the current request's whole body if its announced length is at most `limit`.
    ///
    /// A body above `limit` is refused with [`HttpError::BodyTooLarge`] before any of it is read
    /// (the connection is then not reusable). The body is read in chunks of at most 8 KiB; its
    /// buffer is sized from the announced length only after that length passed the limit.
    pub fn read_body(&mut self, limit: usize) -> Result<Vec<u8>, HttpError> {
        let announced = self.body_left;
        if announced > limit as u64 {
            return Err(HttpError::BodyTooLarge { announced, limit });
        }
        let total =
            usize::try_from(announced).map_err(|_| HttpError::BodyTooLarge { announced, limit })?;
        if self.continue_pending {
            self.continue_pending = false;
            self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            self.stream.flush()?;
        }
        let mut body = Vec::with_capacity(total);
        let take = total.min(self.buf.len());
        body.extend(self.buf.drain(..take));
        self.body_left -= take as u64;
        while self.body_left > 0 {
            let want = usize::try_from(self.body_left).unwrap_or(CHUNK).min(CHUNK);
            self.fill(want)?;
            let take = self.buf.len().min(want);
            body.extend(self.buf.drain(..take));
            self.body_left -= take as u64;
        }
        Ok(body)
    }

    /// Whether the connection can serve another request after the current one: its body was
    /// read, or what is left of it may be read and discarded (it was sent without waiting for a
    /// `100 Continue` and is at most `limit` bytes).
    pub fn reusable(&self, limit: usize) -> bool {
        self.body_left == 0 || (!self.continue_pending && self.body_left <= limit as u64)
    }

    /// Reads and discards what is left of the current request's body, in bounded chunks, before
    /// the request's deadline. Only call when [`Connection::reusable`] said so.
    pub fn discard_body(&mut self) -> Result<(), HttpError> {
        while self.body_left > 0 {
            if self.buf.is_empty() {
                let want = usize::try_from(self.body_left).unwrap_or(CHUNK).min(CHUNK);
                self.fill(want)?;
            }
            let take = usize::try_from(self.body_left)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            self.buf.drain(..take);
            self.body_left -= take as u64;
        }
        self.last_active = Instant::now();
        Ok(())
    }

    /// Writes a whole response with `Content-Type`, `Content-Length` and, when `keep_alive` is
    /// false, `Connection: close`.
    pub fn respond(
        &mut self,
        status: u16,
        content_type: &str,
        body: &[u8],
        keep_alive: bool,
    ) -> io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            reason(status),
            body.len()
        )
        .into_bytes();
        if !keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        self.stream.write_all(&out)?;
        self.stream.flush()?;
        self.last_active = Instant::now();
        Ok(())
    }

    /// Closes the connection: ends the sending side, then reads and discards what the client still
    /// sends (at most 1 MiB, at most 1 s) so the answer is not lost to a reset, then drops it.
    pub fn close(self) {
        let mut stream = self.stream;
        // Errors here only mean the client is already gone.
        let _ = stream.shutdown(Shutdown::Write);
        let end = Instant::now() + LINGER;
        let mut chunk = [0u8; CHUNK];
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            let Some(left) = end
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                break;
            };
            if stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => discarded += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }
}

/// Whether a read error is a read timeout (`WouldBlock` on Unix, `TimedOut` on Windows).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A connected pair: (the server side as a [`Connection`], the client socket).
    fn pair(limits: Limits) -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        (Connection::new(server, limits).expect("conn"), client)
    }

    fn limits() -> Limits {
        Limits {
            max_head_bytes: 1024,
            read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
        }
    }

    fn next(conn: &mut Connection) -> Result<Request, HttpError> {
        assert_eq!(
            conn.wait_request(Duration::from_secs(5)).expect("wait"),
            Ready::Request
        );
        conn.read_head()
    }

    #[test]
    fn a_head_and_body_sent_in_pieces_are_put_together() {
        let (mut conn, mut client) = pair(limits());
        let writer = std::thread::spawn(move || {
            for piece in [
                &b"POST /v2/models/m/in"[..],
                b"fer?x=1 HTTP/1.1\r\nHost: a\r\nContent-Le",
                b"ngth: 11\r\n",
                b"\r\nhello",
                b" world",
            ] {
                client.write_all(piece).expect("write");
                std::thread::sleep(Duration::from_millis(30));
            }
            client
        });
        let req = next(&mut conn).expect("head");
        assert_eq!(req.method, "POST");
        assert_eq!(req.target, "/v2/models/m/infer?x=1");
        assert_eq!(req.header("host"), Some("a"));
        assert_eq!(req.content_length, 11);
        assert!(req.keep_alive);
        assert_eq!(conn.read_body(100).expect("body"), b"hello world");
        let _client = writer.join().expect("writer");
    }

    #[test]
    fn pipelined_requests_on_one_connection_are_answered_in_order() {
        let (mut conn, mut client) = pair(limits());
        client
            .write_all(
                b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
                  GET /b HTTP/1.1\r\n\r\n\
                  POST /c HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nxy",
            )
            .expect("write");
        let a = next(&mut conn).expect("a");
        assert_eq!((a.target.as_str(), a.content_length), ("/a", 3));
        assert_eq!(conn.read_body(10).expect("body"), b"abc");
        conn.respond(200, "text/plain", b"1", true)
            .expect("respond");
        let b = next(&mut conn).expect("b");
        assert_eq!((b.method.as_str(), b.target.as_str()), ("GET", "/b"));
        // A body nobody read is discarded, and the next request still parses.
        conn.respond(200, "text/plain", b"2", true)
            .expect("respond");
        let c = next(&mut conn).expect("c");
        assert_eq!(c.target, "/c");
        assert!(!c.keep_alive);
        assert!(conn.reusable(10));
        conn.discard_body().expect("discard");
        conn.respond(404, "text/plain", b"3", false)
            .expect("respond");
        conn.close();
        let mut out = String::new();
        client.read_to_string(&mut out).expect("read");
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\n1\
             HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\n2\
             HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\
             Connection: close\r\n\r\n3"
        );
    }

    #[test]
    fn an_oversized_head_is_refused() {
        let (mut conn, mut client) = pair(limits());
        let long = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(2000));
        client.write_all(long.as_bytes()).expect("write");
        let err = next(&mut conn).expect_err("too large");
        assert!(
            matches!(err, HttpError::HeadTooLarge { limit: 1024 }),
            "{err}"
        );
        assert_eq!(err.status(), Some(431));
        // A head that never ends is refused at the limit too, not read for ever.
        let (mut conn, mut client) = pair(limits());
        client.write_all(b"GET / HTTP/1.1\r\n").expect("write");
        let filler = std::thread::spawn(move || {
            let line = format!("X-A: {}\r\n", "b".repeat(93));
            for _ in 0..30 {
                if client.write_all(line.as_bytes()).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let err = next(&mut conn).expect_err("too large");
        assert!(
            matches!(err, HttpError::HeadTooLarge { limit: 1024 }),
            "{err}"
        );
        drop(conn);
        filler.join().expect("filler");
        // Too many header fields.
        let (mut conn, mut client) = pair(Limits {
            max_head_bytes: 1 << 16,
            ..limits()
        });
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        client
            .write_all(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes())
            .expect("write");
        let err = next(&mut conn).expect_err("too many");
        assert!(matches!(err, HttpError::TooManyHeaders), "{err}");
        assert_eq!(err.status(), Some(431));
    }

    #[test]
    fn a_huge_or_lying_content_length_is_never_allocated_or_waited_for() {
        let (mut conn, mut client) = pair(limits());
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\nabc")
            .expect("write");
        let req = next(&mut conn).expect("head");
        assert_eq!(req.content_length, 1_000_000_000_000);
        let err = conn.read_body(4096).expect_err("too large");
        assert!(
            matches!(
                err,
                HttpError::BodyTooLarge {
                    announced: 1_000_000_000_000,
                    limit: 4096
                }
            ),
            "{err}"
        );
        assert_eq!(err.status(), Some(413));
        assert!(!conn.reusable(4096));
        // u64::MAX and past it.
        for bad in [
            "18446744073709551615",
            "18446744073709551616",
            "-1",
            "+5",
            "1 2",
            "",
        ] {
            let (mut conn, mut client) = pair(limits());
            client
                .write_all(format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n").as_bytes())
                .expect("write");
            match next(&mut conn) {
                Ok(req) => {
                    assert_eq!(bad, "18446744073709551615");
                    assert!(matches!(
                        conn.read_body(1 << 20),
                        Err(HttpError::BodyTooLarge { .. })
                    ));
                    assert_eq!(req.content_length, u64::MAX);
                }
                Err(e) => assert_eq!(e.status(), Some(400), "{bad:?}: {e}"),
            }
        }
        // Two lengths that disagree.
        let (mut conn, mut client) = pair(limits());
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n")
            .expect("write");
        let err = next(&mut conn).expect_err("disagree");
        assert!(matches!(err, HttpError::BadLength(_)), "{err}");
        // A length above what is sent: the read times out at the request deadline.
        let (mut conn, mut client) = pair(Limits {
            read_timeout: Duration::from_millis(300),
            ..limits()
        });
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly this")
            .expect("write");
        next(&mut conn).expect("head");
        let started = Instant::now();
        let err = conn.read_body(4096).expect_err("timeout");
        assert!(matches!(err, HttpError::Timeout(_)), "{err}");
        assert_eq!(err.status(), Some(408));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_client_closing_mid_body_or_mid_head_is_an_error_not_a_hang() {
        let (mut conn, mut client) = pair(limits());
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\npart")
            .expect("write");
        client.shutdown(Shutdown::Write).expect("shutdown");
        next(&mut conn).expect("head");
        let err = conn.read_body(4096).expect_err("closed");
        assert!(matches!(err, HttpError::Closed), "{err}");
        assert_eq!(err.status(), None);
        let (mut conn, mut client) = pair(limits());
        client.write_all(b"GET / HTTP/1.1\r\nHo").expect("write");
        client.shutdown(Shutdown::Write).expect("shutdown");
        let err = next(&mut conn).expect_err("closed");
        assert!(matches!(err, HttpError::Closed), "{err}");
        // Closing between requests is a normal end.
        let (mut conn, client) = pair(limits());
        drop(client);
        assert_eq!(
            conn.wait_request(Duration::from_secs(5)).expect("wait"),
            Ready::Closed
        );
    }

    #[test]
    fn a_slow_or_silent_client_times_out() {
        // Silent: waiting for a request reports idle after the wait.
        let (mut conn, _client) = pair(Limits {
            idle_timeout: Duration::from_millis(100),
            ..limits()
        });
        let started = Instant::now();
        assert_eq!(
            conn.wait_request(Duration::from_millis(100)).expect("wait"),
            Ready::Idle
        );
        assert!(started.elapsed() >= Duration::from_millis(90));
        assert!(conn.idle_expired());
        // Slow: a head trickling in one byte at a time past the read timeout.
        let (mut conn, mut client) = pair(Limits {
            read_timeout: Duration::from_millis(300),
            ..limits()
        });
        let trickle = std::thread::spawn(move || {
            for b in b"GET / HTTP/1.1\r\nHost: slow\r\n\r\n" {
                if client.write_all(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = Instant::now();
        let err = next(&mut conn).expect_err("timeout");
        assert!(matches!(err, HttpError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(conn);
        trickle.join().expect("trickle");
    }

    #[test]
    fn expect_continue_is_sent_only_when_the_body_is_read() {
        let (mut conn, mut client) = pair(limits());
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
            .expect("write");
        let _ = next(&mut conn).expect("head");
        assert!(!conn.reusable(10), "an unsent body cannot be discarded");
        let reader = std::thread::spawn(move || {
            let mut line = [0u8; 25];
            client.read_exact(&mut line).expect("100");
            assert_eq!(&line, b"HTTP/1.1 100 Continue\r\n\r\n");
            client.write_all(b"ok").expect("body");
            client
        });
        assert_eq!(conn.read_body(10).expect("body"), b"ok");
        let _client = reader.join().expect("reader");
        // Refused before the 100: nothing but the final answer goes out.
        let (mut conn, mut client) = pair(limits());
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 99\r\nExpect: 100-continue\r\n\r\n")
            .expect("write");
        let _ = next(&mut conn).expect("head");
        assert!(conn.read_body(10).is_err());
        conn.respond(413, "text/plain", b"no", false)
            .expect("respond");
        conn.close();
        let mut out = String::new();
        client.read_to_string(&mut out).expect("read");
        assert!(
            out.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
            "{out}"
        );
        // Other expectations are refused.
        let (mut conn, mut client) = pair(limits());
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: teapot\r\n\r\nok")
            .expect("write");
        assert_eq!(next(&mut conn).expect_err("417").status(), Some(417));
    }

    #[test]
    fn chunked_bodies_bad_heads_and_versions_are_refused() {
        let cases: [(&[u8], u16); 4] = [
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                411,
            ),
            (b"NOT A REQUEST\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        ];
        for (raw, status) in cases {
            let (mut conn, mut client) = pair(limits());
            client.write_all(raw).expect("write");
            let err = next(&mut conn).expect_err("refused");
            assert_eq!(err.status(), Some(status), "{err}");
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        for (raw, keep) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (
                b"GET / HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        ] {
            let (mut conn, mut client) = pair(limits());
            client.write_all(raw).expect("write");
            assert_eq!(next(&mut conn).expect("head").keep_alive, keep);
        }
    }
}

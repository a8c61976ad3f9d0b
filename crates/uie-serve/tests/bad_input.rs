//! Bad input to `uie-serve`: the real binary with missing, empty, truncated and wrong-format
//! model files and bad flags (exit code 1 or clap's 2, one `error: ` line, never a panic), and
//! bad HTTP requests to a running server (raw sockets: the status and the JSON `error` message a
//! client sees): empty batches, int64 extremes, values that are not INT64, NaN in binary data,
//! shapes that disagree with the data, oversized batches, bodies and shapes. The rows of
//! `docs/bad-input.md` (uie-serve) point here.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::model_file;
use serde_json::{json, Value as Json};
use uie_serve::{ModelHandle, ServeConfig, Server};

/// Runs `uie-serve` with `args`; expects it to exit with `code` and an `error: ` first line
/// holding every fragment (one line in all for code 1).
fn serve_err(args: &[&str], model: Option<&Path>, code: i32, fragments: &[&str]) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uie-serve"));
    if let Some(m) = model {
        cmd.arg("--model").arg(m);
    }
    let out = cmd.args(args).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("{}", err.lines().next().unwrap_or(""));
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(!err.contains("panicked"), "a panic: {err}");
    assert!(err.starts_with("error: "), "{err:?}");
    if code == 1 {
        assert!(!err.trim_end().contains('\n'), "not one line: {err:?}");
    }
    // One line for our errors; clap's usage errors name the flag in their first lines.
    let shown = if code == 1 {
        err.trim_end()
    } else {
        err.split("\n\n").next().unwrap_or("")
    };
    for f in fragments {
        assert!(shown.contains(f), "{f:?} missing from {shown:?}");
    }
}

#[test]
fn the_binary_refuses_bad_model_files_and_flags() {
    let tmp = tempfile::tempdir().expect("tmp");
    let good = model_file(tmp.path());
    let bytes = std::fs::read(&good).expect("model");
    let free = ["--addr", "127.0.0.1:0"];
    serve_err(
        &free,
        Some(&tmp.path().join("missing.onnx")),
        1,
        &["loading", "missing.onnx", "No such file"],
    );
    for (name, content, what) in [
        ("empty.onnx", Vec::new(), "the file is empty, not a model"),
        (
            "truncated.onnx",
            bytes[..bytes.len() / 2].to_vec(),
            "failed to decode Protobuf message",
        ),
        (
            "garbage.onnx",
            b"\xff\xfenot a model".to_vec(),
            "failed to decode Protobuf message",
        ),
    ] {
        let path = tmp.path().join(name);
        std::fs::write(&path, content).expect("write");
        serve_err(&free, Some(&path), 1, &["loading", name, what]);
    }
    serve_err(
        &free,
        Some(tmp.path()),
        1,
        &["a directory, not a model file"],
    );
    serve_err(
        &["--addr", "not-an-address"],
        Some(&good),
        1,
        &["binding not-an-address: invalid socket address"],
    );
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    serve_err(
        &["--addr", &addr],
        Some(&good),
        1,
        &[&format!("binding {addr}: Address already in use")],
    );
    for flag in [
        "--workers",
        "--max-batch",
        "--max-body-bytes",
        "--max-head-bytes",
        "--read-timeout",
        "--idle-timeout",
        "--write-timeout",
    ] {
        serve_err(&[flag, "0"], Some(&good), 2, &["invalid value '0'", flag]);
    }
    serve_err(&free, None, 2, &["--model"]);
}

/// A raw HTTP request; returns the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n");
    s.write_all(head.as_bytes()).expect("head");
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A raw POST to the test model's infer endpoint; returns the status and the body.
fn post_infer(addr: SocketAddr, headers: &str, body: &[u8]) -> (u16, String) {
    http(addr, "POST", "/v2/models/signal_test/infer", headers, body)
}

fn infer(addr: SocketAddr, body: &Json) -> (u16, Json) {
    let bytes = serde_json::to_vec(body).expect("json");
    let (status, text) = post_infer(
        addr,
        &format!("Content-Length: {}\r\n", bytes.len()),
        &bytes,
    );
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    println!("{status} {json}");
    (status, json)
}

fn request(ids: Json, ids_shape: Json, dense: Json, dense_shape: Json) -> Json {
    json!({"inputs": [
        {"name": "user_id", "datatype": "INT64", "shape": ids_shape, "data": ids},
        {"name": "dense", "datatype": "FP32", "shape": dense_shape, "data": dense},
    ]})
}

fn error_of(r: &(u16, Json), status: u16, fragments: &[&str]) {
    assert_eq!(r.0, status, "{}", r.1);
    let msg = r.1["error"].as_str().expect("an error message");
    for f in fragments {
        assert!(msg.contains(f), "{f:?} missing from {msg:?}");
    }
}

/// The test server's settings: any free port, 2 workers, batches up to 8, bodies up to 4096 bytes.
fn config() -> ServeConfig {
    ServeConfig {
        addr: "127.0.0.1:0".into(),
        workers: 2,
        max_batch: 8,
        max_body_bytes: 4096,
        model_name: None,
        ..ServeConfig::default()
    }
}

fn start_with(dir: &Path, config: &ServeConfig) -> Server {
    Server::start(ModelHandle::load(&model_file(dir)).expect("load"), config).expect("start")
}

fn start(dir: &Path) -> Server {
    start_with(dir, &config())
}

#[test]
fn empty_batches_and_int64_extremes_are_answered() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = start(tmp.path());
    let addr = server.addr();
    // N = 0: an empty answer of the right shape.
    let r = infer(
        addr,
        &request(json!([]), json!([0]), json!([]), json!([0, 1])),
    );
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["outputs"][0]["shape"], json!([0, 1]));
    assert_eq!(r.1["outputs"][0]["data"], json!([]));
    // Ids at the int64 extremes hash to rows like any other id.
    let ids = json!([i64::MAX, i64::MIN, i64::MIN + 1, -1, 0]);
    let r = infer(
        addr,
        &request(
            ids,
            json!([5]),
            json!([1.0, 2.0, 3.0, 4.0, 5.0]),
            json!([5, 1]),
        ),
    );
    assert_eq!(r.0, 200, "{}", r.1);
    let probs: Vec<f64> = r.1["outputs"][0]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    assert_eq!(probs.len(), 5);
    assert!(probs
        .iter()
        .all(|p| p.is_finite() && (0.0..=1.0).contains(p)));
    server.shutdown();
}

#[test]
fn bad_requests_get_a_4xx_naming_the_problem() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = start(tmp.path());
    let addr = server.addr();
    let one = |ids: Json, dense: Json| request(ids, json!([1]), dense, json!([1, 1]));
    // An id past int64, a fraction, a string: not INT64.
    for bad in [json!(9223372036854775808u64), json!(1.5), json!("7")] {
        let r = infer(addr, &one(json!([bad]), json!([1.0])));
        error_of(&r, 400, &["input user_id", "is not an INT64"]);
    }
    // A dense value that is not a number.
    let r = infer(addr, &one(json!([1]), json!(["x"])));
    error_of(&r, 400, &["input dense", "is not a number"]);
    // Shape and data disagree; a negative dim; a shape far past the data.
    let r = infer(
        addr,
        &request(json!([1, 2]), json!([3]), json!([1.0]), json!([1, 1])),
    );
    error_of(&r, 400, &["input user_id"]);
    let r = infer(
        addr,
        &request(json!([1]), json!([-1]), json!([1.0]), json!([1, 1])),
    );
    error_of(&r, 400, &["input user_id"]);
    let r = infer(
        addr,
        &request(json!([1]), json!([u64::MAX]), json!([1.0]), json!([1, 1])),
    );
    assert!((400..500).contains(&r.0), "{}", r.1);
    assert!(r.1["error"].as_str().expect("error").contains("user_id"));
    // Wrong datatype, wrong rank, missing and extra inputs.
    let mut r = one(json!([1]), json!([1.0]));
    r["inputs"][0]["datatype"] = json!("FP64");
    error_of(&infer(addr, &r), 400, &["user_id"]);
    let r = infer(
        addr,
        &request(json!([1]), json!([1, 1]), json!([1.0]), json!([1, 1])),
    );
    error_of(&r, 400, &["user_id"]);
    let mut r = one(json!([1]), json!([1.0]));
    r["inputs"].as_array_mut().expect("inputs").remove(1);
    error_of(
        &infer(addr, &r),
        400,
        &["feature dense: missing from the request"],
    );
    // More rows than --max-batch: 413.
    let r = infer(
        addr,
        &request(
            json!(vec![1; 9]),
            json!([9]),
            json!(vec![1.0; 9]),
            json!([9, 1]),
        ),
    );
    error_of(
        &r,
        413,
        &["the batch has 9 rows, above the maximum batch of 8"],
    );
    // Not JSON, no inputs.
    let (s, body) = post_infer(addr, "Content-Length: 9\r\n", b"{not json");
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("not valid JSON"), "{body}");
    error_of(&infer(addr, &json!({})), 400, &["no `inputs` list"]);
    // A body above --max-body-bytes: 413 before it is read.
    let (s, body) = post_infer(addr, "Content-Length: 5000\r\n", &[b' '; 5000]);
    assert_eq!(s, 413, "{body}");
    assert!(
        body.contains("the request body (5000 bytes) is above the limit of 4096 bytes"),
        "{body}"
    );
    // The server still answers.
    let r = infer(addr, &one(json!([3]), json!([1.0])));
    assert_eq!(r.0, 200, "{}", r.1);
    // Binary tensor data: a size that disagrees with the shape, and NaN.
    let header = json!({"inputs": [
        {"name": "user_id", "datatype": "INT64", "shape": [1],
         "parameters": {"binary_data_size": 8}},
        {"name": "dense", "datatype": "FP32", "shape": [1, 1],
         "parameters": {"binary_data_size": 4}},
    ]});
    let binary = |ids: &[u8], dense: &[u8], size: usize| {
        let mut h = header.clone();
        h["inputs"][1]["parameters"]["binary_data_size"] = json!(size);
        let head = serde_json::to_vec(&h).expect("json");
        let mut body = head.clone();
        body.extend_from_slice(ids);
        body.extend_from_slice(dense);
        let (s, text) = post_infer(
            addr,
            &format!(
                "Content-Length: {}\r\nInference-Header-Content-Length: {}\r\n",
                body.len(),
                head.len()
            ),
            &body,
        );
        println!("{s} {text}");
        (s, text)
    };
    let (s, text) = binary(&7i64.to_le_bytes(), &1.0f32.to_le_bytes(), 4);
    assert_eq!(s, 200, "{text}");
    let (s, text) = binary(&7i64.to_le_bytes(), &[0u8; 8], 8);
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("dense"), "{text}");
    let (s, text) = binary(&7i64.to_le_bytes(), &f32::NAN.to_le_bytes(), 4);
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("not a finite number"), "{text}");
    server.shutdown();
}

/// A request announcing a body larger than the machine's memory is answered 413 without reading or
/// allocating any of it, and the server keeps serving. (tiny_http 0.12, the HTTP layer before
/// `uie_serve::http`, drained such a body into `vec![0; remaining]` and aborted the process.)
#[test]
fn a_huge_announced_body_is_refused_and_the_server_survives() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = start(tmp.path());
    let addr = server.addr();
    let (s, body) = post_infer(addr, "Content-Length: 1000000000000\r\n", b"");
    assert_eq!(s, 413, "{body}");
    std::thread::sleep(Duration::from_millis(500));
    let r = infer(
        addr,
        &request(json!([1]), json!([1]), json!([1.0]), json!([1, 1])),
    );
    assert_eq!(r.0, 200, "{}", r.1);
    server.shutdown();
}

/// Reads one response from a keep-alive connection: status, head and body (by Content-Length).
fn read_response(r: &mut BufReader<TcpStream>) -> (u16, String, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).expect("head line") > 0, "closed");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    let mut body = vec![0; length];
    r.read_exact(&mut body).expect("body");
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

fn keep_alive(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let r = BufReader::new(s.try_clone().expect("clone"));
    (s, r)
}

/// The HTTP layer through the real server: pipelined keep-alive requests are answered in order,
/// idle keep-alive connections beyond the worker count do not starve new clients, a refused body
/// (404 before it is read) leaves the connection usable, `Expect: 100-continue` works, and an
/// oversized head, a chunked body and a lying `Content-Length` get a JSON error naming it.
#[test]
fn keep_alive_pipelining_and_http_limits_through_the_server() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Idle connections are kept far longer than a client waits (20 s): a worker that sat on an
    // idle connection instead of yielding it would fail the test, not slow it down.
    let config = ServeConfig {
        http: uie_serve::http::Limits {
            idle_timeout: Duration::from_secs(120),
            ..Default::default()
        },
        ..config()
    };
    let server = start_with(tmp.path(), &config);
    let addr = server.addr();
    let body = serde_json::to_vec(&request(
        json!([1]),
        json!([1]),
        json!([1.0]),
        json!([1, 1]),
    ))
    .expect("json");
    let infer_req = |extra: &str| {
        let mut r = format!(
            "POST /v2/models/signal_test/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{extra}\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    };
    // Three requests in one write on one connection, and a 404 whose body is never read.
    let (mut s, mut r) = keep_alive(addr);
    let mut all = infer_req("");
    all.extend_from_slice(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n");
    all.extend_from_slice(b"POST /v2/models/nope/infer HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    all.extend_from_slice(&infer_req(""));
    s.write_all(&all).expect("write");
    let first = read_response(&mut r);
    assert_eq!(first.0, 200, "{first:?}");
    assert!(
        first.1.contains("Content-Type: application/json"),
        "{first:?}"
    );
    assert!(first.2.contains("\"probs\""), "{first:?}");
    assert_eq!(read_response(&mut r).0, 200);
    let missing = read_response(&mut r);
    assert_eq!(missing.0, 404, "{missing:?}");
    assert!(missing.2.contains("unknown model nope"), "{missing:?}");
    let again = read_response(&mut r);
    assert_eq!((again.0, &again.2), (200, &first.2));
    // Idle keep-alive connections, more than the two workers: a new client is still answered.
    let idle: Vec<_> = (0..3)
        .map(|_| {
            let (mut s, mut r) = keep_alive(addr);
            s.write_all(b"GET /v2/health/live HTTP/1.1\r\n\r\n")
                .expect("write");
            assert_eq!(read_response(&mut r).0, 200);
            (s, r)
        })
        .collect();
    let (mut s2, mut r2) = keep_alive(addr);
    s2.write_all(&infer_req("Expect: 100-continue\r\n"))
        .expect("write");
    let cont = read_response_or_continue(&mut r2);
    assert_eq!(cont.0, 200, "{cont:?}");
    // The idle connections still work afterwards.
    for (mut s, mut r) in idle {
        s.write_all(b"GET /v2/health/ready HTTP/1.1\r\nConnection: close\r\n\r\n")
            .expect("write");
        let (status, head, _) = read_response(&mut r);
        assert_eq!(status, 200);
        assert!(head.contains("Connection: close"), "{head}");
    }
    // An oversized head, a chunked body, a lying length: a JSON error naming the problem.
    let big = format!("X-Big: {}\r\n", "a".repeat(100 << 10));
    let (status, text) = http(addr, "GET", "/v2", &big, b"");
    assert_eq!(status, 431, "{text}");
    assert!(
        text.contains("the request head is above the limit of 65536 bytes"),
        "{text}"
    );
    let (status, text) = post_infer(
        addr,
        "Transfer-Encoding: chunked\r\n",
        b"3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(status, 411, "{text}");
    assert!(
        text.contains("Transfer-Encoding \\\"chunked\\\" is not supported"),
        "{text}"
    );
    let (status, text) = post_infer(addr, "Content-Length: 12abc\r\n", b"");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("bad Content-Length"), "{text}");
    server.shutdown();
}

/// Reads a response, skipping a `100 Continue` first.
fn read_response_or_continue(r: &mut BufReader<TcpStream>) -> (u16, String, String) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    if line.starts_with("HTTP/1.1 100 ") {
        let mut blank = String::new();
        r.read_line(&mut blank).expect("blank");
        assert_eq!(blank, "\r\n");
        return read_response(r);
    }
    panic!("no 100 Continue: {line:?}");
}

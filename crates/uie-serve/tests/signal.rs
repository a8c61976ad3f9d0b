//! The real `uie-serve` binary stops gracefully on SIGTERM and on SIGINT: it serves a compiled
//! model on a loopback port, answers readiness, and after the signal exits with success, saying
//! it stopped. (The HTTP protocol itself is tested in the e2e package with `tritonclient`.)

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::model_file;

/// Starts the server on an ephemeral port; returns the child and its address.
fn start(model: &std::path::Path) -> (Child, String, BufReader<std::process::ChildStderr>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uie-serve"))
        .args(["--model"])
        .arg(model)
        .args(["--addr", "127.0.0.1:0", "--workers", "2"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start uie-serve");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("banner");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (child, addr, stderr)
}

fn ready(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET /v2/health/ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("response");
    response
}

fn stops_on(signal: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = model_file(dir.path());
    let (mut child, addr, mut stderr) = start(&model);
    assert!(ready(&addr).starts_with("HTTP/1.1 200"), "server not ready");
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("uie-serve did not stop within 20 s of SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("stderr");
    assert!(
        exit.success(),
        "exit {exit:?} after SIG{signal}; stderr: {rest}"
    );
    assert!(rest.contains("stopped"), "no graceful stop message: {rest}");
    assert!(TcpStream::connect(&addr).is_err() || ready(&addr).is_empty());
}

#[test]
fn stops_gracefully_on_sigterm() {
    stops_on("TERM");
}

#[test]
fn stops_gracefully_on_sigint() {
    stops_on("INT");
}

//! `uie-serve` driven by Triton's own Python client (`tritonclient.http`): server and model
//! readiness, model metadata (names, datatypes, shapes with -1), infer with binary and JSON
//! tensors giving the same probabilities as `Model::predict` (§7 rule), malformed requests
//! (missing input, wrong datatype, wrong shape, NaN in dense, `hist_len` above L, an extra input,
//! an unknown model) answered with a 4xx and a message naming the feature, and the server still
//! serving after them. Also, over a raw socket: 404 for unknown paths, 405, 413 above the maximum
//! batch and the body limit, and a graceful shutdown.

mod serve_model;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value as Json};
use serve_model::{compiled, tensors, L};
use uie_model::parity::compare;
use uie_runtime::{Model, ModelHandle, RawBatch, Tensor, TensorData};
use uie_serve::{ServeConfig, Server};

const ROWS: usize = 12;

fn request_json(inputs: &[(String, Tensor)]) -> Json {
    let mut map = serde_json::Map::new();
    for (name, v) in inputs {
        let shape = &v.shape;
        let t = match &v.data {
            TensorData::I64(data) => json!({"dtype": "int64", "shape": shape, "data": data}),
            TensorData::F32(data) => {
                json!({"dtype": "float32", "shape": shape, "data": data})
            }
        };
        map.insert(name.clone(), t);
    }
    json!({"inputs": map, "hist_len_max": L, "categorical": "user_id"})
}

fn flat(v: &Json) -> Vec<f32> {
    v.as_array()
        .expect("rows")
        .iter()
        .flat_map(|r| r.as_array().expect("row").iter())
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// One HTTP/1.1 request over a fresh connection; returns (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    // The server may answer (413) before reading a large body: a failed write is fine then.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Whether anything still answers HTTP at `addr`: a refused or reset connection, or one closed
/// without a status line, is "no" (after a shutdown the listener may close between the connect
/// and the request).
fn answers(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let head = format!("GET /v2/health/live HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(head.as_bytes()).is_err() {
        return false;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out.starts_with(b"HTTP/1.1 ")
}

#[test]
fn tritonclient_gets_the_library_probabilities_and_clean_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = compiled(tmp.path(), 5, "model.onnx");
    let model = Model::load(&path).expect("load");
    let inputs = tensors(ROWS, 9);
    let want = model
        .predict(&RawBatch::from_tensors(model.schema(), inputs.clone()).expect("batch"))
        .expect("library predict");

    let config = ServeConfig {
        addr: "127.0.0.1:0".into(),
        workers: 3,
        max_batch: 64,
        max_body_bytes: 1 << 20,
        model_name: None,
        ..ServeConfig::default()
    };
    let server = Server::start(ModelHandle::new(model.clone()), &config).expect("start");
    let addr = server.addr();
    let name = server.model_name().to_string();
    assert_eq!(name, "tiny_uie");

    let req_path = tmp.path().join("request.json");
    let out_path = tmp.path().join("out.json");
    std::fs::write(
        &req_path,
        serde_json::to_vec(&request_json(&inputs)).expect("json"),
    )
    .expect("write");
    let status = Command::new(uie_e2e::python().expect("python"))
        .arg(uie_e2e::repo_root().join("tests/python/triton_client_check.py"))
        .arg(addr.to_string())
        .arg(&name)
        .arg(&req_path)
        .arg(&out_path)
        .status()
        .expect("python starts");
    assert!(status.success(), "triton_client_check.py failed ({status})");
    let out: Json = serde_json::from_slice(&std::fs::read(&out_path).expect("out")).expect("json");

    assert_eq!(out["live"], true);
    assert_eq!(out["ready"], true);
    assert_eq!(out["model_ready"], true);
    assert_eq!(out["model_ready_unknown"], false);
    let meta = &out["metadata"];
    println!("metadata: {meta}");
    assert_eq!(meta["name"], name.as_str());
    let inputs_meta = meta["inputs"].as_array().expect("inputs");
    let names: Vec<&str> = inputs_meta
        .iter()
        .map(|i| i["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "user_id",
            "movie_id",
            "genre",
            "dense",
            "hist_items",
            "hist_len"
        ]
        .iter()
        .copied()
        .filter(|n| names.contains(n))
        .collect::<Vec<_>>()
    );
    assert_eq!(names.len(), 6);
    for i in inputs_meta {
        let (dt, shape) = match i["name"].as_str().expect("name") {
            "dense" => ("FP32", json!([-1, 1])),
            "hist_items" => ("INT64", json!([-1, -1])),
            _ => ("INT64", json!([-1])),
        };
        assert_eq!(i["datatype"], dt, "{i}");
        assert_eq!(i["shape"], shape, "{i}");
    }
    assert_eq!(
        meta["outputs"],
        json!([{"name": "probs", "datatype": "FP32", "shape": [-1, 2]}])
    );

    assert_eq!(out["shape"], json!([ROWS, 2]));
    for key in ["probs_binary", "probs_json", "probs_default", "probs_after"] {
        let got = flat(&out[key]);
        let p = compare(&got, &want.probs);
        println!(
            "{key}: {} values, largest |diff| {:.3e}",
            p.count, p.max_abs_diff
        );
        assert_eq!(p.count, ROWS * 2);
        assert_eq!(p.mismatches, 0, "{key} breaks the §7 rule: {p:?}");
    }

    let names_feature = [
        ("missing_input", "user_id"),
        ("wrong_datatype", "user_id"),
        ("wrong_shape", "dense"),
        ("nan_dense", "dense"),
        ("hist_len_above_L", "hist_len"),
        ("extra_input", "colour"),
        ("unknown_model", "no_such_model"),
    ];
    for (case, feature) in names_feature {
        let e = &out["errors"][case];
        println!("{case}: {e}");
        let status = e["status"].as_u64().expect("status");
        assert!((400..500).contains(&status), "{case}: status {status}");
        let msg = e["message"].as_str().expect("message");
        assert!(
            msg.contains(feature),
            "{case}: {msg:?} does not name {feature}"
        );
    }
    assert_eq!(out["errors"]["unknown_model"]["status"], 404);

    // Raw socket: paths, methods and limits.
    let (s, body) = http(addr, "GET", "/v2/nothing", b"");
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("error"));
    let (s, _) = http(addr, "GET", &format!("/v2/models/{name}/infer"), b"");
    assert_eq!(s, 405);
    let (s, _) = http(addr, "GET", &format!("/v2/models/{name}/versions/2"), b"");
    assert_eq!(s, 404);
    let (s, body) = http(
        addr,
        "POST",
        &format!("/v2/models/{name}/infer"),
        b"{not json",
    );
    assert_eq!(s, 400, "{body}");
    let big = tensors(65, 1);
    let body_json = json!({"inputs": big.iter().map(|(n, v)| match &v.data {
        TensorData::I64(data) => json!({"name": n, "shape": v.shape, "datatype": "INT64", "data": data}),
        TensorData::F32(data) => json!({"name": n, "shape": v.shape, "datatype": "FP32", "data": data}),
    }).collect::<Vec<_>>()});
    let (s, body) = http(
        addr,
        "POST",
        &format!("/v2/models/{name}/infer"),
        &serde_json::to_vec(&body_json).expect("json"),
    );
    assert_eq!(s, 413, "{body}");
    assert!(body.contains("maximum batch"), "{body}");
    let (s, body) = http(
        addr,
        "POST",
        &format!("/v2/models/{name}/infer"),
        &vec![b' '; (1 << 20) + 10],
    );
    assert_eq!(s, 413, "{body}");
    let (s, _) = http(addr, "GET", "/v2/health/ready", b"");
    assert_eq!(s, 200);

    server.shutdown();
    assert!(!answers(addr), "the server still answers after shutdown");
}

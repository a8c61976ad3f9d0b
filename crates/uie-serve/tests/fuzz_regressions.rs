//! The `request_decode` fuzz target's regression fixtures (`fixtures/fuzz-regressions/
//! request_decode/`, see `docs/fuzzing.md`) through the same functions, on stable, for the same
//! model (the tiny UIE model of the seed corpus): the header value parsed, the request decoded and
//! a decoded batch predicted. Names starting `ok-` must predict; every other file must give a
//! typed error at some step; nothing may panic.

use std::path::{Path, PathBuf};

use uie_runtime::Model;
use uie_serve::{kserve, ServeError};

/// The server's default `max_batch`, as in the fuzz target.
const MAX_BATCH: usize = 256;

/// The fuzz target's input format (`fuzz/src/lib.rs`): an optional first line `#<header value>`.
fn split_header(data: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match data.strip_prefix(b"#") {
        Some(rest) => match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (Some(rest), &[][..]),
        },
        None => (None, data),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn decode_and_predict(model: &Model, data: &[u8]) -> Result<(), ServeError> {
    let (header, body) = split_header(data);
    let header_length = header
        .map(|h| {
            let text = std::str::from_utf8(h)
                .map_err(|_| ServeError::BadRequest("header is not text".into()))?;
            kserve::parse_header_length(text)
        })
        .transpose()?;
    let (_, batch) = kserve::decode_request(model, body, header_length, MAX_BATCH)?;
    model.predict(&batch)?;
    Ok(())
}

#[test]
fn request_decode_regressions_return_without_panicking() {
    let model_bytes =
        std::fs::read(root().join("fuzz/seeds/model_load/tiny_uie.onnx")).expect("seed model");
    let model = Model::load_bytes(&model_bytes).expect("the seed model loads");
    let dir = root().join("fixtures/fuzz-regressions/request_decode");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "fixtures missing: {files:?}");
    for path in files {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        eprintln!("{name}");
        let data = std::fs::read(&path).expect("read fixture");
        match decode_and_predict(&model, &data) {
            Ok(()) => assert!(name.starts_with("ok-"), "{name}: expected an error"),
            Err(e) => assert!(!name.starts_with("ok-"), "{name}: {e}"),
        }
    }
}

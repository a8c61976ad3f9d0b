//! Fuzz target `request_decode`: bytes → `uie_serve::kserve::decode_request` for the tiny UIE
//! model of the seed corpus (every input kind: categorical ids, `dense`, `hist_items`,
//! `hist_len`), exactly what the server does with an infer request (JSON body or binary tensor
//! data, the `Inference-Header-Content-Length` value parsed by `kserve::parse_header_length`, the
//! 256-row limit), then `Model::predict` on a decoded batch as the server does. The input format is
//! `uie_fuzz::split_header`'s. See `docs/fuzzing.md`.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use uie_runtime::Model;
use uie_serve::kserve;

/// The server's default `max_batch`.
const MAX_BATCH: usize = 256;

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        match Model::load_bytes(include_bytes!("../seeds/model_load/tiny_uie.onnx")) {
            Ok(m) => m,
            Err(e) => panic!("the seed model does not load: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    uie_fuzz::let_dependency_panics_reach_the_guards();
    let model = model();
    let (header, body) = uie_fuzz::split_header(data);
    let header_length = match header.map(std::str::from_utf8) {
        None => None,
        Some(Ok(value)) => match kserve::parse_header_length(value) {
            Ok(n) => Some(n),
            Err(_) => return,
        },
        Some(Err(_)) => return,
    };
    if let Ok((_, batch)) = kserve::decode_request(model, body, header_length, MAX_BATCH) {
        let _ = model.predict(&batch);
    }
});

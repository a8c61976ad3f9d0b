//! The `request_decode` fuzz target's regression fixtures (`fixtures/fuzz-regressions/
//! request_decode/`, see `docs/fuzzing.md`) through the same functions, on stable, for the same
//! model (the tiny UIE model of the seed corpus): the header value parsed, the request decoded and
//! a decoded batch predicted. Names starting `ok-` must predict; every other file must give a
//! typed error at some step; nothing may panic.

use uie_runtime::Model;
use uie_serve::{kserve, ServeError};
use uie_testkit::fuzz_input::split_header;
use uie_testkit::fuzz_regressions::check_regressions;
use uie_testkit::repo_root;

/// The server's default `max_batch`, as in the fuzz target.
const MAX_BATCH: usize = 256;

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
        std::fs::read(repo_root().join("fuzz/seeds/model_load/tiny_uie.onnx")).expect("seed model");
    let model = Model::load_bytes(&model_bytes).expect("the seed model loads");
    check_regressions("request_decode", |data| decode_and_predict(&model, data));
}

//! The KServe v2 inference protocol (REST), the one Triton speaks: parsing an infer request (JSON
//! tensors, and Triton's binary tensor data extension that `tritonclient` uses by default) and
//! writing metadata and infer responses.
//!
//! Pure functions over bytes and `serde_json` values: no sockets here, so every rule is a unit
//! test. This is the only place that knows the wire format: KServe's datatype names
//! ([`datatype_name`]), its JSON and binary tensors. A request becomes named graph-input tensors,
//! then a [`RawBatch`] ([`RawBatch::from_tensors`]), which [`Model::predict`] validates once.

use serde_json::{json, Map, Value as Json};
use uie_runtime::{graph, Dtype, Model, Predictions, RawBatch, RuntimeError, Tensor, TensorSpec};

use crate::error::ServeError;

/// The header that splits a request body into a JSON header and binary tensor data.
pub const HEADER_LENGTH: &str = "Inference-Header-Content-Length";

/// The only model version served.
pub const VERSION: &str = "1";

/// The KServe v2 datatype name of an element type: `INT64` or `FP32`.
pub fn datatype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::I64 => "INT64",
        Dtype::F32 => "FP32",
    }
}

/// The element type of a KServe v2 datatype name, for the two served (`INT64`, `FP32`).
fn datatype(name: &str) -> Option<Dtype> {
    [Dtype::I64, Dtype::F32]
        .into_iter()
        .find(|&d| datatype_name(d) == name)
}

/// A parsed infer request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    /// The request id, echoed in the response.
    pub id: Option<String>,
    /// Named input tensors, in request order.
    pub inputs: Vec<(String, Tensor)>,
    /// Requested output names (empty: all).
    pub outputs: Vec<String>,
}

impl InferRequest {
    /// Rows of the batch: the largest first dim of any input (0 with no inputs).
    pub fn rows(&self) -> usize {
        self.inputs
            .iter()
            .map(|(_, v)| v.shape.first().copied().unwrap_or(0))
            .max()
            .unwrap_or(0)
    }
}

fn bad(message: impl Into<String>) -> ServeError {
    ServeError::BadRequest(message.into())
}

fn flatten<'a>(v: &'a Json, out: &mut Vec<&'a Json>) {
    match v {
        Json::Array(items) => items.iter().for_each(|x| flatten(x, out)),
        other => out.push(other),
    }
}

fn parse_shape(name: &str, t: &Map<String, Json>) -> Result<Vec<usize>, ServeError> {
    t.get("shape")
        .and_then(Json::as_array)
        .ok_or_else(|| bad(format!("input {name}: `shape` must be a list of dims")))?
        .iter()
        .map(|d| {
            d.as_u64()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "input {name}: dim {d} is not a non-negative integer"
                    ))
                })
        })
        .collect()
}

fn parse_input(
    t: &Json,
    binary: &[u8],
    offset: &mut usize,
) -> Result<(String, Tensor), ServeError> {
    let t = t
        .as_object()
        .ok_or_else(|| bad("every entry of `inputs` must be an object"))?;
    let name = t
        .get("name")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("an input has no `name`"))?
        .to_string();
    let shape = parse_shape(&name, t)?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("input {name}: shape {shape:?} is too large")))?;
    let datatype = t
        .get("datatype")
        .and_then(Json::as_str)
        .ok_or_else(|| bad(format!("input {name}: no `datatype`")))?;
    let dtype = self::datatype(datatype).ok_or_else(|| {
        bad(format!(
            "input {name}: datatype {datatype} is not served (INT64 or FP32)"
        ))
    })?;
    let width = match dtype {
        Dtype::I64 => 8,
        Dtype::F32 => 4,
    };
    let binary_size = t
        .get("parameters")
        .and_then(|p| p.get("binary_data_size"))
        .map(|s| {
            s.as_u64()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| bad(format!("input {name}: bad binary_data_size")))
        })
        .transpose()?;
    if let Some(size) = binary_size {
        let end = offset
            .checked_add(size)
            .filter(|&e| e <= binary.len())
            .ok_or_else(|| {
                bad(format!(
                    "input {name}: binary_data_size {size} runs past the body"
                ))
            })?;
        let bytes = &binary[*offset..end];
        *offset = end;
        if Some(size) != count.checked_mul(width) {
            return Err(bad(format!(
                "input {name}: {size} bytes of {datatype} data for shape {shape:?}"
            )));
        }
        let value = if dtype == Dtype::I64 {
            let data = bytes
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    i64::from_le_bytes(b)
                })
                .collect();
            Tensor::i64(shape, data)
        } else {
            let data = bytes
                .chunks_exact(4)
                .map(|c| {
                    let mut b = [0u8; 4];
                    b.copy_from_slice(c);
                    f32::from_le_bytes(b)
                })
                .collect();
            Tensor::f32(shape, data)
        };
        return Ok((name, value));
    }
    let data = t
        .get("data")
        .ok_or_else(|| bad(format!("input {name}: no `data` and no binary data")))?;
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    if flat.len() != count {
        return Err(bad(format!(
            "input {name}: {} values for shape {shape:?} ({count} expected)",
            flat.len()
        )));
    }
    let value = if dtype == Dtype::I64 {
        let data = flat
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_i64()
                    .ok_or_else(|| bad(format!("input {name}: value #{i} ({x}) is not an INT64")))
            })
            .collect::<Result<Vec<i64>, _>>()?;
        Tensor::i64(shape, data)
    } else {
        let data = flat
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_f64()
                    .map(|v| v as f32)
                    .ok_or_else(|| bad(format!("input {name}: value #{i} ({x}) is not a number")))
            })
            .collect::<Result<Vec<f32>, _>>()?;
        Tensor::f32(shape, data)
    };
    Ok((name, value))
}

/// Parses an infer request body. `header_length` is the value of
/// [`HEADER_LENGTH`](constant@HEADER_LENGTH) when the request has binary tensor data.
pub fn parse_infer(body: &[u8], header_length: Option<usize>) -> Result<InferRequest, ServeError> {
    let (head, binary) = match header_length {
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(bad(format!(
                "{HEADER_LENGTH} is {n} but the body has {} bytes",
                body.len()
            )))
        }
        None => (body, &[][..]),
    };
    let json: Json = serde_json::from_slice(head)
        .map_err(|e| bad(format!("the request body is not valid JSON: {e}")))?;
    let id = json.get("id").and_then(Json::as_str).map(str::to_string);
    let inputs_json = json
        .get("inputs")
        .and_then(Json::as_array)
        .ok_or_else(|| bad("the request has no `inputs` list"))?;
    let mut offset = 0;
    let inputs = inputs_json
        .iter()
        .map(|t| parse_input(t, binary, &mut offset))
        .collect::<Result<Vec<_>, _>>()?;
    if offset != binary.len() {
        return Err(bad(format!(
            "{} bytes of binary data are not claimed by any input",
            binary.len() - offset
        )));
    }
    let outputs = match json.get("outputs") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(list)) => list
            .iter()
            .map(|o| {
                o.get("name")
                    .and_then(Json::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| bad("every entry of `outputs` needs a `name`"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(bad("`outputs` must be a list")),
    };
    Ok(InferRequest {
        id,
        inputs,
        outputs,
    })
}

/// Parses the value of the [`HEADER_LENGTH`](constant@HEADER_LENGTH) header: a byte count.
pub fn parse_header_length(value: &str) -> Result<usize, ServeError> {
    value
        .trim()
        .parse::<usize>()
        .map_err(|_| bad(format!("{HEADER_LENGTH} is not a number")))
}

/// Decodes an infer request for `model`, everything the server does before running it: parses
/// the body ([`parse_infer`]), checks the requested outputs, refuses a batch of more than
/// `max_batch` rows (413) and moves the tensors into a [`RawBatch`]
/// ([`RawBatch::from_tensors`], which checks each tensor's name, type and shape; the returned
/// request keeps its id and outputs, its inputs moved out). [`Model::predict`] then validates
/// the batch. Pure: no socket, so it is unit-tested and fuzzed
/// (`fuzz/fuzz_targets/request_decode.rs`).
pub fn decode_request(
    model: &Model,
    body: &[u8],
    header_length: Option<usize>,
    max_batch: usize,
) -> Result<(InferRequest, RawBatch), ServeError> {
    let mut req = parse_infer(body, header_length)?;
    let served = model.output_specs();
    if let Some(bad) = req
        .outputs
        .iter()
        .find(|o| !served.iter().any(|s| &s.name == *o))
    {
        let names: Vec<&str> = served.iter().map(|s| s.name.as_str()).collect();
        return Err(ServeError::BadRequest(format!(
            "output {bad}: not an output of this model (it has {})",
            names.join(", ")
        )));
    }
    let rows = req.rows();
    if rows > max_batch {
        return Err(ServeError::TooLarge(format!(
            "the batch has {rows} rows, above the maximum batch of {max_batch}"
        )));
    }
    let inputs = std::mem::take(&mut req.inputs);
    let batch = RawBatch::from_tensors(model.schema(), inputs).map_err(RuntimeError::from)?;
    Ok((req, batch))
}

fn spec_json(spec: &TensorSpec) -> Json {
    let shape: Vec<i64> = spec
        .dims
        .iter()
        .map(|d| d.map_or(-1, |d| d as i64))
        .collect();
    json!({"name": spec.name, "datatype": datatype_name(spec.dtype), "shape": shape})
}

/// The model metadata response: name, versions, platform, inputs and outputs with `-1` for
/// dynamic dims (the batch dim first).
pub fn model_metadata(name: &str, model: &Model) -> Json {
    json!({
        "name": name,
        "versions": [VERSION],
        "platform": "uie_tract",
        "inputs": model.input_specs().iter().map(spec_json).collect::<Vec<_>>(),
        "outputs": model.output_specs().iter().map(spec_json).collect::<Vec<_>>(),
    })
}

/// The server metadata response.
pub fn server_metadata() -> Json {
    json!({
        "name": "uie-serve",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    })
}

/// The infer response: `probs` as `FP32 [rows, tasks]` JSON data.
pub fn infer_response(name: &str, id: Option<&str>, preds: &Predictions) -> Json {
    let mut out = json!({
        "model_name": name,
        "model_version": VERSION,
        "outputs": [{
            "name": graph::PROBS,
            "datatype": datatype_name(Dtype::F32),
            "shape": [preds.rows, preds.tasks.len()],
            "data": preds.probs,
        }],
    });
    if let (Some(id), Some(obj)) = (id, out.as_object_mut()) {
        obj.insert("id".into(), Json::String(id.to_string()));
    }
    out
}

/// An error response body.
pub fn error_body(message: &str) -> Json {
    json!({ "error": message })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_tensors_flat_and_nested() {
        let body = br#"{"id":"7","inputs":[
            {"name":"a","shape":[2],"datatype":"INT64","data":[1,-2]},
            {"name":"dense","shape":[2,2],"datatype":"FP32","data":[[0.5,1],[2,3]]}],
            "outputs":[{"name":"probs"}]}"#;
        let r = parse_infer(body, None).unwrap();
        assert_eq!(r.id.as_deref(), Some("7"));
        assert_eq!(r.rows(), 2);
        assert_eq!(r.outputs, vec!["probs"]);
        assert_eq!(r.inputs[0].1, Tensor::i64(vec![2], vec![1, -2]));
        assert_eq!(
            r.inputs[1].1,
            Tensor::f32(vec![2, 2], vec![0.5, 1.0, 2.0, 3.0])
        );
    }

    #[test]
    fn binary_tensors() {
        let head = br#"{"inputs":[{"name":"a","shape":[2],"datatype":"INT64","parameters":{"binary_data_size":16}},{"name":"d","shape":[1,1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#;
        let mut body = head.to_vec();
        body.extend_from_slice(&5i64.to_le_bytes());
        body.extend_from_slice(&(-9i64).to_le_bytes());
        body.extend_from_slice(&f32::NAN.to_le_bytes());
        let r = parse_infer(&body, Some(head.len())).unwrap();
        assert_eq!(r.inputs[0].1.as_i64().unwrap(), &[5, -9]);
        assert!(r.inputs[1].1.as_f32().unwrap()[0].is_nan());
        // Too few bytes, and a header length past the body.
        assert!(parse_infer(&body[..body.len() - 1], Some(head.len())).is_err());
        assert!(parse_infer(&body, Some(body.len() + 1)).is_err());
    }

    #[test]
    fn header_length_value() {
        assert_eq!(parse_header_length(" 42 ").unwrap(), 42);
        for bad in ["", "-1", "4 2", "0x10", "99999999999999999999999"] {
            let e = parse_header_length(bad).unwrap_err();
            assert!(e.to_string().contains(HEADER_LENGTH), "{e}");
        }
    }

    #[test]
    fn errors_name_the_input() {
        let cases: [(&[u8], &str); 6] = [
            (
                br#"{"inputs":[{"name":"a","shape":[2],"datatype":"INT32","data":[1,2]}]}"#,
                "a",
            ),
            (
                br#"{"inputs":[{"name":"b","shape":[3],"datatype":"INT64","data":[1,2]}]}"#,
                "b",
            ),
            (
                br#"{"inputs":[{"name":"c","shape":[1],"datatype":"INT64","data":[1.5]}]}"#,
                "c",
            ),
            (
                br#"{"inputs":[{"name":"d","shape":[-1],"datatype":"INT64","data":[1]}]}"#,
                "d",
            ),
            (
                br#"{"inputs":[{"name":"e","shape":[1],"datatype":"FP32"}]}"#,
                "e",
            ),
            (
                br#"{"inputs":[{"name":"f","shape":[1],"datatype":"FP32","data":["x"]}]}"#,
                "f",
            ),
        ];
        for (body, name) in cases {
            let e = parse_infer(body, None).unwrap_err();
            assert!(matches!(e, ServeError::BadRequest(_)), "{e}");
            assert!(e.to_string().contains(&format!("input {name}")), "{e}");
        }
        assert!(parse_infer(b"not json", None).is_err());
        assert!(parse_infer(b"{}", None).is_err());
    }
}

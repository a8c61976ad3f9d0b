//! Latency measurement shared by the inference and scaling benchmarks (`src/bin/bench_inference.rs`,
//! `src/bin/bench_scaling.rs`) and the files they share with the ONNX Runtime side
//! (`python/bench_ort.py`): per-call samples, percentiles, and named input tensors as JSON (also
//! read by the timing binaries `compare_options`, `rewrites` and `profile`).
//!
//! Percentiles interpolate linearly between the closest ranks (numpy's default), so the Rust and the
//! Python side summarise their samples by the same rule.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use uie_model::{Tensor, TensorData};

/// How long and how often one case is timed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Untimed calls first.
    pub warmup_calls: usize,
    /// Keep timing until at least this much time was spent in timed calls …
    pub min_seconds: f64,
    /// … and at least this many calls were timed.
    pub min_calls: usize,
}

/// Calls `f` `budget.warmup_calls` times untimed, then times single calls until both minimums of
/// the budget are reached. Returns the per-call wall times in nanoseconds.
pub fn time_calls(budget: Budget, mut f: impl FnMut() -> Result<()>) -> Result<Vec<u64>> {
    for _ in 0..budget.warmup_calls {
        f()?;
    }
    let min = Duration::from_secs_f64(budget.min_seconds.max(0.0));
    let mut samples = Vec::new();
    let mut spent = Duration::ZERO;
    while spent < min || samples.len() < budget.min_calls.max(1) {
        let t = Instant::now();
        f()?;
        let d = t.elapsed();
        spent += d;
        samples.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }
    Ok(samples)
}

/// The `q`-quantile (`q` in `[0, 1]`) of samples, linear between the closest ranks; 0 when empty.
pub fn percentile(samples: &[u64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    let rank = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    s[lo] as f64 + (s[hi] as f64 - s[lo] as f64) * frac
}

/// Summary of one case's samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Timed calls.
    pub calls: usize,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th-percentile latency, µs.
    pub p99_us: f64,
    /// Mean latency, µs.
    pub mean_us: f64,
    /// Rows per second: `rows / mean latency`.
    pub rows_per_s: f64,
}

/// Summarises per-call samples (ns) of calls on `rows` rows each.
pub fn summarise(samples: &[u64], rows: usize) -> Summary {
    let mean_ns = if samples.is_empty() {
        0.0
    } else {
        samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64
    };
    Summary {
        calls: samples.len(),
        p50_us: percentile(samples, 0.5) / 1e3,
        p99_us: percentile(samples, 0.99) / 1e3,
        mean_us: mean_ns / 1e3,
        rows_per_s: if mean_ns > 0.0 {
            rows as f64 / (mean_ns / 1e9)
        } else {
            0.0
        },
    }
}

/// Named tensors as the JSON object both benchmark sides read:
/// `{name: {"dtype": "int64"|"float32", "shape": [...], "data": [...]}}`.
pub fn inputs_to_json(inputs: &[(String, Tensor)]) -> serde_json::Value {
    serde_json::Value::Object(
        inputs
            .iter()
            .map(|(name, t)| (name.clone(), uie_e2e::tensor_json(t)))
            .collect(),
    )
}

/// Writes named tensors as JSON ([`inputs_to_json`]) through a temporary file and a rename.
pub fn write_inputs_json(path: &Path, inputs: &[(String, Tensor)]) -> Result<()> {
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(&inputs_to_json(inputs))?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Reads named tensors written by [`write_inputs_json`], in the file's key order.
pub fn read_inputs_json(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    let mut out = Vec::new();
    for (name, v) in doc {
        let shape: Vec<usize> = serde_json::from_value(v["shape"].clone())
            .with_context(|| format!("{}: shape of {name}", path.display()))?;
        let data = match v["dtype"].as_str() {
            Some("float32") => TensorData::F32(
                serde_json::from_value(v["data"].clone())
                    .with_context(|| format!("{}: data of {name}", path.display()))?,
            ),
            Some("int64") => TensorData::I64(
                serde_json::from_value(v["data"].clone())
                    .with_context(|| format!("{}: data of {name}", path.display()))?,
            ),
            other => bail!(
                "{}: {name} has dtype {other:?}, expected \"int64\" or \"float32\"",
                path.display()
            ),
        };
        out.push((name, Tensor { shape, data }));
    }
    Ok(out)
}

/// The inputs of batch size `n` in a benchmark directory (`<dir>/inputs_<n>.json`, as
/// `scripts/bench-retrieval.sh` and `bench_inference prepare` write them), read by
/// [`read_inputs_json`], in the file's key order.
pub fn read_batch_values(dir: &Path, n: usize) -> Result<Vec<(String, Tensor)>> {
    read_inputs_json(&dir.join(format!("inputs_{n}.json")))
}

/// Named values in the form `uie_runtime::Engine::run` takes (names borrowed, values copied).
pub fn run_inputs(values: &[(String, Tensor)]) -> Vec<(&str, Tensor)> {
    values
        .iter()
        .map(|(name, v)| (name.as_str(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let s = [40, 10, 30, 20];
        assert_eq!(percentile(&s, 0.0), 10.0);
        assert_eq!(percentile(&s, 1.0), 40.0);
        assert_eq!(percentile(&s, 0.5), 25.0);
        assert!((percentile(&s, 0.99) - 39.7).abs() < 1e-9);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn time_calls_meets_both_minimums_and_stops_on_error() {
        let mut n = 0;
        let budget = Budget {
            warmup_calls: 3,
            min_seconds: 0.0,
            min_calls: 5,
        };
        let samples = time_calls(budget, || {
            n += 1;
            Ok(())
        })
        .expect("runs");
        assert_eq!((samples.len(), n), (5, 8));
        let err = time_calls(budget, || bail!("boom")).expect_err("fails");
        assert_eq!(err.to_string(), "boom");
    }

    #[test]
    fn inputs_round_trip_through_json() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("in.json");
        let inputs = vec![
            ("a".to_string(), Tensor::i64(vec![2], vec![1, -7])),
            ("b".to_string(), Tensor::f32(vec![1, 2], vec![0.5, -1.25])),
        ];
        write_inputs_json(&path, &inputs).expect("write");
        assert_eq!(read_inputs_json(&path).expect("read"), inputs);
        std::fs::write(
            &path,
            r#"{"a": {"dtype": "int8", "shape": [1], "data": [1]}}"#,
        )
        .expect("write");
        let err = read_inputs_json(&path).expect_err("bad dtype");
        assert!(err.to_string().contains("a has dtype"), "{err}");
    }
}

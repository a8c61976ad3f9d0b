//! Every op case of `uie_op_cases` (one-node graphs with their feeds, the same data the
//! tract op tests run) is emitted to a file, passes the official ONNX checker (full_check) and
//! strict shape inference, and runs in ONNX Runtime (optimisations disabled and all) with outputs
//! equal to the reference evaluator's: exactly for int64, by the §7 rule for f32. The checker and
//! ONNX Runtime each run once over all the cases (one Python start each).

use std::path::PathBuf;

use uie_compile::eval::evaluate;
use uie_compile::onnx::to_model_bytes;
use uie_e2e::{onnx_check_many, run_onnxruntime_batch, OrtJob};
use uie_model::Tensor;
use uie_op_cases::{op_cases, OpCase};
use uie_testkit::assertions::compare;

fn reference(case: &OpCase) -> Tensor {
    let named: Vec<(&str, Tensor)> = case
        .feeds
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    evaluate(&case.graph, &named)
        .unwrap_or_else(|e| panic!("op case {}: reference evaluator: {e}", case.name))
        .remove(0)
        .1
}

#[test]
fn every_op_case_passes_the_onnx_checker_and_matches_in_onnxruntime() {
    let cases = op_cases().expect("op cases");
    assert!(!cases.is_empty());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut paths: Vec<PathBuf> = Vec::new();
    for case in &cases {
        let bytes = to_model_bytes(&case.graph)
            .unwrap_or_else(|e| panic!("op case {}: emit: {e}", case.name));
        let path = dir
            .path()
            .join(format!("{}.onnx", case.name.replace('/', "__")));
        std::fs::write(&path, bytes).expect("write model");
        paths.push(path);
    }

    let reports = onnx_check_many(&paths).expect("ONNX checker and strict shape inference");
    for (case, report) in cases.iter().zip(&reports) {
        assert!(report.starts_with("ok "), "op case {}: {report}", case.name);
    }
    println!(
        "ONNX checker (full_check) and strict shape inference: {} models ok",
        reports.len()
    );

    let jobs: Vec<OrtJob> = cases
        .iter()
        .zip(&paths)
        .map(|(case, path)| OrtJob {
            name: case.name.clone(),
            model: path.clone(),
            inputs: case.feeds.clone(),
        })
        .collect();
    let results = run_onnxruntime_batch(&jobs).expect("ONNX Runtime");

    let mut failures = Vec::new();
    let mut worst = (0.0f32, String::new());
    let mut compared = 0usize;
    for case in &cases {
        let expected = reference(case);
        let levels = match &results[&case.name] {
            Ok(levels) => levels,
            Err(e) => {
                failures.push(format!("op case {}: ONNX Runtime: {e}", case.name));
                continue;
            }
        };
        for (level, outs) in levels {
            let what = format!("op case {} (onnxruntime, optimisation {level})", case.name);
            let [(name, got)] = outs.as_slice() else {
                failures.push(format!("{what}: {} outputs, expected 1", outs.len()));
                continue;
            };
            if name != "out" {
                failures.push(format!("{what}: output named {name}, expected out"));
                continue;
            }
            match compare(got, &expected) {
                Ok(d) => {
                    compared += 1;
                    if d > worst.0 || worst.1.is_empty() {
                        worst = (d.max(worst.0), what);
                    }
                }
                Err(e) => failures.push(format!("{what}: {e}")),
            }
        }
    }
    println!(
        "onnxruntime: {} op cases, {compared} runs compared with the reference; largest |diff| \
         {:.3e} ({})",
        cases.len(),
        worst.0,
        worst.1
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        compared,
        2 * cases.len(),
        "every case runs at both optimisation levels"
    );
}

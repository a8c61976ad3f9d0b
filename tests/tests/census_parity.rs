//! End to end on Census-Income: train a PLE checkpoint with dfdx, compile it to ONNX, and check
//! that the dfdx forward pass, tract (plain and optimised) and ONNX Runtime agree by the rule of
//! `docs/model.md` §7 on ≥ 512 real test rows plus constructed rows (ids absent from training,
//! negative ids, ids above 2^40, the int64 extremes). Also: the ONNX checker (full_check) and
//! strict shape inference pass, compiling twice gives identical bytes, and the typed runtime API
//! gives the same probabilities and names the feature at fault in a bad request.

use std::path::Path;

use uie_compile::verify::batch_inputs;
use uie_e2e::{onnx_check_many, repo_root, run_onnxruntime_batch, OrtJob};
use uie_model::parity::compare;
use uie_model::{Checkpoint, Config, RawBatch, Tensor};
use uie_runtime::{Batch, Engine, EngineOptions, InputError, Model, RuntimeError};

const REAL_ROWS: usize = 600;

/// Trains a short run (2 epochs) on the real census split: enough to move every weight away from
/// its initialisation, quick enough for the test suite.
fn trained_checkpoint(dir: &Path) -> (Checkpoint, uie_train::data::Splits) {
    let root = repo_root();
    let config = Config::load(&root.join("models/census-ple.toml")).expect("config");
    let mut opts = uie_train::TrainOptions::new(dir);
    opts.data_root = root.clone();
    opts.epochs = Some(2);
    uie_train::train(&config, &opts).expect("training");
    let checkpoint = Checkpoint::read(&dir.join("best")).expect("best checkpoint");
    let splits = uie_train::data::census::load(&config, &root).expect("census data");
    (checkpoint, splits)
}

/// Real test rows followed by constructed rows whose ids the model never saw.
fn parity_rows(test: &RawBatch) -> RawBatch {
    let mut batch = test.slice(0, REAL_ROWS);
    let d = batch.dense.len() / batch.n;
    let specials: [i64; 8] = [
        -1,
        -123_456_789,
        (1i64 << 40) + 17,
        (1i64 << 62) + 12_345,
        i64::MAX,
        i64::MIN,
        i64::MIN + 1,
        987_654_321_987,
    ];
    for (r, &special) in specials.iter().enumerate() {
        for (k, ids) in batch.categorical.values_mut().enumerate() {
            // Row r: every field gets a special id, shifted per field so fields differ.
            let id = special.wrapping_add((k as i64) * 7919 * (r as i64 % 2 * 2 - 1));
            ids.push(id);
        }
        let src = r % test.n;
        batch
            .dense
            .extend_from_slice(&test.dense[src * d..(src + 1) * d]);
        batch.n += 1;
    }
    batch
}

fn probs_of(outputs: Vec<(String, Tensor)>) -> Vec<f32> {
    outputs
        .into_iter()
        .find(|(n, _)| n == "probs")
        .and_then(|(_, v)| v.as_f32().map(<[f32]>::to_vec))
        .expect("probs output")
}

#[test]
fn census_parity_dfdx_tract_onnxruntime() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (checkpoint, splits) = trained_checkpoint(tmp.path());
    let config = &checkpoint.config;
    let rows = parity_rows(&splits.test.batch);
    assert!(rows.n >= REAL_ROWS + 8);

    let reference = uie_train::predict(&checkpoint, &rows).expect("dfdx forward pass");
    assert_eq!(reference.len(), rows.n * config.tasks.len());
    assert!(reference
        .iter()
        .all(|p| p.is_finite() && *p > 0.0 && *p < 1.0));

    let bytes = uie_compile::compile(&checkpoint).expect("compile");
    let again = uie_compile::compile(&checkpoint).expect("compile again");
    assert!(
        bytes == again,
        "compiling the same checkpoint twice gave different bytes"
    );
    let model_path = tmp.path().join("model.onnx");
    std::fs::write(&model_path, &bytes).expect("write model");

    let report = onnx_check_many(std::slice::from_ref(&model_path))
        .expect("onnx checker and shape inference")
        .remove(0);
    println!("{report}");
    assert!(report.contains("'N'"), "batch dim is not dynamic: {report}");

    let inputs = batch_inputs(config, &rows).expect("graph inputs");
    let mut worst = Vec::new();
    for optimize in [false, true] {
        let engine = Engine::load_path(
            &model_path,
            EngineOptions {
                optimize,
                ..EngineOptions::default()
            },
        )
        .expect("tract load");
        let got = probs_of(engine.run(&inputs).expect("tract run"));
        let p = compare(&got, &reference);
        let label = if optimize {
            "tract optimised"
        } else {
            "tract plain"
        };
        println!(
            "{label}: {} values, largest |diff| {:.3e}",
            p.count, p.max_abs_diff
        );
        assert_eq!(p.mismatches, 0, "{label} breaks the §7 rule: {p:?}");
        worst.push((label, p.max_abs_diff));
    }
    let job = OrtJob {
        name: "census".into(),
        model: model_path.clone(),
        inputs: inputs.clone(),
    };
    let ort = run_onnxruntime_batch(&[job])
        .expect("onnxruntime")
        .remove("census")
        .expect("job result")
        .expect("onnxruntime session");
    for (level, outputs) in &ort {
        let probs = outputs
            .iter()
            .find(|(n, _)| n == "probs")
            .and_then(|(_, t)| t.as_f32())
            .expect("probs from onnxruntime");
        let p = compare(probs, &reference);
        let label = format!("onnxruntime ({level} optimisations)");
        println!(
            "{label}: {} values, largest |diff| {:.3e}",
            p.count, p.max_abs_diff
        );
        assert_eq!(p.mismatches, 0, "{label} breaks the §7 rule: {p:?}");
        worst.push((
            if level == "all" {
                "onnxruntime"
            } else {
                "onnxruntime (unoptimised)"
            },
            p.max_abs_diff,
        ));
    }
    let (who, max) = worst.iter().fold(
        ("", 0.0f32),
        |acc, (w, m)| if *m > acc.1 { (w, *m) } else { acc },
    );
    println!(
        "largest difference seen: {max:.3e} ({who} vs dfdx) over {} rows",
        rows.n
    );

    // The typed API gives the same numbers, and names the feature at fault in a bad request.
    let model = Model::load(&model_path).expect("typed model");
    assert_eq!(model.tasks(), config.task_names().as_slice());
    let small = rows.slice(0, 16);
    let d = config.features.dense.len();
    let mut batch = Batch::new();
    for (name, ids) in &small.categorical {
        batch = batch.ids(name, ids.clone());
    }
    for (j, name) in config.features.dense.iter().enumerate() {
        batch = batch.numbers(name, (0..small.n).map(|r| small.dense[r * d + j]).collect());
    }
    let typed = |b: Batch| {
        b.build(model.schema())
            .map_err(RuntimeError::from)
            .and_then(|raw| model.predict(&raw))
    };
    let preds = typed(batch.clone()).expect("typed predict");
    let p = compare(&preds.probs, &reference[..small.n * config.tasks.len()]);
    assert_eq!(p.mismatches, 0, "typed API disagrees: {p:?}");
    assert_eq!(
        model.predict(&small).expect("graph-shaped predict"),
        preds,
        "the typed batch and the raw batch differ"
    );

    let field = &config.features.categorical[3].name;
    let dense0 = &config.features.dense[0];
    let without = |name: &str| {
        let mut b = Batch::new();
        for (n, ids) in &small.categorical {
            if n != name {
                b = b.ids(n, ids.clone());
            }
        }
        for (j, n) in config.features.dense.iter().enumerate() {
            if n != name {
                b = b.numbers(n, (0..small.n).map(|r| small.dense[r * d + j]).collect());
            }
        }
        b
    };
    match typed(without(field)) {
        Err(RuntimeError::Input(InputError::MissingFeature(n))) => assert_eq!(&n, field),
        other => panic!("missing feature not reported: {other:?}"),
    }
    match typed(batch.clone().ids("no_such_feature", vec![1; small.n])) {
        Err(RuntimeError::Input(InputError::UnknownFeature(n))) => assert_eq!(n, "no_such_feature"),
        other => panic!("extra feature not reported: {other:?}"),
    }
    match typed(without(field).numbers(field, vec![1.0; small.n])) {
        Err(RuntimeError::Input(InputError::WrongType { name, .. })) => assert_eq!(&name, field),
        other => panic!("mistyped feature not reported: {other:?}"),
    }
    match typed(without(field).ids(field, vec![1; small.n - 1])) {
        Err(RuntimeError::Input(InputError::WrongLength { name, .. })) => assert_eq!(&name, field),
        other => panic!("wrong length not reported: {other:?}"),
    }
    let mut nan = vec![1.0; small.n];
    nan[3] = f32::NAN;
    match typed(without(dense0).numbers(dense0, nan)) {
        Err(RuntimeError::Input(InputError::NonFinite { name, row, .. })) => {
            assert_eq!(&name, dense0);
            assert_eq!(row, 3);
        }
        other => panic!("NaN not reported: {other:?}"),
    }
}

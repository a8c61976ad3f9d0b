//! End to end on MovieLens with every UIE module: a full-UIE checkpoint is trained on the real
//! Protocol B data (one warm-up epoch, one full epoch), compiled with debug outputs, and the
//! trainer's dfdx forward pass, tract (plain and optimised) and ONNX Runtime (optimisations off
//! and on) are compared by the rule of `docs/model.md` §7 on ≥ 1,000 real test samples plus
//! constructed rows: `hist_len = 0`, `L = 1`, `L` at its maximum, negative and huge ids; then on
//! two edited checkpoints, one whose centre tables are all zero (no centre is ever kept) and one
//! with duplicated centres (exact ties, which both sides break toward the lower index).
//!
//! Retrieved indices (debug outputs) must agree exactly between tract, ONNX Runtime and the
//! reference evaluator except on near-tie rows: rows where two of the K + 1 best scores of a
//! retrieval differ by less than 1e-5 and the larger is positive (so the kept set or its order
//! may legitimately differ). The test prints the largest difference and the near-tie count.
//!
//! It also checks the emitted model with the ONNX checker (full_check, strict shape inference),
//! that `N` and `L` are dynamic, that two compiles are byte-identical, and that a checkpoint whose
//! memory table disagrees with its config is refused with an error naming the table.

use uie_compile::pipeline::{build_graph_with, compile_with, CompileOptions};
use uie_compile::verify::{batch_inputs, run_engine};
use uie_e2e::{
    duplicated_centres, near_tie_rows, onnx_check_many, run_onnxruntime_batch, train_movielens_uie,
    zero_centres, OrtJob,
};
use uie_model::batch::History;
use uie_model::parity::within_tolerance;
use uie_model::schema::MEMORY_UPE;
use uie_model::{Checkpoint, RawBatch, Tensor};
use uie_runtime::engine::{Engine, EngineOptions};
use uie_train::predict;

fn output<'a>(outs: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    outs.iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no output {name}"))
}

/// Real test rows spread over the whole (time-ordered) test split.
fn spread(batch: &RawBatch, want: usize) -> RawBatch {
    let step = (batch.n / want).max(1);
    let rows: Vec<usize> = (0..batch.n).step_by(step).take(want).collect();
    batch.take(&rows)
}

/// Rows built from real ones: `hist_len = 0`, full `L`, negative and huge history ids, negative
/// and extreme categorical ids.
fn constructed(real: &RawBatch) -> RawBatch {
    let mut b = real.take(&(0..48).collect::<Vec<_>>());
    let h = b.history.as_mut().expect("history");
    let width = h.width;
    for r in 0..b.n {
        match r % 4 {
            0 => h.len[r] = 0,
            1 => h.len[r] = width as i64,
            2 => {
                for j in 0..width {
                    h.items[r * width + j] = -(j as i64) - 7;
                }
                h.len[r] = width as i64;
            }
            _ => {
                for j in 0..width {
                    h.items[r * width + j] = (1i64 << 50) + j as i64;
                }
                h.len[r] = (r % width) as i64;
            }
        }
    }
    for (i, ids) in b.categorical.values_mut().enumerate() {
        for (r, id) in ids.iter_mut().enumerate() {
            match (r + i) % 5 {
                0 => *id = -*id - 1,
                1 => *id = i64::MAX - r as i64,
                2 => *id = i64::MIN + r as i64,
                3 => *id = (1i64 << 41) + r as i64,
                _ => {}
            }
        }
    }
    b
}

/// The most recent history item only: `L = 1`.
fn width_one(real: &RawBatch) -> RawBatch {
    let mut b = real.take(&(0..48).collect::<Vec<_>>());
    let h = b.history.as_ref().expect("history").clone();
    b.history = Some(History {
        width: 1,
        items: (0..b.n)
            .map(|r| {
                let len = h.len[r].max(1) as usize;
                h.items[r * h.width + len - 1]
            })
            .collect(),
        len: h.len.iter().map(|&l| l.min(1)).collect(),
    });
    b
}

struct Totals {
    rows: usize,
    near_ties: usize,
    worst: f32,
    worst_label: String,
    index_mismatch: Vec<String>,
}

/// Compares the trainer, tract (plain, optimised) and ONNX Runtime on every batch for one
/// checkpoint.
fn check_checkpoint(
    label: &str,
    ck: &Checkpoint,
    batches: &[(&str, RawBatch)],
    totals: &mut Totals,
) {
    let debug = CompileOptions {
        debug_outputs: true,
        ..CompileOptions::default()
    };
    let bytes = compile_with(ck, &debug).expect("compile");
    let graph = build_graph_with(ck, &debug).expect("graph");
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model.onnx");
    std::fs::write(&model, &bytes).expect("write model");
    let t = ck.config.tasks.len();
    let engines: Vec<(&str, Engine)> = [("tract plain", false), ("tract optimised", true)]
        .into_iter()
        .map(|(n, optimize)| {
            (
                n,
                Engine::load_path(
                    &model,
                    EngineOptions {
                        optimize,
                        ..EngineOptions::default()
                    },
                )
                .expect("tract load"),
            )
        })
        .collect();
    let jobs: Vec<OrtJob> = batches
        .iter()
        .map(|(name, batch)| OrtJob {
            name: name.to_string(),
            model: model.clone(),
            inputs: batch_inputs(&ck.config, batch).expect("inputs"),
        })
        .collect();
    let mut ort = run_onnxruntime_batch(&jobs).expect("onnxruntime");
    for (name, batch) in batches {
        let case = format!("{label}/{name}");
        let want = predict(ck, batch).expect("trainer predict");
        let inputs = batch_inputs(&ck.config, batch).expect("inputs");
        let named: Vec<(&str, Tensor)> = inputs
            .iter()
            .map(|(n, t)| (n.as_str(), t.clone()))
            .collect();
        let reference = uie_compile::eval::evaluate(&graph, &named).expect("reference evaluator");
        let mut ties = vec![false; batch.n];
        for (scores, k) in [
            ("debug.upe.scores", ck.config.uie.upe.k),
            ("debug.ucse.scores", ck.config.uie.ucse.k),
        ] {
            if reference.iter().any(|(n, _)| n == scores) {
                for (t, v) in ties
                    .iter_mut()
                    .zip(near_tie_rows(output(&reference, scores), k))
                {
                    *t |= v;
                }
            }
        }
        totals.rows += batch.n;
        let n_ties = ties.iter().filter(|&&t| t).count();
        totals.near_ties += n_ties;
        println!("{case}: {} rows, {n_ties} near-tie rows", batch.n);

        let mut runs: Vec<(String, Vec<(String, Tensor)>)> = Vec::new();
        for (engine_name, engine) in &engines {
            runs.push((
                engine_name.to_string(),
                run_engine(engine, &inputs, engine_name).expect("tract run"),
            ));
        }
        let levels = ort
            .remove(*name)
            .expect("onnxruntime result")
            .unwrap_or_else(|e| panic!("{case}: onnxruntime failed: {e}"));
        for (level, outs) in levels {
            runs.push((format!("onnxruntime ({level})"), outs));
        }
        for (engine_name, outs) in &runs {
            let got = output(outs, "probs").as_f32().expect("probs");
            assert_eq!(got.len(), want.len(), "{case} {engine_name}");
            for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
                let d = (a - b).abs();
                if d > totals.worst || d.is_nan() {
                    totals.worst = d;
                    totals.worst_label =
                        format!("{case} {engine_name} row {} task {}", i / t, i % t);
                }
                assert!(
                    within_tolerance(a, b) || ties[i / t],
                    "{case} {engine_name} row {} task {}: {a} vs trainer {b}",
                    i / t,
                    i % t
                );
            }
            for idx in ["debug.upe.indices", "debug.ucse.indices"] {
                if !reference.iter().any(|(n, _)| n == idx) {
                    continue;
                }
                let (g, r) = (output(outs, idx), output(&reference, idx));
                let k = r.shape[1];
                let (g, r) = (g.as_i64().expect("i64"), r.as_i64().expect("i64"));
                for row in 0..batch.n {
                    if g[row * k..(row + 1) * k] != r[row * k..(row + 1) * k] && !ties[row] {
                        totals
                            .index_mismatch
                            .push(format!("{case} {engine_name} {idx} row {row}"));
                    }
                }
            }
        }
    }
}

#[test]
fn movielens_uie_parity_dfdx_tract_onnxruntime() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ck, splits) = train_movielens_uie(tmp.path()).expect("training");
    let real = spread(&splits.test.batch, 1008);
    assert!(real.n >= 1000, "only {} real test rows", real.n);
    let max_width = real.history.as_ref().expect("history").width;
    assert_eq!(
        max_width,
        ck.config
            .features
            .sequence
            .as_ref()
            .expect("sequence")
            .max_len
    );
    let batches = [
        ("real", real.clone()),
        ("constructed", constructed(&real)),
        ("L=1", width_one(&real)),
    ];

    // The emitted file: checker, dynamic dims, determinism.
    let bytes = uie_compile::compile(&ck).expect("compile");
    assert!(
        bytes == uie_compile::compile(&ck).expect("again"),
        "compiles differ"
    );
    let model = tmp.path().join("model.onnx");
    std::fs::write(&model, &bytes).expect("write");
    let report = onnx_check_many(std::slice::from_ref(&model))
        .expect("checker")
        .remove(0);
    println!("{report}");
    assert!(
        report.contains("'hist_items': ['N', 'L']"),
        "N and L must be dynamic: {report}"
    );
    assert!(report.contains("'probs': ['N', 2]"), "{report}");

    let mut totals = Totals {
        rows: 0,
        near_ties: 0,
        worst: 0.0,
        worst_label: String::new(),
        index_mismatch: Vec::new(),
    };
    check_checkpoint("trained", &ck, &batches, &mut totals);
    // No centre is ever kept: every retrieval gives exactly zero.
    let zeros = zero_centres(&ck);
    check_checkpoint("zero-centres", &zeros, &batches[..2], &mut totals);
    // Exact ties: every odd centre duplicates the centre before it.
    let dup = duplicated_centres(&ck);
    check_checkpoint("duplicated-centres", &dup, &batches[..2], &mut totals);

    println!(
        "MovieLens UIE parity (dfdx vs tract plain/optimised and onnxruntime off/all): {} rows, \
         largest |diff| {:.3e} ({}), near-tie rows {}, index mismatches outside near ties {}",
        totals.rows,
        totals.worst,
        totals.worst_label,
        totals.near_ties,
        totals.index_mismatch.len()
    );
    assert!(
        totals.index_mismatch.is_empty(),
        "{:?}",
        totals.index_mismatch
    );

    // A checkpoint whose table disagrees with its config is refused, naming the table.
    let mut bad = ck.clone();
    let t = bad.weights.get_mut(MEMORY_UPE).expect("memory.upe");
    t.shape[0] -= 1;
    if let uie_model::TensorData::F32(v) = &mut t.data {
        v.truncate(t.shape[0] * t.shape[1]);
    }
    let err = uie_compile::compile(&bad)
        .expect_err("bad table must be refused")
        .to_string();
    assert!(err.contains(MEMORY_UPE), "{err}");
}

//! `uie-runtime` for services: every kind of bad request is an error naming the feature (typed
//! `Batch` and graph-input tensors alike, each through `RawBatch` and `Model::predict`); a panic inside tract (a hand-built graph whose Gather
//! index is out of range) is an error, not a crash; 8 threads × 1,000 requests on one model give
//! results identical to serial calls while a hot reload swaps in a second file in the middle; a
//! corrupt file fails to reload and leaves the old model serving.

mod serve_model;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serve_model::{batch, compiled, tensors, L};
use uie_compile::ir::{Dim, Dtype, Graph, TensorType};
use uie_compile::ops::Op;
use uie_model::Tensor;
use uie_runtime::{
    Batch, Engine, EngineOptions, Model, ModelHandle, Predictions, RawBatch, RuntimeError,
};

fn assert_names(err: RuntimeError, feature: &str) {
    let msg = err.to_string();
    assert!(
        msg.contains(feature),
        "error does not name {feature}: {msg}"
    );
    println!("{feature}: {msg}");
}

fn set(t: &mut [(String, Tensor)], name: &str, v: Tensor) {
    let slot = t.iter_mut().find(|(n, _)| n == name).expect("input");
    slot.1 = v;
}

/// A typed batch built for the model and predicted: the library path of a service.
fn predict_typed(model: &Model, batch: Batch) -> Result<Predictions, RuntimeError> {
    let raw = batch.build(model.schema())?;
    model.predict(&raw)
}

#[test]
fn every_bad_request_names_the_feature() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = Model::load(&compiled(tmp.path(), 3, "m.onnx")).expect("load");
    let n = 6;
    let good = batch(n, 1);
    assert_eq!(model.predict(&good).expect("good batch").rows, n);

    // Typed batches.
    let ids = |k: i64| vec![k; n];
    let hist = |len: Vec<i64>| (vec![1; n * L], len);
    let base = || {
        Batch::new()
            .ids("user_id", ids(1))
            .ids("movie_id", ids(2))
            .ids("genre", ids(3))
    };
    let (hi, hl) = hist(vec![0; n]);
    let cases: Vec<(Batch, &str)> = vec![
        (base().history(hi.clone(), hl.clone(), L), "age"), // missing
        (
            base()
                .numbers("age", vec![1.0; n])
                .numbers("height", vec![1.0; n])
                .history(hi.clone(), hl.clone(), L),
            "height",
        ), // extra
        (
            base().ids("age", ids(4)).history(hi.clone(), hl.clone(), L),
            "age",
        ), // mistyped
        (
            base()
                .numbers("age", vec![1.0; n + 1])
                .history(hi.clone(), hl.clone(), L),
            "age",
        ), // wrong length
        (
            base()
                .numbers("age", vec![1.0; n])
                .history(hi.clone(), vec![0; n - 1], L),
            "hist_len",
        ), // wrong length
        (
            base()
                .numbers("age", vec![1.0; n])
                .history(vec![1; n * L - 1], hl.clone(), L),
            "hist_items",
        ), // wrong length
        (
            base()
                .numbers("age", vec![1.0; n])
                .history(hi.clone(), vec![L as i64 + 1; n], L),
            "hist_len",
        ), // above L
        (
            base()
                .numbers("age", vec![1.0; n])
                .history(hi.clone(), vec![-1; n], L),
            "hist_len",
        ), // negative
        (
            base()
                .numbers("age", {
                    let mut v = vec![1.0; n];
                    v[2] = f32::NAN;
                    v
                })
                .history(hi.clone(), hl.clone(), L),
            "age",
        ), // NaN
        (
            base()
                .numbers("age", {
                    let mut v = vec![1.0; n];
                    v[0] = f32::INFINITY;
                    v
                })
                .history(hi.clone(), hl.clone(), L),
            "age",
        ), // infinity
        (base().numbers("age", vec![1.0; n]), "hist_items"), // no history
    ];
    for (b, feature) in cases {
        assert_names(predict_typed(&model, b).expect_err(feature), feature);
    }

    // Graph-input tensors (what uie-serve receives).
    let t = tensors(n, 1);
    let from = |t: &[(String, Tensor)]| {
        RawBatch::from_tensors(model.schema(), t.to_vec())
            .map_err(RuntimeError::from)
            .and_then(|b| model.predict(&b))
    };
    assert_eq!(
        from(&t).expect("good tensors"),
        model.predict(&good).expect("good")
    );
    let mut missing = t.clone();
    missing.retain(|(k, _)| k != "genre");
    assert_names(from(&missing).expect_err("missing"), "genre");
    let mut extra = t.clone();
    extra.push(("colour".into(), Tensor::i64(vec![n], vec![0; n])));
    assert_names(from(&extra).expect_err("extra"), "colour");
    let mut dup = t.clone();
    dup.push(t[0].clone());
    assert_names(from(&dup).expect_err("duplicate"), &t[0].0);
    let mut mistyped = t.clone();
    set(
        &mut mistyped,
        "movie_id",
        Tensor::f32(vec![n], vec![1.0; n]),
    );
    assert_names(from(&mistyped).expect_err("mistyped"), "movie_id");
    let mut width = t.clone();
    set(
        &mut width,
        "dense",
        Tensor::f32(vec![n, 2], vec![1.0; 2 * n]),
    );
    assert_names(from(&width).expect_err("dense width"), "dense");
    let mut rank = t.clone();
    set(&mut rank, "hist_len", Tensor::i64(vec![n, 1], vec![0; n]));
    assert_names(from(&rank).expect_err("rank"), "hist_len");
    let mut rows = t.clone();
    set(&mut rows, "genre", Tensor::i64(vec![n - 1], vec![0; n - 1]));
    assert_names(from(&rows).expect_err("rows"), "genre");
    let mut above = t.clone();
    set(
        &mut above,
        "hist_len",
        Tensor::i64(vec![n], vec![L as i64 + 1; n]),
    );
    assert_names(from(&above).expect_err("hist_len above L"), "hist_len");
    for bad in [f32::NAN, f32::NEG_INFINITY] {
        let mut nan = t.clone();
        let mut d = t[3].1.as_f32().expect("dense").to_vec();
        d[n - 1] = bad;
        set(&mut nan, "dense", Tensor::f32(vec![n, 1], d));
        let err = from(&nan).expect_err("non-finite dense");
        assert!(err.to_string().contains("age"), "{err}");
        assert_names(err, "dense");
    }
}

#[test]
fn a_panic_inside_tract_is_an_error() {
    // No `Mod` before the Gather: index 7 of a 3-row table, which tract panics on (§8).
    let mut g = Graph::new("oob_gather");
    let idx = g
        .add_input(
            "idx",
            TensorType {
                dtype: Dtype::I64,
                shape: vec![Dim::Sym("N".into())],
            },
        )
        .expect("input");
    let table = g
        .add_initializer(
            "table",
            Tensor::f32(vec![3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        )
        .expect("table");
    let out = g
        .add_op("gather", Op::Gather { axis: 0 }, &[table, idx], "out")
        .expect("gather");
    g.add_output(out).expect("output");
    g.validate().expect("valid");
    g.infer_shapes().expect("shapes");
    let bytes = uie_compile::onnx::to_model_bytes(&g).expect("emit");
    for optimize in [false, true] {
        let engine = Engine::load_bytes(
            &bytes,
            EngineOptions {
                optimize,
                ..EngineOptions::default()
            },
        )
        .expect("load");
        let ok = engine
            .run(&[("idx", Tensor::i64(vec![2], vec![0, 2]))])
            .expect("in range runs");
        assert_eq!(ok[0].1.as_f32().expect("f32"), &[1.0, 2.0, 5.0, 6.0]);
        let err = engine
            .run(&[("idx", Tensor::i64(vec![1], vec![7]))])
            .expect_err("out of range must be an error");
        assert!(matches!(err, RuntimeError::Run(_)), "{err}");
        println!("optimize={optimize}: {err}");
        // The engine still serves after the panic, with the right values: the run state that
        // panicked is dropped, not reused (the engine keeps the states of completed runs only).
        for (idx, want) in [
            (vec![1], vec![3.0, 4.0]),
            (vec![2, 0, 1], vec![5.0, 6.0, 1.0, 2.0, 3.0, 4.0]),
        ] {
            let got = engine
                .run(&[("idx", Tensor::i64(vec![idx.len()], idx))])
                .expect("in range runs");
            assert_eq!(got[0].1.as_f32().expect("f32"), want.as_slice());
        }
    }
}

#[test]
fn eight_threads_and_a_hot_reload_match_serial_calls() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 1000;
    const DISTINCT: usize = 16;
    let tmp = tempfile::tempdir().expect("tmp");
    // The same checkpoint compiled twice: two files, identical outputs across the swap.
    let first = compiled(tmp.path(), 11, "a.onnx");
    let second = compiled(tmp.path(), 11, "b.onnx");
    let handle = ModelHandle::load(&first).expect("load");
    let batches: Vec<RawBatch> = (0..DISTINCT)
        .map(|i| batch(1 + i % 4, 100 + i as u64))
        .collect();
    let serial: Vec<Vec<f32>> = batches
        .iter()
        .map(|b| handle.predict(b).expect("serial").probs)
        .collect();
    let batches = Arc::new(batches);
    let serial = Arc::new(serial);
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (handle, batches, serial, done) = (
                handle.clone(),
                batches.clone(),
                serial.clone(),
                done.clone(),
            );
            std::thread::spawn(move || {
                let mut generations = [0usize; 2];
                for i in 0..PER_THREAD {
                    let k = (t * 7 + i) % DISTINCT;
                    let model = handle.current();
                    let generation = handle.generation() as usize;
                    let p = model.predict(&batches[k]).expect("request failed");
                    assert_eq!(p.probs, serial[k], "thread {t} request {i}");
                    generations[generation.min(1)] += 1;
                    done.fetch_add(1, Ordering::SeqCst);
                }
                generations
            })
        })
        .collect();
    // Reload in the middle of the run: a corrupt file first (must fail, the old model stays),
    // then the second model file.
    let corrupt = tmp.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"this is not an onnx file").expect("write");
    let mut spins = 0;
    while done.load(Ordering::SeqCst) < THREADS * PER_THREAD / 2 && spins < 60_000 {
        std::thread::sleep(std::time::Duration::from_millis(1));
        spins += 1;
    }
    let err = handle
        .reload(&corrupt)
        .expect_err("corrupt file must not load");
    println!("corrupt reload: {err}");
    assert_eq!(handle.generation(), 0);
    assert_eq!(handle.path().as_deref(), Some(first.as_path()));
    let missing = handle.reload(&tmp.path().join("missing.onnx"));
    assert!(missing.is_err());
    assert_eq!(handle.reload(&second).expect("reload"), 1);
    let at_reload = done.load(Ordering::SeqCst);
    let mut totals = [0usize; 2];
    for w in workers {
        let g = w.join().expect("a worker failed");
        totals[0] += g[0];
        totals[1] += g[1];
    }
    println!(
        "requests: {} before the reload, {} after (reload landed at {at_reload})",
        totals[0], totals[1]
    );
    assert_eq!(totals[0] + totals[1], THREADS * PER_THREAD);
    assert_eq!(handle.path().as_deref(), Some(second.as_path()));
    for (b, want) in batches.iter().zip(serial.iter()) {
        assert_eq!(&handle.predict(b).expect("after reload").probs, want);
    }
}

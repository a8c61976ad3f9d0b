//! The behaviour sequence and the UIE modules: the lowered graph of a tiny sequence + UIE
//! checkpoint (seeded random weights, clustered centre tables with rows that retrieve nothing and
//! a duplicated centre) under the reference evaluator and tract, plain and optimised, at several
//! batch sizes and history lengths; the debug outputs; the `uie.schema` metadata; determinism;
//! the passes; and the IR dump snapshot.

mod common;

use std::path::Path;

use common::{reference_outputs, tract_outputs};
use uie_compile::ir::{Graph, Op, TensorType};
use uie_compile::pipeline::{build_graph_with, compile_with, CompileOptions, PassOptions};
use uie_compile::{compile, onnx, pipeline};
use uie_model::Tensor;
use uie_testkit::assertions::{assert_close, assert_snapshot};
use uie_testkit::checkpoints::{checkpoint, rows, rows_with_history, uie_checkpoint};
use uie_testkit::configs::{config, TINY_PLE, TINY_UIE};

fn debug_options() -> CompileOptions {
    CompileOptions {
        debug_outputs: true,
        ..CompileOptions::default()
    }
}

#[test]
fn uie_model_matches_reference_in_tract_plain_and_optimized() {
    let ck = uie_checkpoint(42);
    let graph = pipeline::build_graph(&ck).expect("graph");
    let bytes = compile(&ck).expect("compile");
    let mut worst = 0f32;
    for (n, width, seed) in [
        (1, 1, 1),
        (1, 5, 2),
        (7, 1, 3),
        (7, 5, 4),
        (64, 1, 5),
        (64, 5, 6),
    ] {
        let batch = rows_with_history(&ck.config, n, width, seed);
        let expected = reference_outputs(&graph, &ck.config, &batch).remove(0).1;
        assert_eq!(expected.shape, vec![n, 2]);
        let p = expected.as_f32().expect("f32");
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
        for optimize in [false, true] {
            let got = tract_outputs(&bytes, optimize, &ck.config, &batch)
                .remove(0)
                .1;
            let what = format!("n={n} L={width} optimize={optimize}");
            assert_close(&what, &got, &expected);
            for (a, b) in got.as_f32().expect("f32").iter().zip(p) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    println!("tiny UIE model: largest |tract − reference| {worst:.3e}");
}

#[test]
fn uie_graph_inputs_outputs_and_schema() {
    let ck = uie_checkpoint(42);
    let s = onnx::summarize(&compile(&ck).expect("compile")).expect("summary");
    let inputs: Vec<String> = s.inputs.iter().map(|v| v.to_string()).collect();
    assert_eq!(
        inputs,
        [
            "user_id i64[N]",
            "movie_id i64[N]",
            "genre i64[N]",
            "dense f32[N,1]",
            "hist_items i64[N,L]",
            "hist_len i64[N]"
        ]
    );
    let outputs: Vec<String> = s.outputs.iter().map(|v| v.to_string()).collect();
    assert_eq!(outputs, ["probs f32[N,2]"]);
    assert_eq!(s.op_counts.get("TopK"), Some(&2));
    let schema = &s.metadata["uie.schema"];
    assert!(
        schema
            .contains(r#""sequence":{"item_field":"movie_id","inputs":["hist_items","hist_len"]}"#),
        "{schema}"
    );
    assert!(schema.starts_with(r#"{"categorical":["#), "{schema}");
    // Memory tables are initializers, never inputs.
    assert!(s
        .inputs
        .iter()
        .all(|v| !v.to_string().starts_with("memory")));
}

#[test]
fn debug_outputs_agree_and_rows_without_history_pool_to_zero() {
    let ck = uie_checkpoint(7);
    let graph = build_graph_with(&ck, &debug_options()).expect("graph");
    let bytes = compile_with(&ck, &debug_options()).expect("compile");
    let names: Vec<&str> = graph
        .outputs()
        .iter()
        .map(|&o| graph.value(o).name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "probs",
            "debug.upe.indices",
            "debug.ucse.indices",
            "debug.upe.r",
            "debug.ucse.pooled",
            "debug.e_upe",
            "debug.e_ucbe",
            "debug.e_ucse",
            "debug.upe.scores",
            "debug.ucse.scores"
        ]
    );
    let n = 30;
    let batch = rows_with_history(&ck.config, n, 5, 8);
    let want = reference_outputs(&graph, &ck.config, &batch);
    let by = |outs: &[(String, Tensor)], name: &str| -> Tensor {
        outs.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("no output {name}"))
    };
    assert_eq!(by(&want, "debug.upe.indices").shape, vec![n, 3]);
    assert_eq!(by(&want, "debug.ucse.indices").shape, vec![n, 4]);
    // hist_len = 0 → q_u = 0 → no centre kept → pooled exactly zero.
    let pooled = by(&want, "debug.ucse.pooled");
    let p = pooled.as_f32().expect("f32");
    let lens = &batch.history.as_ref().expect("history").len;
    for (r, &len) in lens.iter().enumerate() {
        if len == 0 {
            assert!(p[r * 4..(r + 1) * 4].iter().all(|&v| v == 0.0), "row {r}");
        }
    }
    // Some UPE rows retrieve nothing (r = 0) and some do.
    let r = by(&want, "debug.upe.r");
    let rv = r.as_f32().expect("f32");
    let empty = (0..n)
        .filter(|i| rv[i * 6..(i + 1) * 6].iter().all(|&v| v == 0.0))
        .count();
    println!("UPE rows that retrieve nothing: {empty} of {n}");
    assert!(
        empty > 0 && empty < n,
        "{empty} of {n} rows retrieve nothing"
    );
    for optimize in [false, true] {
        let got = tract_outputs(&bytes, optimize, &ck.config, &batch);
        assert_eq!(got.len(), want.len());
        for ((gn, gt), (wn, wt)) in got.iter().zip(&want) {
            assert_eq!(gn, wn);
            assert_close(&format!("{gn} optimize={optimize}"), gt, wt);
        }
    }
}

#[test]
fn uie_compile_is_deterministic() {
    let a = compile(&uie_checkpoint(3)).expect("a");
    let b = compile(&uie_checkpoint(3)).expect("b");
    assert_eq!(a, b);
    let c = compile_with(&uie_checkpoint(3), &debug_options()).expect("c");
    let d = compile_with(&uie_checkpoint(3), &debug_options()).expect("d");
    assert_eq!(c, d);
    assert_ne!(a, c);
}

#[test]
fn passes_leave_outputs_unchanged() {
    // The real graphs: passes on and off give the same outputs.
    for ck in [checkpoint(config(TINY_PLE), 5), uie_checkpoint(5)] {
        let off = CompileOptions {
            passes: PassOptions::none(),
            ..CompileOptions::default()
        };
        let g_on = pipeline::build_graph(&ck).expect("on");
        let g_off = build_graph_with(&ck, &off).expect("off");
        let batch = if ck.config.features.sequence.is_some() {
            rows_with_history(&ck.config, 9, 3, 1)
        } else {
            rows(&ck.config, 9, 1)
        };
        let a = reference_outputs(&g_on, &ck.config, &batch);
        let b = reference_outputs(&g_off, &ck.config, &batch);
        assert_eq!(a, b);
    }
    // A hand-made graph with a foldable node (Mul of two initializers) and a dead branch.
    let mut g = Graph::new("passes");
    let x = g
        .add_input("x", TensorType::fixed(uie_compile::ir::Dtype::F32, &[2, 3]))
        .expect("x");
    let a = g
        .add_initializer("a", Tensor::f32(vec![3], vec![1.0, 2.0, 3.0]))
        .expect("a");
    let b = g
        .add_initializer("b", Tensor::f32(vec![3], vec![0.5, -1.0, 4.0]))
        .expect("b");
    let ab = g.add_op("fold", Op::Mul, &[a, b], "ab").expect("ab");
    let y = g.add_op("use", Op::Add, &[x, ab], "y").expect("y");
    let _dead = g.add_op("dead", Op::Relu, &[x], "unused").expect("dead");
    g.add_output(y).expect("out");
    g.infer_shapes().expect("types");
    let folded = uie_compile::passes::run(g.clone(), &PassOptions::all()).expect("passes");
    assert_eq!(folded.nodes().len(), 1, "{}", folded.dump());
    assert!(folded.initializers().iter().any(|(n, _)| *n == "ab"));
    let feed = Tensor::f32(vec![2, 3], vec![1.0, -2.0, 0.5, 3.0, 0.0, -1.0]);
    let run =
        |graph: &Graph| uie_compile::eval::evaluate(graph, &[("x", feed.clone())]).expect("eval");
    assert_eq!(run(&g), run(&folded));
    let bytes = onnx::to_model_bytes(&folded).expect("emit");
    for optimize in [false, true] {
        let got = uie_compile::verify::run_engine(
            &common::engine(&bytes, optimize),
            &[("x".to_string(), feed.clone())],
            "tract",
        )
        .expect("tract");
        assert_close("folded graph", &got[0].1, &run(&g)[0].1);
    }
}

#[test]
fn uie_ir_dump_snapshot() {
    let ck = uie_checkpoint(42);
    let dump = pipeline::build_graph(&ck).expect("graph").dump();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/tiny_uie.ir.txt");
    assert_snapshot(&path, &dump);
}

#[test]
fn a_config_without_sequence_has_no_history_inputs() {
    let ck = checkpoint(config(TINY_PLE), 1);
    let s = onnx::summarize(&compile(&ck).expect("compile")).expect("summary");
    assert!(!s.metadata["uie.schema"].contains("sequence"));
    let _ = TINY_UIE;
}

#[test]
fn runtime_typed_api_takes_the_history_and_names_history_errors() {
    use uie_runtime::{Batch, InputError, Model, RuntimeError};
    let ck = uie_checkpoint(42);
    let bytes = compile(&ck).expect("compile");
    let model = Model::from_engine(common::engine(&bytes, true)).expect("model");
    let seq = model
        .schema()
        .sequence
        .as_ref()
        .expect("sequence in uie.schema");
    assert_eq!(seq.item_field, "movie_id");
    let n = 7;
    let batch = rows_with_history(&ck.config, n, 5, 4);
    let h = batch.history.clone().expect("history");
    let base = || {
        let mut b = Batch::new();
        for (name, ids) in &batch.categorical {
            b = b.ids(name, ids.clone());
        }
        b.numbers("age", batch.dense.clone())
    };
    let typed = base()
        .history(h.items.clone(), h.len.clone(), 5)
        .build(model.schema())
        .expect("build");
    let preds = model.predict(&typed).expect("predict");
    let want = common::reference_probs(&ck, &batch);
    assert_close("typed API", &Tensor::f32(vec![n, 2], preds.probs), &want);

    let err = |b: Batch| match b
        .build(model.schema())
        .map_err(RuntimeError::from)
        .and_then(|b| model.predict(&b))
    {
        Err(e) => e,
        Ok(_) => panic!("should be refused"),
    };
    let e = err(base());
    assert!(
        matches!(&e, RuntimeError::Input(InputError::BadHistory { name, .. }) if name == "hist_items"),
        "{e}"
    );
    let e = err(base().history(h.items.clone(), vec![0; n - 1], 5));
    assert!(e.to_string().contains("hist_len"), "{e}");
    let e = err(base().history(h.items[..10].to_vec(), h.len.clone(), 5));
    assert!(e.to_string().contains("hist_items"), "{e}");
    let mut bad = h.len.clone();
    bad[3] = -1;
    let e = err(base().history(h.items.clone(), bad.clone(), 5));
    assert!(
        e.to_string().contains("hist_len") && e.to_string().contains("row 3"),
        "{e}"
    );
    bad[3] = 6;
    let e = err(base().history(h.items.clone(), bad, 5));
    assert!(e.to_string().contains("hist_len"), "{e}");

    // A model without a sequence refuses a history.
    let plain = checkpoint(config(TINY_PLE), 1);
    let m2 = Model::from_engine(common::engine(&compile(&plain).expect("c"), true)).expect("m");
    assert!(m2.schema().sequence.is_none());
    let b = rows(&plain.config, 2, 1);
    let mut req = Batch::new();
    for (name, ids) in &b.categorical {
        req = req.ids(name, ids.clone());
    }
    let dense: Vec<f32> = b.dense.clone();
    req = req
        .numbers("age", dense.iter().step_by(2).copied().collect())
        .numbers("income", dense.iter().skip(1).step_by(2).copied().collect())
        .history(vec![1, 2], vec![1, 1], 1);
    let e = match m2.predict(&req.build(m2.schema()).expect("build")) {
        Err(e) => e,
        Ok(_) => panic!("history refused"),
    };
    assert!(
        matches!(&e, RuntimeError::Input(InputError::BadHistory { name, .. }) if name == "hist_items"),
        "{e}"
    );
}

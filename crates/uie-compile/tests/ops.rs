//! Data-driven op tests: each row builds a one-node IR graph, emits it, runs it in tract (plain
//! and optimised) and compares with the reference evaluator.

mod common;

use common::{assert_close, engine, Rng};
use uie_compile::eval::evaluate;
use uie_compile::ir::{Graph, Op, TensorType};
use uie_compile::onnx::to_model_bytes;
use uie_compile::verify::run_engine;
use uie_model::Tensor;

/// An operand: fed at run time, or stored as an initializer.
enum In {
    Feed(Tensor),
    Const(Tensor),
}
use In::{Const, Feed};

fn f32t(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::f32(shape.to_vec(), v.to_vec())
}
fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::i64(shape.to_vec(), v.to_vec())
}
fn rand(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
    let mut r = Rng::new(seed);
    let n = shape.iter().product();
    Tensor::f32(shape.to_vec(), (0..n).map(|_| r.uniform(lo, hi)).collect())
}

/// Builds the one-node graph, checks reference vs tract plain and optimised; returns the output.
fn check(op: Op, inputs: Vec<In>) -> Tensor {
    let mut g = Graph::new("op_test");
    let mut ids = Vec::new();
    let mut feeds = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        match input {
            Feed(t) => {
                let name = format!("in{i}");
                ids.push(g.add_input(&name, TensorType::of(t)).expect("input"));
                feeds.push((name, t.clone()));
            }
            Const(t) => ids.push(
                g.add_initializer(&format!("c{i}"), t.clone())
                    .expect("init"),
            ),
        }
    }
    let out = g.add_op("test", op.clone(), &ids, "out").expect("node");
    g.add_output(out).expect("output");
    g.infer_shapes().expect("shape inference");
    let ty = g.type_of(out).expect("typed").clone();
    let named: Vec<(&str, Tensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let expected = evaluate(&g, &named).expect("reference").remove(0).1;
    assert_eq!(
        TensorType::of(&expected),
        ty,
        "{op}: shape rule vs reference evaluator"
    );
    let bytes = to_model_bytes(&g).expect("emit");
    for optimize in [false, true] {
        let outs = run_engine(&engine(&bytes, optimize), &feeds, "tract").expect("tract runs");
        assert_close(&format!("{op} optimize={optimize}"), &outs[0].1, &expected);
    }
    expected
}

#[test]
fn mod_follows_python_rule_for_negative_and_huge_ids() {
    let ids = [
        0,
        6,
        7,
        -1,
        -7,
        -8,
        (1 << 40) + 3,
        -(1 << 40) - 3,
        (1 << 62) + 12345,
        i64::MAX,
        i64::MIN + 1,
        -(1 << 41) - 5,
    ];
    let out = check(
        Op::Mod,
        vec![Feed(i64t(&[12], &ids)), Const(i64t(&[], &[7]))],
    );
    let want: Vec<i64> = ids.iter().map(|i| i.rem_euclid(7)).collect();
    assert_eq!(out.as_i64().expect("i64"), want.as_slice());
    check(
        Op::Mod,
        vec![Feed(i64t(&[12], &ids)), Const(i64t(&[], &[1024]))],
    );
    check(
        Op::Mod,
        vec![
            Feed(i64t(&[3], &[5, -5, 1 << 45])),
            Const(i64t(&[1], &[1 << 31])),
        ],
    );
}

#[test]
fn gather_rows_of_a_table() {
    let table = rand(&[5, 3], 1, -1.0, 1.0);
    check(
        Op::Gather { axis: 0 },
        vec![Const(table.clone()), Feed(i64t(&[6], &[0, 4, 2, 2, 1, 3]))],
    );
    check(
        Op::Gather { axis: 0 },
        vec![Feed(table), Feed(i64t(&[2], &[4, 0]))],
    );
    check(
        Op::Gather { axis: 1 },
        vec![
            Feed(rand(&[2, 4], 2, -1.0, 1.0)),
            Const(i64t(&[3], &[3, 0, 1])),
        ],
    );
}

#[test]
fn matmul() {
    check(
        Op::MatMul,
        vec![
            Feed(rand(&[3, 4], 3, -2.0, 2.0)),
            Const(rand(&[4, 2], 4, -2.0, 2.0)),
        ],
    );
    check(
        Op::MatMul,
        vec![
            Feed(rand(&[1, 5], 5, -2.0, 2.0)),
            Feed(rand(&[5, 1], 6, -2.0, 2.0)),
        ],
    );
}

#[test]
fn elementwise_binary_with_broadcasting() {
    let x = || Feed(rand(&[3, 4], 7, -2.0, 2.0));
    check(Op::Add, vec![x(), Const(rand(&[4], 8, -1.0, 1.0))]);
    check(Op::Add, vec![x(), Feed(rand(&[3, 4], 9, -1.0, 1.0))]);
    check(Op::Sub, vec![x(), Const(rand(&[4], 10, -1.0, 1.0))]);
    check(Op::Div, vec![x(), Const(rand(&[4], 11, 0.5, 2.0))]);
    check(
        Op::Mul,
        vec![
            Feed(rand(&[2, 3, 1], 12, -1.0, 1.0)),
            Feed(rand(&[2, 3, 4], 13, -1.0, 1.0)),
        ],
    );
    check(
        Op::Mul,
        vec![
            Feed(rand(&[2, 1, 4], 14, -1.0, 1.0)),
            Const(rand(&[3, 1], 15, -1.0, 1.0)),
        ],
    );
}

#[test]
fn unary_activations() {
    let v = [-30.0, -5.0, -1.0, -0.0, 0.0, 0.5, 3.0, 30.0];
    let out = check(Op::Relu, vec![Feed(f32t(&[2, 4], &v))]);
    assert_eq!(out.as_f32().expect("f32")[..3], [0.0, 0.0, 0.0]);
    check(Op::Sigmoid, vec![Feed(f32t(&[2, 4], &v))]);
    check(Op::Sigmoid, vec![Feed(rand(&[4, 5], 16, -8.0, 8.0))]);
}

#[test]
fn softmax_along_one_axis() {
    check(
        Op::Softmax { axis: 1 },
        vec![Feed(rand(&[3, 4], 17, -5.0, 5.0))],
    );
    check(
        Op::Softmax { axis: -1 },
        vec![Feed(rand(&[2, 3, 2], 18, -5.0, 5.0))],
    );
    check(
        Op::Softmax { axis: 1 },
        vec![Feed(f32t(&[1, 3], &[100.0, 100.0, -100.0]))],
    );
}

#[test]
fn concat() {
    check(
        Op::Concat { axis: 1 },
        vec![
            Feed(rand(&[2, 3], 19, -1.0, 1.0)),
            Const(rand(&[2, 2], 20, -1.0, 1.0)),
        ],
    );
    check(
        Op::Concat { axis: 1 },
        vec![
            Feed(rand(&[2, 1, 3], 21, -1.0, 1.0)),
            Feed(rand(&[2, 2, 3], 22, -1.0, 1.0)),
            Feed(rand(&[2, 1, 3], 23, -1.0, 1.0)),
        ],
    );
    check(
        Op::Concat { axis: 0 },
        vec![Feed(rand(&[1, 2], 24, -1.0, 1.0))],
    );
}

#[test]
fn unsqueeze() {
    check(
        Op::Unsqueeze,
        vec![Feed(rand(&[3, 4], 25, -1.0, 1.0)), Const(i64t(&[1], &[1]))],
    );
    let out = check(
        Op::Unsqueeze,
        vec![Feed(rand(&[3, 4], 26, -1.0, 1.0)), Const(i64t(&[1], &[2]))],
    );
    assert_eq!(out.shape, vec![3, 4, 1]);
    check(
        Op::Unsqueeze,
        vec![Feed(i64t(&[2], &[5, -5])), Const(i64t(&[2], &[0, -1]))],
    );
}

#[test]
fn reduce_sum() {
    let out = check(
        Op::ReduceSum { keepdims: false },
        vec![
            Feed(rand(&[2, 3, 4], 27, -1.0, 1.0)),
            Const(i64t(&[1], &[1])),
        ],
    );
    assert_eq!(out.shape, vec![2, 4]);
    check(
        Op::ReduceSum { keepdims: true },
        vec![
            Feed(rand(&[2, 3, 4], 28, -1.0, 1.0)),
            Const(i64t(&[1], &[-1])),
        ],
    );
    check(
        Op::ReduceSum { keepdims: false },
        vec![
            Feed(rand(&[2, 3, 4], 29, -1.0, 1.0)),
            Const(i64t(&[2], &[0, 2])),
        ],
    );
}

#[test]
fn bad_operands_are_errors_naming_the_node() {
    let mut g = Graph::new("bad");
    let a = g
        .add_input("a", TensorType::of(&rand(&[2, 3], 1, 0.0, 1.0)))
        .expect("a");
    let b = g
        .add_initializer("b", rand(&[4, 2], 2, 0.0, 1.0))
        .expect("b");
    let out = g.add_op("layer", Op::MatMul, &[a, b], "y").expect("node");
    g.add_output(out).expect("output");
    let e = g.infer_shapes().expect_err("3 vs 4");
    assert!(e.to_string().contains("layer/MatMul"), "{e}");

    let mut g = Graph::new("bad");
    let a = g
        .add_input("a", TensorType::of(&i64t(&[2], &[1, 2])))
        .expect("a");
    let zero = g.add_initializer("zero", i64t(&[], &[0])).expect("zero");
    let out = g.add_op("hash", Op::Mod, &[a, zero], "row").expect("node");
    g.add_output(out).expect("output");
    g.infer_shapes().expect("types are fine");
    let e = evaluate(&g, &[("a", i64t(&[2], &[1, 2]))]).expect_err("division by zero");
    assert!(e.to_string().contains("hash/Mod"), "{e}");
    let e = evaluate(&g, &[("a", f32t(&[2], &[1.0, 2.0]))]).expect_err("wrong dtype");
    assert!(e.to_string().contains("input a"), "{e}");

    let mut g = Graph::new("dup");
    g.add_input("a", TensorType::of(&i64t(&[1], &[1])))
        .expect("a");
    assert!(
        g.add_initializer("a", i64t(&[1], &[1])).is_err(),
        "duplicate names are refused"
    );
}

/// Adding an `Op` variant breaks this match: add a data row for it above, then list it here.
#[test]
fn every_op_has_a_row() {
    let covered = |op: &Op| match op {
        Op::Mod
        | Op::Gather { .. }
        | Op::MatMul
        | Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Relu
        | Op::Sigmoid
        | Op::Softmax { .. }
        | Op::Concat { .. }
        | Op::Unsqueeze
        | Op::ReduceSum { .. } => true,
    };
    assert!(covered(&Op::MatMul));
    // Every op is within the target opset.
    for op in [
        Op::Mod,
        Op::Gather { axis: 0 },
        Op::MatMul,
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Div,
        Op::Relu,
        Op::Sigmoid,
        Op::Softmax { axis: 1 },
        Op::Concat { axis: 1 },
        Op::Unsqueeze,
        Op::ReduceSum { keepdims: false },
    ] {
        assert!(op.min_opset() <= uie_compile::onnx::version::OPSET, "{op}");
    }
}

//! Data-driven op tests over `uie_op_cases::op_cases()`: each case (a one-node IR
//! graph with its feeds) is emitted, run in tract (plain and optimised) and compared with the
//! reference evaluator (exact for int64, the §7 rule for f32). Specific expectations (Mod's Python
//! rule, Relu's zeros, output shapes) and the error tests are separate tests below.

mod common;

use common::engine;
use uie_compile::eval::evaluate;
use uie_compile::ir::{Graph, Op, TensorType};
use uie_compile::onnx::to_model_bytes;
use uie_compile::verify::run_engine;
use uie_model::Tensor;
use uie_op_cases::{op_cases, variant_index, OpCase, VARIANT_COUNT};
use uie_testkit::assertions::compare;

/// The reference output of a case, after checking it against the inferred output type.
fn reference(case: &OpCase) -> Result<Tensor, String> {
    let named: Vec<(&str, Tensor)> = case
        .feeds
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    let mut outs = evaluate(&case.graph, &named).map_err(|e| format!("reference: {e}"))?;
    let (_, expected) = outs.pop().ok_or("reference: no output")?;
    let out = *case.graph.outputs().first().ok_or("graph has no output")?;
    let ty = case.graph.type_of(out).map_err(|e| e.to_string())?;
    if TensorType::of(&expected) != *ty {
        return Err(format!(
            "shape rule says {ty}, reference evaluator gives {}",
            TensorType::of(&expected)
        ));
    }
    Ok(expected)
}

/// Emits a case, runs it in tract plain and optimised and compares each with the reference;
/// returns the reference output and the largest difference seen.
fn run_case(case: &OpCase) -> Result<(Tensor, f32), String> {
    let expected = reference(case)?;
    let bytes = to_model_bytes(&case.graph).map_err(|e| format!("emit: {e}"))?;
    let mut worst = 0.0f32;
    for optimize in [false, true] {
        let label = if optimize {
            "tract optimised"
        } else {
            "tract plain"
        };
        let outs =
            run_engine(&engine(&bytes, optimize), &case.feeds, label).map_err(|e| e.to_string())?;
        let (_, got) = outs.first().ok_or(format!("{label}: no output"))?;
        let d = compare(got, &expected).map_err(|e| format!("{label}: {e}"))?;
        worst = worst.max(d);
    }
    Ok((expected, worst))
}

fn find(name: &str) -> OpCase {
    op_cases()
        .expect("op cases")
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no op case named {name}"))
}

/// Runs one named case through tract and returns its (checked) reference output.
fn checked(name: &str) -> Tensor {
    let case = find(name);
    run_case(&case)
        .unwrap_or_else(|e| panic!("op case {name}: {e}"))
        .0
}

#[test]
fn every_op_case_matches_the_reference_in_tract() {
    let cases = op_cases().expect("op cases");
    let mut failures = Vec::new();
    let mut worst = (0.0f32, String::new());
    for case in &cases {
        match run_case(case) {
            Ok((_, d)) if d > worst.0 => worst = (d, case.name.clone()),
            Ok(_) => {}
            Err(e) => failures.push(format!("op case {}: {e}", case.name)),
        }
    }
    println!(
        "{} op cases in tract plain and optimised; largest |diff| {:.3e} ({})",
        cases.len(),
        worst.0,
        worst.1
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mod_follows_python_rule_for_negative_and_huge_ids() {
    for (name, divisor) in [
        ("mod/huge_and_negative_ids_by_7", 7),
        ("mod/huge_and_negative_ids_by_1024", 1024),
    ] {
        let ids = find(name).feeds[0].1.as_i64().expect("i64 ids").to_vec();
        assert!(
            ids.iter().any(|&i| i < 0) && ids.iter().any(|&i| i >= 1 << 40),
            "{name}: the ids must include negative and huge ones: {ids:?}"
        );
        let out = checked(name);
        let want: Vec<i64> = ids.iter().map(|i| i.rem_euclid(divisor)).collect();
        assert_eq!(out.as_i64().expect("i64"), want.as_slice(), "{name}");
    }
    let out = checked("mod/divisor_2pow31_rank1");
    assert_eq!(
        out.as_i64().expect("i64"),
        &[5, (1 << 31) - 5, 0],
        "mod/divisor_2pow31_rank1"
    );
    let out = checked("mod/int64_extremes_by_11");
    let want: Vec<i64> = [i64::MIN, i64::MAX, i64::MIN + 1, -1]
        .iter()
        .map(|i| i.rem_euclid(11))
        .collect();
    assert_eq!(out.as_i64().expect("i64"), want.as_slice());
    assert!(want.iter().all(|&r| (0..11).contains(&r)));
}

#[test]
fn relu_zeroes_negatives_and_signed_zeros() {
    let out = checked("relu/edge_values");
    assert_eq!(out.as_f32().expect("f32")[..5], [0.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(out.as_f32().expect("f32")[5..], [0.5, 3.0, 30.0]);
}

#[test]
fn output_shapes_of_unsqueeze_and_reduce_sum() {
    assert_eq!(checked("unsqueeze/trailing_axis").shape, vec![3, 4, 1]);
    assert_eq!(
        checked("unsqueeze/i64_two_axes_negative").shape,
        vec![1, 2, 1]
    );
    assert_eq!(checked("reduce_sum/axis1_drop").shape, vec![2, 4]);
    assert_eq!(checked("reduce_sum/last_axis_keep").shape, vec![2, 3, 1]);
    assert_eq!(checked("reduce_sum/two_axes_drop").shape, vec![3]);
}

#[test]
fn softmax_rows_sum_to_one() {
    let out = checked("softmax/large_logits");
    let v = out.as_f32().expect("f32");
    assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{v:?}");
    assert!((v[0] - 0.5).abs() < 1e-6 && v[2] < 1e-30, "{v:?}");
}

#[test]
fn bad_operands_are_errors_naming_the_node() {
    let f32t = |shape: &[usize]| Tensor::f32(shape.to_vec(), vec![0.5; shape.iter().product()]);
    let i64t = |shape: &[usize], v: &[i64]| Tensor::i64(shape.to_vec(), v.to_vec());

    let mut g = Graph::new("bad");
    let a = g.add_input("a", TensorType::of(&f32t(&[2, 3]))).expect("a");
    let b = g.add_initializer("b", f32t(&[4, 2])).expect("b");
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
    let e = evaluate(&g, &[("a", f32t(&[2]))]).expect_err("wrong dtype");
    assert!(e.to_string().contains("input a"), "{e}");

    let mut g = Graph::new("dup");
    g.add_input("a", TensorType::of(&i64t(&[1], &[1])))
        .expect("a");
    assert!(
        g.add_initializer("a", i64t(&[1], &[1])).is_err(),
        "duplicate names are refused"
    );
}

/// `variant_index` is an exhaustive match over `Op` (a new variant does not compile until it is
/// listed); here every variant must also have a case, and every case's op be within the opset.
#[test]
fn every_op_has_a_case_within_the_opset() {
    let cases = op_cases().expect("op cases");
    let mut covered = [false; VARIANT_COUNT];
    for case in &cases {
        let node = &case.graph.nodes()[0];
        covered[variant_index(&node.op)] = true;
        assert!(
            node.op.min_opset() <= uie_compile::onnx::version::OPSET,
            "op case {}: {} needs opset {}",
            case.name,
            node.op,
            node.op.min_opset()
        );
    }
    assert!(
        covered.iter().all(|&c| c),
        "variants without a case: {covered:?}"
    );
}

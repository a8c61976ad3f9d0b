//! Data-driven op cases of uie-compile's IR, one-node graphs with their feeds; run by the
//! compiler's op tests against tract and by the end-to-end ONNX Runtime checks.
//!
//! Each case is one node of one [`Op`] whose operands are either graph inputs (fed at run time,
//! named `in<i>`) or initializers (named `c<i>`); its single graph output is `out`. Two shapes
//! need more: a multi-output op (`TopK`) exports one of its outputs as `out` (one case per
//! output), and an op with a bool result (`Greater`, `Less`) is followed by a `Cast` to f32, since
//! bool values never cross the graph boundary. Shapes are inferred when the case is built, so a
//! case whose shape rule fails is an error of [`op_cases`]. The data is deterministic: fixed
//! values chosen for the edge cases (negative ids, ids ≥ 2^40, the int64 extremes, large logits)
//! and seeded pseudo-random values from [`uie_testkit::Rng`] elsewhere. Outputs are compared with
//! [`uie_testkit::assertions::compare`].
//!
//! [`variant_index`] is an exhaustive `match` over [`Op`]: a new variant does not compile until it
//! is listed there, and [`op_cases`] refuses to return unless every variant has a case.

use uie_compile::error::CompileError;
use uie_compile::ir::{Dtype, Graph, TensorType, ValueId};
use uie_compile::ops::Op;
use uie_model::Tensor;
use uie_testkit::Rng;

/// One op case: a one-node graph (shapes inferred) and the tensors to feed its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct OpCase {
    /// Unique name, `<op>/<what the row exercises>`, e.g. `mod/huge_and_negative_ids_by_7`.
    pub name: String,
    /// The graph: inputs `in<i>`, initializers `c<i>`, one node, one output `out`.
    pub graph: Graph,
    /// One tensor per graph input, by name, in input order.
    pub feeds: Vec<(String, Tensor)>,
}

/// Number of [`Op`] variants (the range of [`variant_index`]).
pub const VARIANT_COUNT: usize = 19;

/// Position of an op's variant in the declaration order of [`Op`], in `0..VARIANT_COUNT`.
///
/// Exhaustive on purpose: adding a variant to [`Op`] breaks this `match`; list the variant here,
/// raise [`VARIANT_COUNT`] and add its rows to [`op_cases`].
pub fn variant_index(op: &Op) -> usize {
    match op {
        Op::Mod => 0,
        Op::Gather { .. } => 1,
        Op::MatMul => 2,
        Op::Add => 3,
        Op::Sub => 4,
        Op::Mul => 5,
        Op::Div => 6,
        Op::Relu => 7,
        Op::Sigmoid => 8,
        Op::Softmax { .. } => 9,
        Op::Concat { .. } => 10,
        Op::Unsqueeze => 11,
        Op::ReduceSum { .. } => 12,
        Op::TopK => 13,
        Op::Greater => 14,
        Op::Less => 15,
        Op::Cast { .. } => 16,
        Op::Max => 17,
        Op::CumSum { .. } => 18,
    }
}

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

/// `shape`-sized f32 tensor, uniform in `[lo, hi)` from `Rng::new(seed)`.
fn rand(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
    let mut r = Rng::new(seed);
    let n = shape.iter().product();
    Tensor::f32(shape.to_vec(), (0..n).map(|_| r.uniform(lo, hi)).collect())
}

/// Builds one case: the node `case/<OpType>` over `inputs`, output `out`, shapes inferred.
fn case(name: &str, op: Op, inputs: Vec<In>) -> Result<OpCase, CompileError> {
    let mut graph = Graph::new(format!("op_case_{}", name.replace('/', "_")));
    let (ids, feeds) = operands(&mut graph, inputs)?;
    let out = graph.add_op("case", op, &ids, "out")?;
    graph.add_output(out)?;
    graph.infer_shapes()?;
    Ok(OpCase {
        name: name.to_string(),
        graph,
        feeds,
    })
}

/// Operand ids and the feeds of a case.
type Operands = (Vec<ValueId>, Vec<(String, Tensor)>);

/// Builds the operands of a case into `graph`, returning their ids and the feeds.
fn operands(graph: &mut Graph, inputs: Vec<In>) -> Result<Operands, CompileError> {
    let mut ids = Vec::new();
    let mut feeds = Vec::new();
    for (i, input) in inputs.into_iter().enumerate() {
        match input {
            Feed(t) => {
                let input_name = format!("in{i}");
                ids.push(graph.add_input(&input_name, TensorType::of(&t))?);
                feeds.push((input_name, t));
            }
            Const(t) => ids.push(graph.add_initializer(&format!("c{i}"), t)?),
        }
    }
    Ok((ids, feeds))
}

/// A case of a two-output op: output `export` of the node is the graph output `out`, the other
/// is named `other` and left unused.
fn case_output(name: &str, op: Op, inputs: Vec<In>, export: usize) -> Result<OpCase, CompileError> {
    let mut graph = Graph::new(format!("op_case_{}", name.replace('/', "_")));
    let (ids, feeds) = operands(&mut graph, inputs)?;
    let names = if export == 0 {
        ["out", "other"]
    } else {
        ["other", "out"]
    };
    let op_type = op.op_type();
    let outs = graph.add_node(&format!("case/{op_type}"), op, &ids, &names)?;
    let out = *outs
        .get(export)
        .ok_or_else(|| CompileError::InvalidGraph(format!("{name}: no output #{export}")))?;
    graph.add_output(out)?;
    graph.infer_shapes()?;
    Ok(OpCase {
        name: name.to_string(),
        graph,
        feeds,
    })
}

/// A case of a bool-valued op followed by `Cast` to f32 (output `out`).
fn case_cast(name: &str, op: Op, inputs: Vec<In>) -> Result<OpCase, CompileError> {
    let mut graph = Graph::new(format!("op_case_{}", name.replace('/', "_")));
    let (ids, feeds) = operands(&mut graph, inputs)?;
    let flag = graph.add_op("case", op, &ids, "flag")?;
    let out = graph.add_op("case", Op::Cast { to: Dtype::F32 }, &[flag], "out")?;
    graph.add_output(out)?;
    graph.infer_shapes()?;
    Ok(OpCase {
        name: name.to_string(),
        graph,
        feeds,
    })
}

/// The ids of the Mod cases: small, negative, ≥ 2^40, ≥ 2^62 and near the int64 extremes.
pub const MOD_IDS: [i64; 12] = [
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

/// Every op case, in a fixed order; at least one per [`Op`] variant.
///
/// Fails if a case's graph is malformed or its shape rule fails, or if some variant of [`Op`] has
/// no case.
pub fn op_cases() -> Result<Vec<OpCase>, CompileError> {
    let x = || Feed(rand(&[3, 4], 7, -2.0, 2.0));
    let acts = [-30.0, -5.0, -1.0, -0.0, 0.0, 0.5, 3.0, 30.0];
    let table = rand(&[5, 3], 1, -1.0, 1.0);
    let cases = vec![
        // Mod: the Python rule (result has the sign of the divisor), on ids ONNX must not wrap.
        case(
            "mod/huge_and_negative_ids_by_7",
            Op::Mod,
            vec![Feed(i64t(&[12], &MOD_IDS)), Const(i64t(&[], &[7]))],
        )?,
        case(
            "mod/huge_and_negative_ids_by_1024",
            Op::Mod,
            vec![Feed(i64t(&[12], &MOD_IDS)), Const(i64t(&[], &[1024]))],
        )?,
        case(
            "mod/divisor_2pow31_rank1",
            Op::Mod,
            vec![
                Feed(i64t(&[3], &[5, -5, 1 << 45])),
                Const(i64t(&[1], &[1 << 31])),
            ],
        )?,
        case(
            "mod/int64_extremes_by_11",
            Op::Mod,
            vec![
                Feed(i64t(&[4], &[i64::MIN, i64::MAX, i64::MIN + 1, -1])),
                Const(i64t(&[], &[11])),
            ],
        )?,
        // Gather: rows of a constant or fed table, and columns (axis 1).
        case(
            "gather/axis0_const_table",
            Op::Gather { axis: 0 },
            vec![Const(table.clone()), Feed(i64t(&[6], &[0, 4, 2, 2, 1, 3]))],
        )?,
        case(
            "gather/axis0_fed_table",
            Op::Gather { axis: 0 },
            vec![Feed(table), Feed(i64t(&[2], &[4, 0]))],
        )?,
        case(
            "gather/axis1_const_indices",
            Op::Gather { axis: 1 },
            vec![
                Feed(rand(&[2, 4], 2, -1.0, 1.0)),
                Const(i64t(&[3], &[3, 0, 1])),
            ],
        )?,
        // MatMul.
        case(
            "matmul/3x4_by_const_4x2",
            Op::MatMul,
            vec![
                Feed(rand(&[3, 4], 3, -2.0, 2.0)),
                Const(rand(&[4, 2], 4, -2.0, 2.0)),
            ],
        )?,
        case(
            "matmul/1x5_by_fed_5x1",
            Op::MatMul,
            vec![
                Feed(rand(&[1, 5], 5, -2.0, 2.0)),
                Feed(rand(&[5, 1], 6, -2.0, 2.0)),
            ],
        )?,
        case(
            "matmul/batched_2x1x5_by_fed_2x5x3",
            Op::MatMul,
            vec![
                Feed(rand(&[2, 1, 5], 22, -2.0, 2.0)),
                Feed(rand(&[2, 5, 3], 23, -2.0, 2.0)),
            ],
        )?,
        case(
            "matmul/batched_3x4x2_by_fed_3x2x1",
            Op::MatMul,
            vec![
                Feed(rand(&[3, 4, 2], 24, -2.0, 2.0)),
                Feed(rand(&[3, 2, 1], 25, -2.0, 2.0)),
            ],
        )?,
        // Element-wise binary ops with broadcasting.
        case(
            "add/broadcast_const_row",
            Op::Add,
            vec![x(), Const(rand(&[4], 8, -1.0, 1.0))],
        )?,
        case(
            "add/same_shape_fed",
            Op::Add,
            vec![x(), Feed(rand(&[3, 4], 9, -1.0, 1.0))],
        )?,
        case(
            "sub/broadcast_const_row",
            Op::Sub,
            vec![x(), Const(rand(&[4], 10, -1.0, 1.0))],
        )?,
        case(
            "div/broadcast_const_row",
            Op::Div,
            vec![x(), Const(rand(&[4], 11, 0.5, 2.0))],
        )?,
        case(
            "mul/broadcast_last_axis_fed",
            Op::Mul,
            vec![
                Feed(rand(&[2, 3, 1], 12, -1.0, 1.0)),
                Feed(rand(&[2, 3, 4], 13, -1.0, 1.0)),
            ],
        )?,
        case(
            "mul/broadcast_both_ways_const",
            Op::Mul,
            vec![
                Feed(rand(&[2, 1, 4], 14, -1.0, 1.0)),
                Const(rand(&[3, 1], 15, -1.0, 1.0)),
            ],
        )?,
        // Unary activations, on signed zeros and saturating values.
        case(
            "relu/edge_values",
            Op::Relu,
            vec![Feed(f32t(&[2, 4], &acts))],
        )?,
        case(
            "sigmoid/edge_values",
            Op::Sigmoid,
            vec![Feed(f32t(&[2, 4], &acts))],
        )?,
        case(
            "sigmoid/random",
            Op::Sigmoid,
            vec![Feed(rand(&[4, 5], 16, -8.0, 8.0))],
        )?,
        // Softmax along one axis.
        case(
            "softmax/axis1",
            Op::Softmax { axis: 1 },
            vec![Feed(rand(&[3, 4], 17, -5.0, 5.0))],
        )?,
        case(
            "softmax/axis_minus1_rank3",
            Op::Softmax { axis: -1 },
            vec![Feed(rand(&[2, 3, 2], 18, -5.0, 5.0))],
        )?,
        case(
            "softmax/large_logits",
            Op::Softmax { axis: 1 },
            vec![Feed(f32t(&[1, 3], &[100.0, 100.0, -100.0]))],
        )?,
        // Concat.
        case(
            "concat/axis1_fed_and_const",
            Op::Concat { axis: 1 },
            vec![
                Feed(rand(&[2, 3], 19, -1.0, 1.0)),
                Const(rand(&[2, 2], 20, -1.0, 1.0)),
            ],
        )?,
        case(
            "concat/axis1_three_rank3",
            Op::Concat { axis: 1 },
            vec![
                Feed(rand(&[2, 1, 3], 21, -1.0, 1.0)),
                Feed(rand(&[2, 2, 3], 22, -1.0, 1.0)),
                Feed(rand(&[2, 1, 3], 23, -1.0, 1.0)),
            ],
        )?,
        case(
            "concat/single_input",
            Op::Concat { axis: 0 },
            vec![Feed(rand(&[1, 2], 24, -1.0, 1.0))],
        )?,
        // Unsqueeze.
        case(
            "unsqueeze/axis1",
            Op::Unsqueeze,
            vec![Feed(rand(&[3, 4], 25, -1.0, 1.0)), Const(i64t(&[1], &[1]))],
        )?,
        case(
            "unsqueeze/trailing_axis",
            Op::Unsqueeze,
            vec![Feed(rand(&[3, 4], 26, -1.0, 1.0)), Const(i64t(&[1], &[2]))],
        )?,
        case(
            "unsqueeze/i64_two_axes_negative",
            Op::Unsqueeze,
            vec![Feed(i64t(&[2], &[5, -5])), Const(i64t(&[2], &[0, -1]))],
        )?,
        // ReduceSum.
        case(
            "reduce_sum/axis1_drop",
            Op::ReduceSum { keepdims: false },
            vec![
                Feed(rand(&[2, 3, 4], 27, -1.0, 1.0)),
                Const(i64t(&[1], &[1])),
            ],
        )?,
        case(
            "reduce_sum/last_axis_keep",
            Op::ReduceSum { keepdims: true },
            vec![
                Feed(rand(&[2, 3, 4], 28, -1.0, 1.0)),
                Const(i64t(&[1], &[-1])),
            ],
        )?,
        case(
            "reduce_sum/two_axes_drop",
            Op::ReduceSum { keepdims: false },
            vec![
                Feed(rand(&[2, 3, 4], 29, -1.0, 1.0)),
                Const(i64t(&[2], &[0, 2])),
            ],
        )?,
    ];
    let mut cases = cases;
    cases.extend(uie_cases()?);
    let mut covered = [false; VARIANT_COUNT];
    for c in &cases {
        for node in c.graph.nodes() {
            if let Some(slot) = covered.get_mut(variant_index(&node.op)) {
                *slot = true;
            }
        }
    }
    if let Some(missing) = covered.iter().position(|&c| !c) {
        return Err(CompileError::InvalidGraph(format!(
            "op cases: no case for Op variant #{missing} (see uie_op_cases::variant_index)"
        )));
    }
    Ok(cases)
}

/// Scores with exact ties (0.5 at columns 1, 3, 4; −0.25 at 0 and 5) and non-positive rows.
const TIED_SCORES: [f32; 12] = [
    -0.25, 0.5, 0.125, 0.5, 0.5, -0.25, //
    0.0, -1.0, -0.0, -2.0, 0.0, -1.0,
];

/// The cases of the ops the sequence and UIE lowering adds (and the shapes it uses).
fn uie_cases() -> Result<Vec<OpCase>, CompileError> {
    let k = |v: i64| Const(i64t(&[1], &[v]));
    let positions: Vec<f32> = (0..12).map(|i| (i % 4) as f32).collect();
    Ok(vec![
        // TopK: ties toward the lower index, non-positive rows, K = C, rank 3.
        case_output(
            "topk/values_with_ties",
            Op::TopK,
            vec![Feed(f32t(&[2, 6], &TIED_SCORES)), k(3)],
            0,
        )?,
        case_output(
            "topk/indices_with_ties_lower_first",
            Op::TopK,
            vec![Feed(f32t(&[2, 6], &TIED_SCORES)), k(3)],
            1,
        )?,
        case_output(
            "topk/indices_k_equals_axis",
            Op::TopK,
            vec![Feed(f32t(&[2, 6], &TIED_SCORES)), k(6)],
            1,
        )?,
        case_output(
            "topk/indices_random_rank3",
            Op::TopK,
            vec![Feed(rand(&[2, 3, 7], 30, -1.0, 1.0)), k(2)],
            1,
        )?,
        case_output(
            "topk/values_random_k1",
            Op::TopK,
            vec![Feed(rand(&[5, 9], 31, -1.0, 1.0)), k(1)],
            0,
        )?,
        // Greater / Less, cast to f32: keep = s > 0 (signed zeros), j < hist_len.
        case_cast(
            "greater/f32_vs_zero_cast_f32",
            Op::Greater,
            vec![Feed(f32t(&[2, 6], &TIED_SCORES)), Const(f32t(&[], &[0.0]))],
        )?,
        case_cast(
            "greater/i64_broadcast_cast_f32",
            Op::Greater,
            vec![
                Feed(i64t(&[2, 3], &[5, -1, 0, 7, i64::MAX, i64::MIN])),
                Feed(i64t(&[2, 1], &[0, 7])),
            ],
        )?,
        case_cast(
            "less/positions_vs_len_f32",
            Op::Less,
            vec![
                Feed(f32t(&[3, 4], &positions)),
                Feed(f32t(&[3, 1], &[0.0, 2.0, 4.0])),
            ],
        )?,
        case_cast(
            "less/i64_positions_vs_len",
            Op::Less,
            vec![
                Feed(i64t(&[2, 3], &[0, 1, 2, 0, 1, 2])),
                Feed(i64t(&[2, 1], &[1, 3])),
            ],
        )?,
        // Cast.
        case(
            "cast/i64_to_f32",
            Op::Cast { to: Dtype::F32 },
            vec![Feed(i64t(&[5], &[0, 1, -7, 1 << 20, 5]))],
        )?,
        case(
            "cast/f32_to_f32",
            Op::Cast { to: Dtype::F32 },
            vec![Feed(rand(&[2, 2], 32, -1.0, 1.0))],
        )?,
        // Max: the clamp max(hist_len, 1).
        case(
            "max/clamp_by_const_one",
            Op::Max,
            vec![
                Feed(f32t(&[4, 1], &[0.0, 1.0, 3.0, -2.0])),
                Const(f32t(&[], &[1.0])),
            ],
        )?,
        // CumSum: exclusive positions, inclusive running sums.
        case(
            "cumsum/exclusive_ones_axis1",
            Op::CumSum { exclusive: true },
            vec![Feed(f32t(&[2, 5], &[1.0; 10])), Const(i64t(&[], &[1]))],
        )?,
        case(
            "cumsum/inclusive_i64_axis_minus1",
            Op::CumSum { exclusive: false },
            vec![
                Feed(i64t(&[2, 3], &[1, 2, 3, -4, 5, 6])),
                Const(i64t(&[], &[-1])),
            ],
        )?,
        case(
            "cumsum/exclusive_f32_axis0_rank3",
            Op::CumSum { exclusive: true },
            vec![
                Feed(rand(&[3, 2, 2], 33, -1.0, 1.0)),
                Const(i64t(&[], &[0])),
            ],
        )?,
        // Gather with 2-D indices into a [rows, width] table: [N, L] → [N, L, width].
        case(
            "gather/rank2_indices_into_table",
            Op::Gather { axis: 0 },
            vec![
                Const(rand(&[5, 3], 34, -1.0, 1.0)),
                Feed(i64t(&[2, 4], &[0, 4, 4, 1, 3, 2, 0, 0])),
            ],
        )?,
        // The 3-D shapes of the attention: [N, L, 1] · [N, L, d], [N, 1, d] · [N, L, d].
        case(
            "mul/rank3_weights_by_rows",
            Op::Mul,
            vec![
                Feed(rand(&[2, 4, 1], 35, -1.0, 1.0)),
                Feed(rand(&[2, 4, 3], 36, -1.0, 1.0)),
            ],
        )?,
        case(
            "add/rank2_by_scalar_const",
            Op::Add,
            vec![
                Feed(rand(&[2, 3], 37, -1.0, 1.0)),
                Const(f32t(&[], &[-1e9])),
            ],
        )?,
        // A masked softmax row: every entry filled with −1e9 gives uniform weights.
        case(
            "softmax/masked_fill_rows",
            Op::Softmax { axis: -1 },
            vec![Feed(f32t(&[2, 3], &[0.5, -1e9, 0.25, -1e9, -1e9, -1e9]))],
        )?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_uniquely_named_graphs_with_one_output() {
        let cases = op_cases().expect("op cases");
        let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), cases.len(), "case names repeat");
        for c in &cases {
            assert!(!c.graph.nodes().is_empty(), "{}", c.name);
            assert_eq!(c.graph.outputs().len(), 1, "{}", c.name);
            let out = c.graph.outputs()[0];
            assert_eq!(c.graph.value(out).name, "out", "{}", c.name);
            assert_eq!(c.feeds.len(), c.graph.inputs().len(), "{}", c.name);
        }
    }
}

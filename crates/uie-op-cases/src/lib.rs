//! Data-driven op cases of uie-compile's IR, one-node graphs with their feeds; run by the
//! compiler's op tests against tract and by the end-to-end ONNX Runtime checks.
//!
//! The cases are data, `fixtures/op-cases.toml` (its header documents the format); this crate
//! turns each into a graph. Each case is one node of one [`Op`] whose operands are either graph
//! inputs (fed at run time, named `in<i>`) or initializers (named `c<i>`); its single graph output
//! is `out`. Two shapes need more: a multi-output op (`TopK`) exports one of its outputs as `out`
//! (one case per output), and an op with a bool result (`Greater`, `Less`) is followed by a
//! `Cast` to f32, since bool values never cross the graph boundary. Shapes are inferred when the
//! case is built, so a case whose shape rule fails is an error of [`op_cases`]. The data is
//! deterministic: fixed values chosen for the edge cases and seeded pseudo-random values from
//! [`uie_testkit::Rng`] elsewhere. Outputs are compared with [`uie_testkit::assertions::compare`].
//!
//! [`variant_index`] is an exhaustive `match` over [`Op`]: a new variant does not compile until it
//! is listed there, and [`op_cases`] refuses to return unless every variant has a case.

use serde::Deserialize;
use uie_compile::error::CompileError;
use uie_compile::ir::{Dtype, Graph, TensorType};
use uie_compile::ops::Op;
use uie_model::Tensor;
use uie_testkit::Rng;

/// The case data.
const CASES: &str = include_str!("../../../fixtures/op-cases.toml");

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

/// `fixtures/op-cases.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    case: Vec<CaseSpec>,
}

/// One `[[case]]` of the data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    op: String,
    axis: Option<i64>,
    keepdims: Option<bool>,
    exclusive: Option<bool>,
    inputs: Vec<OperandSpec>,
    output: Option<usize>,
    #[serde(default)]
    cast: bool,
}

/// One operand of a case: `feed` or `const` (its shape) and its values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperandSpec {
    feed: Option<Vec<usize>>,
    #[serde(rename = "const")]
    constant: Option<Vec<usize>>,
    f32: Option<Vec<f32>>,
    i64: Option<Vec<i64>>,
    random: Option<(u64, f32, f32)>,
}

fn bad<T>(case: &str, message: impl std::fmt::Display) -> Result<T, CompileError> {
    Err(CompileError::InvalidGraph(format!(
        "op case {case}: {message}"
    )))
}

/// The IR op a case names, with its attributes.
fn op_of(spec: &CaseSpec) -> Result<Op, CompileError> {
    let name = spec.name.as_str();
    let axis = || spec.axis.map_or_else(|| bad(name, "needs `axis`"), Ok);
    let flag =
        |v: Option<bool>, key: &str| v.map_or_else(|| bad(name, format!("needs `{key}`")), Ok);
    Ok(match spec.op.as_str() {
        "Mod" => Op::Mod,
        "Gather" => Op::Gather { axis: axis()? },
        "MatMul" => Op::MatMul,
        "Add" => Op::Add,
        "Sub" => Op::Sub,
        "Mul" => Op::Mul,
        "Div" => Op::Div,
        "Relu" => Op::Relu,
        "Sigmoid" => Op::Sigmoid,
        "Softmax" => Op::Softmax { axis: axis()? },
        "Concat" => Op::Concat { axis: axis()? },
        "Unsqueeze" => Op::Unsqueeze,
        "ReduceSum" => Op::ReduceSum {
            keepdims: flag(spec.keepdims, "keepdims")?,
        },
        "TopK" => Op::TopK,
        "Greater" => Op::Greater,
        "Less" => Op::Less,
        "Cast" => Op::Cast { to: Dtype::F32 },
        "Max" => Op::Max,
        "CumSum" => Op::CumSum {
            exclusive: flag(spec.exclusive, "exclusive")?,
        },
        other => return bad(name, format!("unknown op {other:?}")),
    })
}

/// The tensor of an operand and whether it is fed.
fn operand(case: &str, spec: &OperandSpec) -> Result<(bool, Tensor), CompileError> {
    let (fed, shape) = match (&spec.feed, &spec.constant) {
        (Some(shape), None) => (true, shape.clone()),
        (None, Some(shape)) => (false, shape.clone()),
        _ => return bad(case, "an operand has exactly one of `feed` and `const`"),
    };
    let n: usize = shape.iter().product();
    let count = |len: usize| match len == n {
        true => Ok(()),
        false => bad(case, format!("{len} values for shape {shape:?}")),
    };
    let tensor = match (&spec.f32, &spec.i64, spec.random) {
        (Some(v), None, None) => {
            count(v.len())?;
            Tensor::f32(shape, v.clone())
        }
        (None, Some(v), None) => {
            count(v.len())?;
            Tensor::i64(shape, v.clone())
        }
        (None, None, Some((seed, lo, hi))) => {
            let mut rng = Rng::new(seed);
            Tensor::f32(shape, (0..n).map(|_| rng.uniform(lo, hi)).collect())
        }
        _ => {
            return bad(
                case,
                "an operand has exactly one of `f32`, `i64` and `random`",
            )
        }
    };
    Ok((fed, tensor))
}

/// Builds the graph of one case: operands, the node `case/<OpType>`, the output `out`.
fn build(spec: &CaseSpec) -> Result<OpCase, CompileError> {
    let name = spec.name.as_str();
    let op = op_of(spec)?;
    let mut graph = Graph::new(format!("op_case_{}", name.replace('/', "_")));
    let mut ids = Vec::new();
    let mut feeds = Vec::new();
    for (i, input) in spec.inputs.iter().enumerate() {
        let (fed, t) = operand(name, input)?;
        if fed {
            let input_name = format!("in{i}");
            ids.push(graph.add_input(&input_name, TensorType::of(&t))?);
            feeds.push((input_name, t));
        } else {
            ids.push(graph.add_initializer(&format!("c{i}"), t)?);
        }
    }
    let out = match (spec.output, spec.cast) {
        (None, false) => graph.add_op("case", op, &ids, "out")?,
        (None, true) => {
            let flag = graph.add_op("case", op, &ids, "flag")?;
            graph.add_op("case", Op::Cast { to: Dtype::F32 }, &[flag], "out")?
        }
        (Some(export), false) => {
            let names = if export == 0 {
                ["out", "other"]
            } else {
                ["other", "out"]
            };
            let op_type = op.op_type();
            let outs = graph.add_node(&format!("case/{op_type}"), op, &ids, &names)?;
            match outs.get(export) {
                Some(&out) => out,
                None => return bad(name, format!("no output #{export}")),
            }
        }
        (Some(_), true) => return bad(name, "`output` and `cast` exclude each other"),
    };
    graph.add_output(out)?;
    graph.infer_shapes()?;
    Ok(OpCase {
        name: name.to_string(),
        graph,
        feeds,
    })
}

/// Every op case, in the order of the data; at least one per [`Op`] variant.
///
/// Fails if the data does not parse, a case's graph is malformed or its shape rule fails, or if
/// some variant of [`Op`] has no case.
pub fn op_cases() -> Result<Vec<OpCase>, CompileError> {
    let file: CaseFile = toml::from_str(CASES)
        .map_err(|e| CompileError::InvalidGraph(format!("fixtures/op-cases.toml: {e}")))?;
    let cases = file.case.iter().map(build).collect::<Result<Vec<_>, _>>()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_names_each_op_by_its_onnx_op_type() {
        let file: CaseFile = toml::from_str(CASES).expect("op cases parse");
        for spec in &file.case {
            assert_eq!(op_of(spec).expect("op").op_type(), spec.op, "{}", spec.name);
        }
    }

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

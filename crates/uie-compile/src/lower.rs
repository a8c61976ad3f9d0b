//! Lowering: a checkpoint becomes an IR graph with the forward semantics of
//! [`uie_model::schema`] (`uie-model.md` §1 and §6).
//!
//! ```text
//! <field> i64[N] ─Mod(H_f)─Gather(embed.<field>)─┐
//! dense f32[N,D] ─Sub(mean)─Div(std)─────────────┴─Concat → x
//! level l: experts (Linear+ReLU per layer) → gates softmax(h·W+b) → Σ_j g_j·expert_j
//! towers: Linear+ReLU … → Linear → Sigmoid;  Concat → probs f32[N,T]
//! ```
//!
//! The gate mix is `ReduceSum_axis1(Unsqueeze(g, 2) · Concat_axis1(Unsqueeze(e_j, 1)))`. Node names
//! are `<tensor prefix>/<OpType>` (e.g. `ple.l0.income.expert1.fc0/MatMul`), value names
//! `<tensor prefix>.<step>`; weights keep their checkpoint names as initializer names.
//!
//! Seams for the UIE modules (`uie-model.md` §2–§5): their sub-graphs (behaviour-sequence
//! attention, retrieval over memory tables, enhancement vectors) become further [`InputPart`]s of
//! the backbone input, lowered in [`Lowerer::backbone_input`]; until then a config enabling one is
//! refused with [`CompileError::Unsupported`].

use std::collections::BTreeMap;

use uie_model::checkpoint::validate_weights;
use uie_model::config::Group;
use uie_model::schema::{Gate, Mlp, Owner, DENSE_MEAN, DENSE_STD};
use uie_model::{Checkpoint, Plan, Tensor};

use crate::error::CompileError;
use crate::ir::{Dim, Dtype, Graph, Op, TensorType, ValueId};

/// The symbolic batch dimension of every input and output.
pub const BATCH: &str = "N";
/// Name of the dense input.
pub const DENSE_INPUT: &str = "dense";
/// Name of the output.
pub const PROBS_OUTPUT: &str = "probs";
/// Version of the metadata layout (`uie.format_version`).
pub const FORMAT_VERSION: &str = "1";

/// One slice of the backbone input `x`, in concatenation order (`uie-model.md` §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputPart {
    /// The embedding of a categorical field.
    Embedding(String),
    /// The normalised dense features.
    Dense,
    // UIE seam: `Sequence` (behaviour-sequence attention), `Upe`, `Ucbe`, `Ucse` (retrieval over
    // memory tables + generalization layers) slot in here, in the order of §6.
}

/// The backbone input layout of a config, in concatenation order.
pub fn input_parts(plan: &Plan) -> Vec<InputPart> {
    let mut parts: Vec<InputPart> = plan
        .embeddings
        .iter()
        .map(|(field, _, _)| InputPart::Embedding(field.clone()))
        .collect();
    if plan.n_dense > 0 {
        parts.push(InputPart::Dense);
    }
    parts
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `metadata_props` of the compiled model, keyed and sorted.
pub fn metadata(checkpoint: &Checkpoint) -> Result<BTreeMap<String, String>, CompileError> {
    let config = &checkpoint.config;
    let tasks: Vec<String> = config.tasks.iter().map(|t| json_str(&t.name)).collect();
    let cats: Vec<String> = config
        .fields_in_input_order()
        .iter()
        .map(|f| {
            let group = match f.group {
                Group::User => "user",
                Group::Item => "item",
                Group::Context => "context",
            };
            format!(
                "{{\"name\":{},\"buckets\":{},\"group\":{}}}",
                json_str(&f.name),
                f.buckets,
                json_str(group)
            )
        })
        .collect();
    let dense: Vec<String> = config.features.dense.iter().map(|d| json_str(d)).collect();
    Ok(BTreeMap::from([
        ("uie.format_version".to_string(), FORMAT_VERSION.to_string()),
        ("uie.model_name".to_string(), config.model.name.clone()),
        ("uie.tasks".to_string(), format!("[{}]", tasks.join(","))),
        (
            "uie.schema".to_string(),
            format!(
                "{{\"categorical\":[{}],\"dense\":[{}]}}",
                cats.join(","),
                dense.join(",")
            ),
        ),
        (
            "uie.checkpoint_sha256".to_string(),
            checkpoint.content_hash()?,
        ),
    ]))
}

/// Lowers a checkpoint (validated again here, so an in-memory one is checked too) into a graph.
/// Output types are not filled in: run [`Graph::infer_shapes`].
pub fn lower(checkpoint: &Checkpoint) -> Result<Graph, CompileError> {
    let config = &checkpoint.config;
    config.validate()?;
    validate_weights(config, &checkpoint.weights)?;
    if config.features.sequence.is_some() {
        return Err(CompileError::Unsupported(
            "features.sequence is not lowered by this compiler yet".into(),
        ));
    }
    if config.uie.any() {
        return Err(CompileError::Unsupported(
            "the [uie] modules are not lowered by this compiler yet".into(),
        ));
    }
    let plan = Plan::new(config);
    let mut graph = Graph::new(config.model.name.clone());
    graph.metadata = metadata(checkpoint)?;
    let mut l = Lowerer {
        graph,
        checkpoint,
        plan: &plan,
        axes: BTreeMap::new(),
    };
    let x = l.backbone_input()?;
    let probs = l.backbone(x)?;
    l.graph.add_output(probs)?;
    Ok(l.graph)
}

struct Lowerer<'a> {
    graph: Graph,
    checkpoint: &'a Checkpoint,
    plan: &'a Plan,
    axes: BTreeMap<Vec<i64>, ValueId>,
}

fn owner_name(checkpoint: &Checkpoint, owner: Owner) -> &str {
    match owner {
        Owner::Task(k) => checkpoint
            .config
            .tasks
            .get(k)
            .map(|t| t.name.as_str())
            .unwrap_or("?"),
        Owner::Shared => "shared",
    }
}

impl Lowerer<'_> {
    fn weight(&mut self, name: &str) -> Result<ValueId, CompileError> {
        let t = self.checkpoint.weights.get(name).ok_or_else(|| {
            uie_model::ModelError::MissingTensor {
                name: name.to_string(),
                expected: vec![],
            }
        })?;
        self.graph.add_initializer(name, t.clone())
    }

    /// A shared constant int64 axes initializer, `const.axes.<a>_<b>`.
    fn axes(&mut self, axes: &[i64]) -> Result<ValueId, CompileError> {
        if let Some(&id) = self.axes.get(axes) {
            return Ok(id);
        }
        let label: Vec<String> = axes.iter().map(|a| a.to_string()).collect();
        let id = self.graph.add_initializer(
            &format!("const.axes.{}", label.join("_")),
            Tensor::i64(vec![axes.len()], axes.to_vec()),
        )?;
        self.axes.insert(axes.to_vec(), id);
        Ok(id)
    }

    fn op(
        &mut self,
        prefix: &str,
        op: Op,
        inputs: &[ValueId],
        step: &str,
    ) -> Result<ValueId, CompileError> {
        self.graph
            .add_op(prefix, op, inputs, &format!("{prefix}.{step}"))
    }

    /// `x · W + b` with the weight and bias tensors `<prefix>.weight`, `<prefix>.bias`.
    fn linear(
        &mut self,
        prefix: &str,
        x: ValueId,
        weight: &str,
        bias: &str,
    ) -> Result<ValueId, CompileError> {
        let w = self.weight(weight)?;
        let b = self.weight(bias)?;
        let mm = self.op(prefix, Op::MatMul, &[x, w], "matmul")?;
        self.op(prefix, Op::Add, &[mm, b], "add")
    }

    /// Every layer of an MLP, each Linear + ReLU.
    fn mlp(&mut self, mlp: &Mlp, mut x: ValueId) -> Result<ValueId, CompileError> {
        for m in 0..mlp.depth() {
            let (w, b) = mlp.layer(m);
            let prefix = format!("{}.fc{m}", mlp.prefix);
            let y = self.linear(&prefix, x, &w, &b)?;
            x = self.op(&prefix, Op::Relu, &[y], "relu")?;
        }
        Ok(x)
    }

    /// `x = concat(parts)`, each part lowered from the raw inputs.
    fn backbone_input(&mut self) -> Result<ValueId, CompileError> {
        let n = || Dim::Sym(BATCH.to_string());
        // Inputs first, in contract order: categorical fields (plan order), then dense.
        let mut ids = BTreeMap::new();
        for (field, _, _) in &self.plan.embeddings {
            let id = self.graph.add_input(
                field,
                TensorType {
                    dtype: Dtype::I64,
                    shape: vec![n()],
                },
            )?;
            ids.insert(field.clone(), id);
        }
        let dense = if self.plan.n_dense > 0 {
            let ty = TensorType {
                dtype: Dtype::F32,
                shape: vec![n(), Dim::Fixed(self.plan.n_dense)],
            };
            Some(self.graph.add_input(DENSE_INPUT, ty)?)
        } else {
            None
        };
        let mut parts = Vec::new();
        for part in input_parts(self.plan) {
            let v = match part {
                InputPart::Embedding(field) => {
                    let (_, table, buckets) = self
                        .plan
                        .embeddings
                        .iter()
                        .find(|(f, _, _)| *f == field)
                        .cloned()
                        .ok_or_else(|| {
                            CompileError::InvalidGraph(format!("field {field} not in plan"))
                        })?;
                    let id = *ids.get(&field).ok_or_else(|| {
                        CompileError::InvalidGraph(format!("input {field} missing"))
                    })?;
                    let h = self.graph.add_initializer(
                        &format!("{table}.buckets"),
                        Tensor::i64(vec![], vec![buckets as i64]),
                    )?;
                    let row = self.op(&table, Op::Mod, &[id, h], "row")?;
                    let t = self.weight(&table)?;
                    self.op(&table, Op::Gather { axis: 0 }, &[t, row], "vec")?
                }
                InputPart::Dense => {
                    let d = dense.ok_or_else(|| {
                        CompileError::InvalidGraph("dense part without input".into())
                    })?;
                    let mean = self.weight(DENSE_MEAN)?;
                    let std = self.weight(DENSE_STD)?;
                    let c = self.op("dense", Op::Sub, &[d, mean], "centered")?;
                    self.op("dense", Op::Div, &[c, std], "normalized")?
                }
            };
            parts.push(v);
        }
        match parts.as_slice() {
            [one] => Ok(*one),
            _ => self.op("input", Op::Concat { axis: 1 }, &parts, "x"),
        }
    }

    /// `softmax(h·W + b)` mixing the given expert outputs: `Σ_j g_j · expert_j`.
    fn gate(
        &mut self,
        gate: &Gate,
        h: ValueId,
        experts: &[ValueId],
        out: &str,
    ) -> Result<ValueId, CompileError> {
        let prefix = gate
            .weight
            .strip_suffix(".weight")
            .unwrap_or(&gate.weight)
            .to_string();
        let logits = self.linear(&prefix, h, &gate.weight, &gate.bias)?;
        let g = self.op(&prefix, Op::Softmax { axis: 1 }, &[logits], "softmax")?;
        let ax2 = self.axes(&[2])?;
        let g3 = self.op(&prefix, Op::Unsqueeze, &[g, ax2], "unsqueeze")?;
        let stack = self.op(&prefix, Op::Concat { axis: 1 }, experts, "experts")?;
        let weighted = self.op(&prefix, Op::Mul, &[g3, stack], "weighted")?;
        let ax1 = self.axes(&[1])?;
        self.graph.add_op(
            &prefix,
            Op::ReduceSum { keepdims: false },
            &[weighted, ax1],
            out,
        )
    }

    /// The PLE levels and the towers: `x` → `probs [N, T]`.
    fn backbone(&mut self, x: ValueId) -> Result<ValueId, CompileError> {
        let plan = self.plan;
        let t = plan.towers.len();
        let mut task_in = vec![x; t];
        let mut shared_in = x;
        for (l, level) in plan.levels.iter().enumerate() {
            // Expert outputs, unsqueezed to [N, 1, D] for stacking, by owner.
            let mut outs: BTreeMap<(usize, usize), ValueId> = BTreeMap::new();
            let key = |o: Owner| match o {
                Owner::Task(k) => k,
                Owner::Shared => usize::MAX,
            };
            let ax1 = self.axes(&[1])?;
            let experts = level
                .specific
                .iter()
                .enumerate()
                .flat_map(|(k, es)| {
                    es.iter()
                        .enumerate()
                        .map(move |(j, e)| (Owner::Task(k), j, e))
                })
                .chain(
                    level
                        .shared
                        .iter()
                        .enumerate()
                        .map(|(j, e)| (Owner::Shared, j, e)),
                );
            for (owner, j, mlp) in experts {
                let input = match owner {
                    Owner::Task(k) => task_in[k],
                    Owner::Shared => shared_in,
                };
                let y = self.mlp(mlp, input)?;
                let y3 = self.op(&mlp.prefix, Op::Unsqueeze, &[y, ax1], "unsqueeze")?;
                outs.insert((key(owner), j), y3);
            }
            let pick = |gate: &Gate| -> Result<Vec<ValueId>, CompileError> {
                gate.experts
                    .iter()
                    .map(|&(o, j)| {
                        outs.get(&(key(o), j)).copied().ok_or_else(|| {
                            CompileError::InvalidGraph(format!(
                                "{}: expert {j} of {o:?} missing",
                                gate.weight
                            ))
                        })
                    })
                    .collect()
            };
            let mut next = Vec::with_capacity(t);
            for (k, gate) in level.task_gates.iter().enumerate() {
                let es = pick(gate)?;
                let out = format!(
                    "ple.l{l}.{}.out",
                    owner_name(self.checkpoint, Owner::Task(k))
                );
                next.push(self.gate(gate, task_in[k], &es, &out)?);
            }
            if let Some(gate) = &level.shared_gate {
                let es = pick(gate)?;
                shared_in = self.gate(gate, shared_in, &es, &format!("ple.l{l}.shared.out"))?;
            }
            task_in = next;
        }
        let mut columns = Vec::with_capacity(t);
        for (k, tower) in plan.towers.iter().enumerate() {
            let h = self.mlp(&tower.hidden, task_in[k])?;
            let prefix = tower
                .out_weight
                .strip_suffix(".weight")
                .unwrap_or(&tower.out_weight)
                .to_string();
            let logit = self.linear(&prefix, h, &tower.out_weight, &tower.out_bias)?;
            columns.push(self.op(&prefix, Op::Sigmoid, &[logit], "prob")?);
        }
        self.graph
            .add_op(PROBS_OUTPUT, Op::Concat { axis: 1 }, &columns, PROBS_OUTPUT)
    }
}

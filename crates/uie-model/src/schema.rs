//! The names and shapes of every tensor a checkpoint holds, derived from the config alone.
//!
//! This is the single source of the tensor names: the trainer creates and saves parameters by
//! these names, the compiler reads them, and `docs/checkpoint-format.md` documents them. All
//! tensors are f32, row-major. A linear layer `y = x · W + b` stores `W` as `[in, out]` and `b` as
//! `[out]`.
//!
//! | tensor | shape | meaning |
//! |---|---|---|
//! | `embed.<field>` | `[buckets, embed_dim]` | embedding table of a categorical field |
//! | `dense.mean`, `dense.std` | `[n_dense]` | normalisation frozen at training time: `(dense − mean) / std`, std > 0 |
//! | `ple.l<l>.<owner>.expert<j>.fc<m>.{weight,bias}` | `[in, out]`, `[out]` | layer m of expert j of `owner` (a task name or `shared`) at level l, ReLU after every layer |
//! | `ple.l<l>.<owner>.gate.{weight,bias}` | `[in, n_experts]` | gate of `owner` at level l (softmax) |
//! | `tower.<task>.fc<m>.{weight,bias}` | `[in, out]`, `[out]` | hidden layer m of a task tower, ReLU after |
//! | `tower.<task>.out.{weight,bias}` | `[in, 1]`, `[1]` | tower output logit; `probs = sigmoid(logit)` |

use crate::config::Config;

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// 64-bit signed integer.
    I64,
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::I64 => "i64",
        })
    }
}

/// Name, shape and dtype of one tensor the config requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: Dtype,
}

/// Who owns an expert or a gate in a PLE level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Task k (index into `config.tasks`).
    Task(usize),
    /// The shared experts.
    Shared,
}

/// A multi-layer perceptron: `widths[0]` is the input width, each following width one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mlp {
    /// Name prefix of the layers (`<prefix>.fc<m>.weight`).
    pub prefix: String,
    /// Input width followed by every layer's output width.
    pub widths: Vec<usize>,
}

impl Mlp {
    /// Weight and bias names of layer `m`.
    pub fn layer(&self, m: usize) -> (String, String) {
        (
            format!("{}.fc{m}.weight", self.prefix),
            format!("{}.fc{m}.bias", self.prefix),
        )
    }

    /// Number of layers.
    pub fn depth(&self) -> usize {
        self.widths.len().saturating_sub(1)
    }

    fn specs(&self, out: &mut Vec<TensorSpec>) {
        for m in 0..self.depth() {
            let (w, b) = self.layer(m);
            out.push(f32_spec(w, vec![self.widths[m], self.widths[m + 1]]));
            out.push(f32_spec(b, vec![self.widths[m + 1]]));
        }
    }
}

/// A gate: one linear layer followed by a softmax over `n_experts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// Weight name (`[in, n_experts]`).
    pub weight: String,
    /// Bias name (`[n_experts]`).
    pub bias: String,
    /// Input width.
    pub input: usize,
    /// The experts it mixes, in order: the owner's own experts, then the shared ones (the shared
    /// gate: every task's experts in task order, then the shared ones).
    pub experts: Vec<(Owner, usize)>,
}

/// One PLE level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// `specific[k][j]`: expert j of task k.
    pub specific: Vec<Vec<Mlp>>,
    /// The shared experts.
    pub shared: Vec<Mlp>,
    /// One gate per task.
    pub task_gates: Vec<Gate>,
    /// The shared gate (every level but the last).
    pub shared_gate: Option<Gate>,
}

/// A task tower: hidden MLP layers (ReLU) then a linear output to one logit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tower {
    /// Hidden layers (may have depth 0).
    pub hidden: Mlp,
    /// Output weight `[in, 1]`.
    pub out_weight: String,
    /// Output bias `[1]`.
    pub out_bias: String,
}

/// The whole model's structure with the names of its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `(field name, embedding tensor name, buckets)` in input-vector order.
    pub embeddings: Vec<(String, String, usize)>,
    /// Embedding width.
    pub embed_dim: usize,
    /// Number of dense features.
    pub n_dense: usize,
    /// Width of the backbone input.
    pub input_width: usize,
    /// The PLE levels.
    pub levels: Vec<Level>,
    /// One tower per task.
    pub towers: Vec<Tower>,
}

/// Name of the dense mean tensor.
pub const DENSE_MEAN: &str = "dense.mean";
/// Name of the dense standard-deviation tensor.
pub const DENSE_STD: &str = "dense.std";

/// Name of a field's embedding table.
pub fn embed_name(field: &str) -> String {
    format!("embed.{field}")
}

fn f32_spec(name: String, shape: Vec<usize>) -> TensorSpec {
    TensorSpec {
        name,
        shape,
        dtype: Dtype::F32,
    }
}

fn owner_name(config: &Config, owner: Owner) -> &str {
    match owner {
        Owner::Task(k) => &config.tasks[k].name,
        Owner::Shared => "shared",
    }
}

impl Plan {
    /// Derives the structure from a (validated) config.
    pub fn new(config: &Config) -> Plan {
        let t = config.tasks.len();
        let p = config.ple.specific_experts;
        let s = config.ple.shared_experts;
        let ew = config.expert_width();
        let input_width = config.input_width();
        let expert = |level: usize, owner: Owner, j: usize, input: usize| {
            let mut widths = vec![input];
            widths.extend(&config.ple.expert_hidden);
            Mlp {
                prefix: format!("ple.l{level}.{}.expert{j}", owner_name(config, owner)),
                widths,
            }
        };
        let gate = |level: usize, owner: Owner, input: usize, experts: Vec<(Owner, usize)>| {
            let prefix = format!("ple.l{level}.{}.gate", owner_name(config, owner));
            Gate {
                weight: format!("{prefix}.weight"),
                bias: format!("{prefix}.bias"),
                input,
                experts,
            }
        };
        let shared_list: Vec<(Owner, usize)> = (0..s).map(|j| (Owner::Shared, j)).collect();
        let levels = (0..config.ple.levels)
            .map(|l| {
                let input = if l == 0 { input_width } else { ew };
                let specific = (0..t)
                    .map(|k| {
                        (0..p)
                            .map(|j| expert(l, Owner::Task(k), j, input))
                            .collect()
                    })
                    .collect();
                let shared = (0..s).map(|j| expert(l, Owner::Shared, j, input)).collect();
                let task_gates = (0..t)
                    .map(|k| {
                        let mut experts: Vec<(Owner, usize)> =
                            (0..p).map(|j| (Owner::Task(k), j)).collect();
                        experts.extend(&shared_list);
                        gate(l, Owner::Task(k), input, experts)
                    })
                    .collect();
                let shared_gate = (l + 1 < config.ple.levels).then(|| {
                    let mut experts: Vec<(Owner, usize)> = (0..t)
                        .flat_map(|k| (0..p).map(move |j| (Owner::Task(k), j)))
                        .collect();
                    experts.extend(&shared_list);
                    gate(l, Owner::Shared, input, experts)
                });
                Level {
                    specific,
                    shared,
                    task_gates,
                    shared_gate,
                }
            })
            .collect();
        let towers = config
            .tasks
            .iter()
            .map(|task| {
                let mut widths = vec![ew];
                widths.extend(&task.tower_hidden);
                Tower {
                    hidden: Mlp {
                        prefix: format!("tower.{}", task.name),
                        widths,
                    },
                    out_weight: format!("tower.{}.out.weight", task.name),
                    out_bias: format!("tower.{}.out.bias", task.name),
                }
            })
            .collect();
        Plan {
            embeddings: config
                .fields_in_input_order()
                .into_iter()
                .map(|f| (f.name.clone(), embed_name(&f.name), f.buckets))
                .collect(),
            embed_dim: config.model.embed_dim,
            n_dense: config.features.dense.len(),
            input_width,
            levels,
            towers,
        }
    }

    /// Every tensor the model needs, in a stable order.
    pub fn tensor_specs(&self) -> Vec<TensorSpec> {
        let mut out = Vec::new();
        for (_, name, buckets) in &self.embeddings {
            out.push(f32_spec(name.clone(), vec![*buckets, self.embed_dim]));
        }
        if self.n_dense > 0 {
            out.push(f32_spec(DENSE_MEAN.to_string(), vec![self.n_dense]));
            out.push(f32_spec(DENSE_STD.to_string(), vec![self.n_dense]));
        }
        for level in &self.levels {
            for e in level.specific.iter().flatten().chain(&level.shared) {
                e.specs(&mut out);
            }
            for g in level.task_gates.iter().chain(&level.shared_gate) {
                out.push(f32_spec(g.weight.clone(), vec![g.input, g.experts.len()]));
                out.push(f32_spec(g.bias.clone(), vec![g.experts.len()]));
            }
        }
        for tower in &self.towers {
            tower.hidden.specs(&mut out);
            let last = tower.hidden.widths.last().copied().unwrap_or(0);
            out.push(f32_spec(tower.out_weight.clone(), vec![last, 1]));
            out.push(f32_spec(tower.out_bias.clone(), vec![1]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_shapes_of_a_two_level_ple() {
        let config = Config::from_toml_str(crate::test_support::SMALL).expect("config");
        let specs = Plan::new(&config).tensor_specs();
        let find = |n: &str| {
            specs
                .iter()
                .find(|s| s.name == n)
                .unwrap_or_else(|| panic!("{n} missing"))
                .shape
                .clone()
        };
        assert_eq!(find("embed.education"), vec![16, 4]);
        assert_eq!(find("dense.std"), vec![1]);
        assert_eq!(find("ple.l0.income.expert0.fc0.weight"), vec![5, 8]);
        assert_eq!(find("ple.l1.shared.expert0.fc0.weight"), vec![8, 8]);
        // Task gate: own experts then shared. Shared gate: all experts, first level only.
        assert_eq!(find("ple.l0.income.gate.weight"), vec![5, 2]);
        assert_eq!(find("ple.l0.shared.gate.weight"), vec![5, 3]);
        assert!(specs.iter().all(|s| s.name != "ple.l1.shared.gate.weight"));
        assert_eq!(find("tower.income.fc0.weight"), vec![8, 4]);
        assert_eq!(find("tower.income.out.weight"), vec![4, 1]);
        assert_eq!(find("tower.never_married.out.weight"), vec![8, 1]);
        let mut names: Vec<_> = specs.iter().map(|s| &s.name).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "names are unique");
    }
}

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
//! | `seq.query.weight` | `[d_e, d_e]` | `W_q` of the sequence target attention: `q = e_item_id · W_q` |
//! | `aux.user.fc<m>.{weight,bias}`, `aux.user.out.{weight,bias}` | | user tower `T_u`: hidden Linear + ReLU, then Linear to `d` |
//! | `aux.item.fc<m>.{weight,bias}`, `aux.item.out.{weight,bias}` | | item tower `T_i` |
//! | `memory.upe`, `memory.ucbe` | `[N, d]` | centre tables (moved by stream clustering only) |
//! | `memory.ucse` | `[N, d_e]` | sequence centre table |
//! | `memory.personal` | `[H_user, d]` | personalised user memory `P` (row = user bucket) |
//! | `uie.upe.gen.fc0.{weight,bias}` | `[2d, d]`, `[d]` | `G_upe` on `[u, v_u]`, ReLU |
//! | `uie.ucbe.gen.fc0.{weight,bias}` | `[d, d]`, `[d]` | `G_ucbe` on `P[user]`, ReLU |
//! | `uie.ucse.attn.weight` | `[d_e, d_e]` | `W_t` of the UCSE target attention |
//! | `uie.ucse.gen.fc0.{weight,bias}` | `[d_e, d]`, `[d]` | `G_ucse`, ReLU |

use crate::config::{Config, Group};

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// 64-bit signed integer.
    I64,
}

impl Dtype {
    /// The name: `f32` or `i64`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::I64 => "i64",
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a tensor gets its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Trained by the optimizer.
    Parameter,
    /// Computed from the training data once and frozen (`dense.mean`, `dense.std`).
    Statistic,
    /// A memory table: moved by stream clustering, never by the optimizer.
    Memory,
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
    /// How it gets its values.
    pub role: Role,
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
    /// The sequence target attention, when the config has `[features.sequence]`.
    pub sequence: Option<SequencePlan>,
    /// The UIE modules, when any is enabled.
    pub uie: Option<UiePlan>,
}

/// Sequence pooling by target attention (`docs/model.md` §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequencePlan {
    /// The item-id field whose embedding table `hist_items` share.
    pub item_field: String,
    /// That field's embedding tensor.
    pub table: String,
    /// `W_q` `[d_e, d_e]`.
    pub query: String,
}

/// An auxiliary tower: hidden layers (ReLU), then a linear output of width `d`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuxTower {
    /// Fields whose embeddings (in input order) are concatenated as the tower input.
    pub fields: Vec<String>,
    /// Hidden layers.
    pub hidden: Mlp,
    /// Output weight `[h, d]`.
    pub out_weight: String,
    /// Output bias `[d]`.
    pub out_bias: String,
}

/// The UIE modules (`docs/model.md` §3–§5), each present only when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiePlan {
    /// Auxiliary width `d`.
    pub dim: usize,
    /// `T_u`.
    pub user_tower: AuxTower,
    /// `T_i`.
    pub item_tower: AuxTower,
    /// User Profile Enhancement.
    pub upe: Option<UpePlan>,
    /// User Consumption Behaviour Enhancement.
    pub ucbe: Option<UcbePlan>,
    /// User Consumption Sequence Enhancement.
    pub ucse: Option<UcsePlan>,
}

/// A centre table and how many centres a query retrieves from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retrieval {
    /// Tensor name of the table.
    pub table: String,
    /// Rows `N`.
    pub centres: usize,
    /// Width of a centre.
    pub width: usize,
    /// Centres retrieved per query.
    pub k: usize,
}

/// UPE: `e_upe = G_upe([R(sg(v_u), M_upe, K1), sg(v_u)])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpePlan {
    /// `M_upe` and `K1`.
    pub retrieval: Retrieval,
    /// `G_upe` (input `2d`).
    pub gen: Mlp,
}

/// UCBE: `e_ucbe = G_ucbe(P[user_row])`; `M_ucbe` only moves `P` during training.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UcbePlan {
    /// `M_ucbe` and `K2`.
    pub retrieval: Retrieval,
    /// Tensor name of `P`.
    pub personal: String,
    /// The user-id field whose bucket is the row of `P`.
    pub user_field: String,
    /// Rows of `P` (the user field's buckets).
    pub users: usize,
    /// `G_ucbe` (input `d`).
    pub gen: Mlp,
}

/// UCSE: retrieval by the masked mean of the history, then target attention over the kept centres.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UcsePlan {
    /// `M_ucse` and `K3`.
    pub retrieval: Retrieval,
    /// `W_t` `[d_e, d_e]`.
    pub attn: String,
    /// `G_ucse` (input `d_e`).
    pub gen: Mlp,
}

/// Name of `W_q`.
pub const SEQ_QUERY: &str = "seq.query.weight";
/// Name of the UPE centre table.
pub const MEMORY_UPE: &str = "memory.upe";
/// Name of the UCBE centre table.
pub const MEMORY_UCBE: &str = "memory.ucbe";
/// Name of the UCSE centre table.
pub const MEMORY_UCSE: &str = "memory.ucse";
/// Name of the personalised user memory `P`.
pub const MEMORY_PERSONAL: &str = "memory.personal";
/// Name of `W_t` (UCSE target attention).
pub const UCSE_ATTN: &str = "uie.ucse.attn.weight";

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
        role: Role::Parameter,
    }
}

fn spec_with(name: &str, shape: Vec<usize>, role: Role) -> TensorSpec {
    TensorSpec {
        role,
        ..f32_spec(name.to_string(), shape)
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
            sequence: config.features.sequence.as_ref().map(|seq| SequencePlan {
                item_field: seq.item_field.clone(),
                table: embed_name(&seq.item_field),
                query: SEQ_QUERY.to_string(),
            }),
            uie: uie_plan(config),
        }
    }

    /// Buckets of a categorical field.
    pub fn buckets(&self, field: &str) -> Option<usize> {
        self.embeddings
            .iter()
            .find(|(f, _, _)| f == field)
            .map(|(_, _, b)| *b)
    }

    /// Every tensor the model needs, in a stable order.
    pub fn tensor_specs(&self) -> Vec<TensorSpec> {
        let mut out = Vec::new();
        for (_, name, buckets) in &self.embeddings {
            out.push(f32_spec(name.clone(), vec![*buckets, self.embed_dim]));
        }
        if self.n_dense > 0 {
            out.push(spec_with(DENSE_MEAN, vec![self.n_dense], Role::Statistic));
            out.push(spec_with(DENSE_STD, vec![self.n_dense], Role::Statistic));
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
        let e = self.embed_dim;
        if let Some(seq) = &self.sequence {
            out.push(f32_spec(seq.query.clone(), vec![e, e]));
        }
        if let Some(u) = &self.uie {
            for t in [&u.user_tower, &u.item_tower] {
                t.hidden.specs(&mut out);
                let last = t.hidden.widths.last().copied().unwrap_or(0);
                out.push(f32_spec(t.out_weight.clone(), vec![last, u.dim]));
                out.push(f32_spec(t.out_bias.clone(), vec![u.dim]));
            }
            let table = |r: &Retrieval| spec_with(&r.table, vec![r.centres, r.width], Role::Memory);
            if let Some(upe) = &u.upe {
                out.push(table(&upe.retrieval));
                upe.gen.specs(&mut out);
            }
            if let Some(ucbe) = &u.ucbe {
                out.push(table(&ucbe.retrieval));
                out.push(spec_with(
                    &ucbe.personal,
                    vec![ucbe.users, u.dim],
                    Role::Memory,
                ));
                ucbe.gen.specs(&mut out);
            }
            if let Some(ucse) = &u.ucse {
                out.push(table(&ucse.retrieval));
                out.push(f32_spec(ucse.attn.clone(), vec![e, e]));
                ucse.gen.specs(&mut out);
            }
        }
        out
    }
}

fn uie_plan(config: &Config) -> Option<UiePlan> {
    let u = &config.uie;
    if !u.any() {
        return None;
    }
    let e = config.model.embed_dim;
    let d = u.dim;
    let fields = |g: Group| -> Vec<String> {
        config
            .fields_in_input_order()
            .into_iter()
            .filter(|f| f.group == g)
            .map(|f| f.name.clone())
            .collect()
    };
    let tower = |name: &str, fields: Vec<String>, hidden: &[usize]| {
        let mut widths = vec![fields.len() * e];
        widths.extend(hidden);
        AuxTower {
            fields,
            hidden: Mlp {
                prefix: format!("aux.{name}"),
                widths,
            },
            out_weight: format!("aux.{name}.out.weight"),
            out_bias: format!("aux.{name}.out.bias"),
        }
    };
    let retrieval = |table: &str, centres: usize, width: usize, k: usize| Retrieval {
        table: table.to_string(),
        centres,
        width,
        k,
    };
    let gen = |module: &str, input: usize| Mlp {
        prefix: format!("uie.{module}.gen"),
        widths: vec![input, d],
    };
    Some(UiePlan {
        dim: d,
        user_tower: tower("user", fields(Group::User), &u.user_tower),
        item_tower: tower("item", fields(Group::Item), &u.item_tower),
        upe: u.upe.enabled.then(|| UpePlan {
            retrieval: retrieval(MEMORY_UPE, u.upe.centres, d, u.upe.k),
            gen: gen("upe", 2 * d),
        }),
        ucbe: u.ucbe.enabled.then(|| {
            let user_field = u.user_field.clone().unwrap_or_default();
            let users = config
                .features
                .categorical
                .iter()
                .find(|f| f.name == user_field)
                .map_or(0, |f| f.buckets);
            UcbePlan {
                retrieval: retrieval(MEMORY_UCBE, u.ucbe.centres, d, u.ucbe.k),
                personal: MEMORY_PERSONAL.to_string(),
                user_field,
                users,
                gen: gen("ucbe", d),
            }
        }),
        ucse: u.ucse.enabled.then(|| UcsePlan {
            retrieval: retrieval(MEMORY_UCSE, u.ucse.centres, e, u.ucse.k),
            attn: UCSE_ATTN.to_string(),
            gen: gen("ucse", e),
        }),
    })
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

    #[test]
    fn uie_tensors_and_input_width() {
        let config = Config::from_toml_str(crate::test_support::SMALL_UIE).expect("config");
        let plan = Plan::new(&config);
        let specs = plan.tensor_specs();
        let find = |n: &str| {
            specs
                .iter()
                .find(|s| s.name == n)
                .unwrap_or_else(|| panic!("{n} missing"))
                .clone()
        };
        // x = 3 fields × 4 + 1 dense + seq 4 + e_upe 6 + e_ucbe 6 + e_ucse 6.
        assert_eq!(plan.input_width, 12 + 1 + 4 + 18);
        assert_eq!(find("seq.query.weight").shape, vec![4, 4]);
        assert_eq!(find("aux.user.fc0.weight").shape, vec![4, 5]);
        assert_eq!(find("aux.user.out.weight").shape, vec![5, 6]);
        assert_eq!(
            find("aux.item.out.weight").shape,
            vec![8, 6],
            "two item fields, no hidden"
        );
        assert_eq!(find("memory.upe").shape, vec![7, 6]);
        assert_eq!(find("memory.upe").role, Role::Memory);
        assert_eq!(find("memory.ucbe").shape, vec![5, 6]);
        assert_eq!(
            find("memory.personal").shape,
            vec![10, 6],
            "one row per user bucket"
        );
        assert_eq!(find("memory.ucse").shape, vec![9, 4]);
        assert_eq!(find("uie.upe.gen.fc0.weight").shape, vec![12, 6]);
        assert_eq!(find("uie.ucbe.gen.fc0.weight").shape, vec![6, 6]);
        assert_eq!(find("uie.ucse.attn.weight").shape, vec![4, 4]);
        assert_eq!(find("uie.ucse.gen.fc0.weight").shape, vec![4, 6]);
        assert_eq!(find("ple.l0.watch.expert0.fc0.weight").shape, vec![35, 8]);
        assert_eq!(find("dense.mean").role, Role::Statistic);
        assert_eq!(find("embed.user_id").role, Role::Parameter);
    }

    #[test]
    fn uie_config_errors_name_the_field() {
        let base = crate::test_support::SMALL_UIE;
        let err = |text: String| match Config::from_toml_str(&text) {
            Ok(_) => panic!("config should be rejected"),
            Err(e) => e.to_string(),
        };
        let e = err(base.replace("centres = 7, k = 3", "centres = 2, k = 3"));
        assert!(e.contains("uie.upe.k"), "{e}");
        let e = err(base.replace("aux_task = \"watch\"", "aux_task = \"click\""));
        assert!(e.contains("uie.aux_task"), "{e}");
        let e = err(base.replace("user_field = \"user_id\"", "user_field = \"genre\""));
        assert!(e.contains("uie.user_field"), "{e}");
        let e = err(base.replace("item_field = \"movie_id\"", "item_field = \"user_id\""));
        assert!(e.contains("features.sequence.item_field"), "{e}");
        let e = err(base.replace("rho_p = 0.1", "rho_p = 0.0"));
        assert!(e.contains("uie.ucbe.rho_p"), "{e}");
        let e = err(base.replace("sequence = { item_field = \"movie_id\", max_len = 5 }", ""));
        assert!(e.contains("uie.ucse"), "{e}");
    }
}

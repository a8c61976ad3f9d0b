//! The model config: what a `models/*.toml` file holds, parsed with serde + toml and validated.
//!
//! Every size of the model (fields, buckets, widths, experts, levels, towers) lives here and is read
//! at run time. [`Config::from_toml_str`] rejects unknown keys (toml reports the key and line) and
//! [`Config::validate`] rejects impossible values with the dotted path of the offending field, for
//! example `ple.levels: must be at least 1, got 0`.
//!
//! The `[model]`, `[features]`, `[ple]`, `[[tasks]]` and `[uie]` sections are the contract with the
//! compiler. `[data]` and `[train]` only steer the trainer; the compiler ignores them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

use crate::error::ModelError;

/// A whole config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name and global widths.
    pub model: ModelSection,
    /// The input features.
    pub features: Features,
    /// The PLE backbone.
    pub ple: Ple,
    /// The tasks, in output-column order.
    pub tasks: Vec<Task>,
    /// User Interest Enhancement modules (reserved: none is implemented yet).
    #[serde(default)]
    pub uie: Uie,
    /// Where the trainer reads its data (trainer only).
    #[serde(default)]
    pub data: Data,
    /// Optimisation settings (trainer only).
    #[serde(default)]
    pub train: Train,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A short identifier, used for the ONNX graph name and the Triton model name.
    pub name: String,
    /// Width `d_e` of every categorical embedding.
    pub embed_dim: usize,
}

/// Which part of the input a categorical field describes. Fields enter the model's input vector
/// grouped in this order (user, item, context), in config order within a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// User id and user profile fields.
    User,
    /// Item id and item fields.
    Item,
    /// Context fields.
    Context,
}

/// `[features]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Features {
    /// Categorical fields: each one int64 input, hashed in-graph by `id mod buckets`.
    #[serde(default)]
    pub categorical: Vec<CategoricalField>,
    /// Names of the numeric features, in the column order of the `dense` input.
    #[serde(default)]
    pub dense: Vec<String>,
    /// The behaviour sequence (`hist_items`, `hist_len`), pooled by target attention.
    #[serde(default)]
    pub sequence: Option<Sequence>,
}

/// `[features.sequence]`: the user's most recent consumed items (`docs/model.md` §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sequence {
    /// The item-id field (group `item`) whose embedding table `hist_items` share.
    pub item_field: String,
    /// How many recent items the data preparation keeps (`L` at training time; the compiled
    /// model takes any `L`).
    pub max_len: usize,
}

/// One `[[features.categorical]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalField {
    /// Input name; also the source column name for the data reader.
    pub name: String,
    /// Hash bucket count `H_f`: the embedding table has this many rows.
    pub buckets: usize,
    /// Which part of the input the field describes.
    #[serde(default = "default_group")]
    pub group: Group,
}

fn default_group() -> Group {
    Group::User
}

/// `[ple]`: Progressive Layered Extraction. One level is CGC; one level without specific experts
/// is MMoE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ple {
    /// Number of extraction levels (≥ 1).
    pub levels: usize,
    /// Shared experts per level.
    pub shared_experts: usize,
    /// Task-specific experts per task per level (0 allowed: then gates see only shared experts).
    pub specific_experts: usize,
    /// Hidden widths of every expert MLP (Linear + ReLU each); the last is the expert output width.
    pub expert_hidden: Vec<usize>,
}

/// One `[[tasks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Task name (`[a-z0-9_]+`, not `shared`); the output column of `probs`.
    pub name: String,
    /// Loss weight `w_k`.
    #[serde(default = "one")]
    pub weight: f32,
    /// Hidden widths of the tower MLP (Linear + ReLU each) before the final Linear → 1 logit.
    #[serde(default)]
    pub tower_hidden: Vec<usize>,
}

fn one() -> f32 {
    1.0
}

/// `[uie]`: the User Interest Enhancement modules of `docs/model.md` §3–§5. Every module is off
/// unless enabled; with all off the model is plain PLE and nothing below is used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uie {
    /// Width `d` of the auxiliary vectors, the UPE and UCBE centres and `P`.
    #[serde(default = "default_uie_dim")]
    pub dim: usize,
    /// The task whose label is `y_aux` of the auxiliary two-tower loss.
    #[serde(default)]
    pub aux_task: Option<String>,
    /// `α_aux`, the weight of the auxiliary loss.
    #[serde(default = "one")]
    pub aux_weight: f32,
    /// Hidden widths (Linear + ReLU) of the user tower `T_u`; its output layer has width `dim`.
    #[serde(default = "default_aux_tower")]
    pub user_tower: Vec<usize>,
    /// Hidden widths of the item tower `T_i`.
    #[serde(default = "default_aux_tower")]
    pub item_tower: Vec<usize>,
    /// The user-id field (group `user`) whose bucket is the row of `P`.
    #[serde(default)]
    pub user_field: Option<String>,
    /// Stream clustering settings shared by every centre table.
    #[serde(default)]
    pub clustering: Clustering,
    /// Epochs that train the towers only (centres frozen) before k-means++ initialisation.
    #[serde(default)]
    pub warmup_epochs: usize,
    /// User Profile Enhancement.
    #[serde(default = "default_upe")]
    pub upe: Module,
    /// User Consumption Behaviour Enhancement.
    #[serde(default = "default_ucbe")]
    pub ucbe: Ucbe,
    /// User Consumption Sequence Enhancement.
    #[serde(default = "default_ucse")]
    pub ucse: Module,
}

impl Default for Uie {
    fn default() -> Self {
        Uie {
            dim: default_uie_dim(),
            aux_task: None,
            aux_weight: 1.0,
            user_tower: default_aux_tower(),
            item_tower: default_aux_tower(),
            user_field: None,
            clustering: Clustering::default(),
            warmup_epochs: 0,
            upe: default_upe(),
            ucbe: default_ucbe(),
            ucse: default_ucse(),
        }
    }
}

impl Uie {
    /// True when any module is enabled (then the auxiliary towers exist).
    pub fn any(&self) -> bool {
        self.upe.enabled || self.ucbe.enabled || self.ucse.enabled
    }
}

fn default_uie_dim() -> usize {
    32
}
fn default_aux_tower() -> Vec<usize> {
    vec![64]
}
fn default_upe() -> Module {
    Module {
        enabled: false,
        centres: 256,
        k: 3,
    }
}
fn default_ucse() -> Module {
    Module {
        enabled: false,
        centres: 256,
        k: 8,
    }
}
fn default_ucbe() -> Ucbe {
    Ucbe {
        enabled: false,
        centres: 128,
        k: 3,
        rho_p: 0.1,
    }
}

/// `[uie.upe]` or `[uie.ucse]`: one centre table and its retrieval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Module {
    /// Whether the module is part of the model.
    #[serde(default)]
    pub enabled: bool,
    /// Centres `N` in the table.
    pub centres: usize,
    /// Centres retrieved per query (`K1` or `K3`).
    pub k: usize,
}

/// `[uie.ucbe]`: the item-centre table, its top-K, and the personalised memory's rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ucbe {
    /// Whether the module is part of the model.
    #[serde(default)]
    pub enabled: bool,
    /// Centres `N` in `M_ucbe`.
    pub centres: usize,
    /// `K2`.
    pub k: usize,
    /// `ρ_p`, the rate at which `P[u]` moves toward its retrieved centres.
    pub rho_p: f32,
}

/// How centres move (`docs/model.md` §4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CentreUpdate {
    /// `M_c ← M_c + ρ · mean(v − M_c)`.
    #[default]
    Mean,
    /// One step of rate ρ on `−log softmax_i(<v, M_i>)[c(v)]`.
    SoftmaxCe,
}

/// `[uie.clustering]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clustering {
    /// Update rate ρ.
    #[serde(default = "default_rho")]
    pub rho: f32,
    /// Update rule.
    #[serde(default)]
    pub update: CentreUpdate,
    /// Upper bounds of the activity buckets by training-interaction count (default 5, 20, 100:
    /// buckets 0-5, 6-20, 21-100, >100).
    #[serde(default = "default_activity_buckets")]
    pub activity_buckets: Vec<u64>,
    /// Distinct users per activity bucket that move the centres in one step (`m`).
    #[serde(default = "default_per_bucket")]
    pub per_bucket: usize,
    /// A centre unassigned for this many steps is reseeded (`R`).
    #[serde(default = "default_reseed_after")]
    pub reseed_after: usize,
}

impl Default for Clustering {
    fn default() -> Self {
        Clustering {
            rho: default_rho(),
            update: CentreUpdate::Mean,
            activity_buckets: default_activity_buckets(),
            per_bucket: default_per_bucket(),
            reseed_after: default_reseed_after(),
        }
    }
}

fn default_rho() -> f32 {
    0.05
}
fn default_activity_buckets() -> Vec<u64> {
    vec![5, 20, 100]
}
fn default_per_bucket() -> usize {
    32
}
fn default_reseed_after() -> usize {
    200
}

/// The data sets the trainer knows how to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    /// UCI Census-Income (KDD), Protocol A of `docs/evaluation.md`: a random split.
    #[default]
    Census,
    /// MovieLens ml-latest-small, Protocol B: `path` is the folder of `ratings.csv` and
    /// `movies.csv`; the split is global in time (the last `test_fraction` of events test, the
    /// `val_fraction` of events just before them validate); `split_seed` also seeds the negatives.
    Movielens,
}

/// `[data]` (trainer only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Data {
    /// Which reader to use.
    #[serde(default)]
    pub kind: DataKind,
    /// Data file, relative to the repository root (or absolute).
    #[serde(default = "default_census_path")]
    pub path: String,
    /// Seed of the train/validation/test split (fixed across model seeds).
    #[serde(default = "default_split_seed")]
    pub split_seed: u64,
    /// Fraction of rows for validation.
    #[serde(default = "default_fraction")]
    pub val_fraction: f64,
    /// Fraction of rows for test.
    #[serde(default = "default_fraction")]
    pub test_fraction: f64,
}

impl Default for Data {
    fn default() -> Self {
        Data {
            kind: DataKind::Census,
            path: default_census_path(),
            split_seed: default_split_seed(),
            val_fraction: default_fraction(),
            test_fraction: default_fraction(),
        }
    }
}

fn default_census_path() -> String {
    "fixtures/datasets/census-income-kdd/census-income.test.gz".to_string()
}
fn default_split_seed() -> u64 {
    20240501
}
fn default_fraction() -> f64 {
    0.2
}

/// `[train]` (trainer only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Train {
    /// Seed of initialisation and shuffling.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Mini-batch size.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Maximum number of epochs.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Adam learning rate.
    #[serde(default = "default_lr")]
    pub learning_rate: f32,
    /// Stop after this many epochs without a better validation score.
    #[serde(default = "default_patience")]
    pub patience: usize,
}

impl Default for Train {
    fn default() -> Self {
        Train {
            seed: default_seed(),
            batch_size: default_batch(),
            epochs: default_epochs(),
            learning_rate: default_lr(),
            patience: default_patience(),
        }
    }
}

fn default_seed() -> u64 {
    1
}
fn default_batch() -> usize {
    512
}
fn default_epochs() -> usize {
    20
}
fn default_lr() -> f32 {
    1e-3
}
fn default_patience() -> usize {
    3
}

/// Largest bucket count accepted for one field (2^31 rows): anything larger is a typo.
pub const MAX_BUCKETS: usize = 1 << 31;
/// Largest width accepted anywhere (embedding, expert, tower layers).
pub const MAX_WIDTH: usize = 1 << 16;

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ModelError {
    ModelError::InvalidConfig {
        path: path.into(),
        message: message.into(),
    }
}

fn check_range(path: &str, value: usize, min: usize, max: usize) -> Result<(), ModelError> {
    if value < min || value > max {
        return Err(invalid(
            path,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(())
}

fn check_name(path: &str, name: &str) -> Result<(), ModelError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!(
                "{name:?} is not a valid name: use 1 to 64 of [a-z0-9_], not starting with a digit"
            ),
        ))
    }
}

/// A TOML error on one line: where (`line L, column C`, and the key's dotted path when the error
/// sits on a key, e.g. `model.colour`) and what (the parser's message without its source
/// snippet).
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or("");
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.len() - line_start + 1;
    let key: String = text
        .get(start..)
        .unwrap_or("")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let mut path = String::new();
    if !key.is_empty() {
        // The table the line belongs to: the last `[a.b]` / `[[a]]` header above it, with the
        // index of an array of tables.
        let mut table = String::new();
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for l in before.lines().take(line_no.saturating_sub(1)) {
            let l = l.trim();
            if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
                let name = name.trim().to_string();
                let i = counts.entry(name.clone()).or_insert(0);
                table = format!("{name}[{i}]");
                *i += 1;
            } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
                table = name.trim().to_string();
            }
        }
        // An inline table on the line (`upe = { ..., key = 1 }`): its own key comes first.
        let line_head = text.get(line_start..start).unwrap_or("");
        let outer = line_head
            .split_once('=')
            .map(|(k, _)| k.trim().to_string())
            .filter(|k| !k.is_empty() && line_head.contains('{'));
        path = [Some(table), outer, Some(key)]
            .into_iter()
            .flatten()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(".");
    }
    if path.is_empty() {
        format!("line {line_no}, column {column}: {message}")
    } else {
        format!("{path} (line {line_no}, column {column}): {message}")
    }
}

impl Config {
    /// Parses and validates a config from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Config, ModelError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ModelError::ConfigSyntax(syntax_message(text, &e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Config::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    /// The resolved config (every default filled in) as TOML text.
    pub fn to_toml_string(&self) -> Result<String, ModelError> {
        toml::to_string_pretty(self).map_err(|e| ModelError::ConfigSyntax(e.to_string()))
    }

    /// Checks every value; the error names the offending field by its dotted path.
    pub fn validate(&self) -> Result<(), ModelError> {
        check_name("model.name", &self.model.name)?;
        check_range("model.embed_dim", self.model.embed_dim, 1, MAX_WIDTH)?;

        let mut names = BTreeSet::new();
        if self.features.categorical.is_empty() && self.features.dense.is_empty() {
            return Err(invalid("features", "the model needs at least one feature"));
        }
        for (i, f) in self.features.categorical.iter().enumerate() {
            let path = format!("features.categorical[{i}]");
            check_name(&format!("{path}.name"), &f.name)?;
            check_range(&format!("{path}.buckets"), f.buckets, 1, MAX_BUCKETS)?;
            if f.name == crate::graph::DENSE {
                return Err(invalid(
                    format!("{path}.name"),
                    format!("{:?} is the name of the numeric input", crate::graph::DENSE),
                ));
            }
            if !names.insert(f.name.clone()) {
                return Err(invalid(
                    format!("{path}.name"),
                    format!("duplicate feature {:?}", f.name),
                ));
            }
        }
        let mut dense_names = BTreeSet::new();
        for (i, name) in self.features.dense.iter().enumerate() {
            check_name(&format!("features.dense[{i}]"), name)?;
            if !dense_names.insert(name.clone()) {
                return Err(invalid(
                    format!("features.dense[{i}]"),
                    format!("duplicate dense feature {name:?}"),
                ));
            }
        }

        check_range("ple.levels", self.ple.levels, 1, 16)?;
        check_range("ple.shared_experts", self.ple.shared_experts, 0, 256)?;
        check_range("ple.specific_experts", self.ple.specific_experts, 0, 256)?;
        if self.ple.shared_experts + self.ple.specific_experts == 0 {
            return Err(invalid(
                "ple",
                "shared_experts + specific_experts must be at least 1",
            ));
        }
        if self.ple.levels > 1 && self.ple.shared_experts == 0 {
            return Err(invalid(
                "ple.shared_experts",
                "a multi-level PLE needs at least one shared expert to carry the shared path",
            ));
        }
        if self.ple.expert_hidden.is_empty() {
            return Err(invalid(
                "ple.expert_hidden",
                "needs at least one width (the expert output width)",
            ));
        }
        for (i, &w) in self.ple.expert_hidden.iter().enumerate() {
            check_range(&format!("ple.expert_hidden[{i}]"), w, 1, MAX_WIDTH)?;
        }

        if self.tasks.is_empty() {
            return Err(invalid("tasks", "the model needs at least one task"));
        }
        if self.tasks.len() > 64 {
            return Err(invalid("tasks", "at most 64 tasks"));
        }
        let mut task_names = BTreeSet::new();
        for (k, t) in self.tasks.iter().enumerate() {
            let path = format!("tasks[{k}]");
            check_name(&format!("{path}.name"), &t.name)?;
            if t.name == "shared" {
                return Err(invalid(
                    format!("{path}.name"),
                    "\"shared\" names the shared experts",
                ));
            }
            if !task_names.insert(t.name.clone()) {
                return Err(invalid(
                    format!("{path}.name"),
                    format!("duplicate task {:?}", t.name),
                ));
            }
            if !t.weight.is_finite() || t.weight < 0.0 {
                return Err(invalid(
                    format!("{path}.weight"),
                    format!("must be finite and ≥ 0, got {}", t.weight),
                ));
            }
            for (i, &w) in t.tower_hidden.iter().enumerate() {
                check_range(&format!("{path}.tower_hidden[{i}]"), w, 1, MAX_WIDTH)?;
            }
        }

        if let Some(seq) = &self.features.sequence {
            self.check_field("features.sequence.item_field", &seq.item_field, Group::Item)?;
            check_range("features.sequence.max_len", seq.max_len, 1, 10_000)?;
        }
        self.validate_uie()?;

        let frac = |path: &str, v: f64| -> Result<(), ModelError> {
            if !(v > 0.0 && v < 1.0) {
                return Err(invalid(path, format!("must be in (0, 1), got {v}")));
            }
            Ok(())
        };
        frac("data.val_fraction", self.data.val_fraction)?;
        frac("data.test_fraction", self.data.test_fraction)?;
        if self.data.val_fraction + self.data.test_fraction >= 1.0 {
            return Err(invalid(
                "data",
                "val_fraction + test_fraction must leave rows to train on",
            ));
        }
        check_range("train.batch_size", self.train.batch_size, 1, 1 << 20)?;
        check_range("train.epochs", self.train.epochs, 1, 100_000)?;
        check_range("train.patience", self.train.patience, 1, 100_000)?;
        if !(self.train.learning_rate.is_finite()
            && self.train.learning_rate > 0.0
            && self.train.learning_rate < 10.0)
        {
            return Err(invalid(
                "train.learning_rate",
                format!("must be in (0, 10), got {}", self.train.learning_rate),
            ));
        }
        Ok(())
    }

    fn check_field(&self, path: &str, name: &str, group: Group) -> Result<(), ModelError> {
        match self.features.categorical.iter().find(|f| f.name == name) {
            None => Err(invalid(
                path,
                format!("{name:?} is not a categorical feature"),
            )),
            Some(f) if f.group != group => Err(invalid(
                path,
                format!("{name:?} is in group {:?}, expected {group:?}", f.group),
            )),
            Some(_) => Ok(()),
        }
    }

    fn validate_uie(&self) -> Result<(), ModelError> {
        let u = &self.uie;
        if !u.any() {
            return Ok(());
        }
        check_range("uie.dim", u.dim, 1, MAX_WIDTH)?;
        for (path, widths) in [
            ("uie.user_tower", &u.user_tower),
            ("uie.item_tower", &u.item_tower),
        ] {
            for (i, &w) in widths.iter().enumerate() {
                check_range(&format!("{path}[{i}]"), w, 1, MAX_WIDTH)?;
            }
        }
        match &u.aux_task {
            None => {
                return Err(invalid(
                    "uie.aux_task",
                    "a UIE module is enabled: name the task whose label trains the two towers",
                ))
            }
            Some(t) if !self.tasks.iter().any(|task| &task.name == t) => {
                return Err(invalid("uie.aux_task", format!("{t:?} is not a task")))
            }
            Some(_) => {}
        }
        if !u.aux_weight.is_finite() || u.aux_weight < 0.0 {
            return Err(invalid(
                "uie.aux_weight",
                format!("must be finite and ≥ 0, got {}", u.aux_weight),
            ));
        }
        let groups = |g: Group| {
            self.features
                .categorical
                .iter()
                .filter(|f| f.group == g)
                .count()
        };
        if groups(Group::User) == 0 {
            return Err(invalid(
                "features",
                "the user tower needs at least one user field",
            ));
        }
        if groups(Group::Item) == 0 {
            return Err(invalid(
                "features",
                "the item tower needs at least one item field",
            ));
        }
        let c = &u.clustering;
        if !(c.rho > 0.0 && c.rho <= 1.0) {
            return Err(invalid(
                "uie.clustering.rho",
                format!("must be in (0, 1], got {}", c.rho),
            ));
        }
        if c.activity_buckets.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid(
                "uie.clustering.activity_buckets",
                "bounds must be strictly increasing",
            ));
        }
        check_range("uie.clustering.per_bucket", c.per_bucket, 1, 1 << 20)?;
        check_range("uie.clustering.reseed_after", c.reseed_after, 1, 1 << 30)?;
        check_range("uie.warmup_epochs", u.warmup_epochs, 0, 10_000)?;
        for (path, m) in [("uie.upe", &u.upe), ("uie.ucse", &u.ucse)] {
            if m.enabled {
                check_range(&format!("{path}.centres"), m.centres, 1, 1 << 24)?;
                check_range(&format!("{path}.k"), m.k, 1, m.centres)?;
            }
        }
        if u.ucbe.enabled {
            check_range("uie.ucbe.centres", u.ucbe.centres, 1, 1 << 24)?;
            check_range("uie.ucbe.k", u.ucbe.k, 1, u.ucbe.centres)?;
            if !(u.ucbe.rho_p > 0.0 && u.ucbe.rho_p <= 1.0) {
                return Err(invalid(
                    "uie.ucbe.rho_p",
                    format!("must be in (0, 1], got {}", u.ucbe.rho_p),
                ));
            }
            match &u.user_field {
                None => {
                    return Err(invalid(
                        "uie.user_field",
                        "UCBE needs the user-id field whose bucket is the row of P",
                    ))
                }
                Some(f) => self.check_field("uie.user_field", f, Group::User)?,
            }
        }
        if u.ucse.enabled && self.features.sequence.is_none() {
            return Err(invalid(
                "uie.ucse",
                "UCSE clusters behaviour sequences: add [features.sequence]",
            ));
        }
        Ok(())
    }

    /// Categorical fields in input-vector order: grouped user, item, context; config order within
    /// a group.
    pub fn fields_in_input_order(&self) -> Vec<&CategoricalField> {
        let mut fields: Vec<&CategoricalField> = self.features.categorical.iter().collect();
        fields.sort_by_key(|f| f.group);
        fields
    }

    /// Width of the backbone input `x = concat(x_user, x_item, x_ctx, dense, seq, e_upe, e_ucbe,
    /// e_ucse)`, each part present only when configured.
    pub fn input_width(&self) -> usize {
        let e = self.model.embed_dim;
        let mut w = self.features.categorical.len() * e + self.features.dense.len();
        if self.features.sequence.is_some() {
            w += e;
        }
        for on in [
            self.uie.upe.enabled,
            self.uie.ucbe.enabled,
            self.uie.ucse.enabled,
        ] {
            if on {
                w += self.uie.dim;
            }
        }
        w
    }

    /// Output width of every expert (the last of `ple.expert_hidden`).
    pub fn expert_width(&self) -> usize {
        self.ple.expert_hidden.last().copied().unwrap_or(0)
    }

    /// Task names in output-column order.
    pub fn task_names(&self) -> Vec<&str> {
        self.tasks.iter().map(|t| t.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_fills_defaults() {
        let c = Config::from_toml_str(crate::test_support::SMALL).expect("valid config");
        assert_eq!(c.input_width(), 5);
        assert_eq!(c.tasks[1].weight, 1.0);
        assert_eq!(c.train.batch_size, 512);
        let again =
            Config::from_toml_str(&c.to_toml_string().expect("serialise")).expect("reparse");
        assert_eq!(c, again);
    }

    fn err_of(text: &str) -> String {
        match Config::from_toml_str(text) {
            Ok(_) => panic!("config should be rejected"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn rejects_impossible_values_with_their_path() {
        let e = err_of(&crate::test_support::SMALL.replace("levels = 2", "levels = 0"));
        assert!(e.contains("ple.levels"), "{e}");
        let e = err_of(&crate::test_support::SMALL.replace("buckets = 16", "buckets = 0"));
        assert!(e.contains("features.categorical[0].buckets"), "{e}");
        let e = err_of(
            &crate::test_support::SMALL.replace("expert_hidden = [8]", "expert_hidden = [8, 0]"),
        );
        assert!(e.contains("ple.expert_hidden[1]"), "{e}");
        let e = err_of(
            &crate::test_support::SMALL.replace("name = \"never_married\"", "name = \"income\""),
        );
        assert!(e.contains("tasks[1].name"), "{e}");
        let e = err_of(
            &crate::test_support::SMALL.replace("embed_dim = 4", "embed_dim = 4\ncolour = 3"),
        );
        assert!(e.contains("colour"), "{e}");
        let e = err_of(&format!(
            "{}\n[uie.upe]\nenabled = true\ncentres = 4\nk = 3\n",
            crate::test_support::SMALL
        ));
        assert!(e.contains("uie.aux_task"), "{e}");
    }

    #[test]
    fn k_above_the_centres_is_rejected_with_its_path() {
        let uie = crate::test_support::SMALL_UIE;
        let e = err_of(&uie.replace("centres = 7, k = 3", "centres = 7, k = 8"));
        assert_eq!(e, "config field uie.upe.k: must be between 1 and 7, got 8");
        let e = err_of(&uie.replace("centres = 5, k = 2", "centres = 5, k = 6"));
        assert_eq!(e, "config field uie.ucbe.k: must be between 1 and 5, got 6");
        let e = err_of(&uie.replace("centres = 9, k = 4", "centres = 0, k = 4"));
        assert_eq!(
            e,
            "config field uie.ucse.centres: must be between 1 and 16777216, got 0"
        );
    }

    #[test]
    fn zero_experts_and_zero_widths_are_rejected_with_their_path() {
        let small = crate::test_support::SMALL;
        let e = err_of(&small.replace(
            "shared_experts = 1\nspecific_experts = 1",
            "shared_experts = 0\nspecific_experts = 0",
        ));
        assert!(e.starts_with("config field ple"), "{e}");
        let e = err_of(&small.replace("embed_dim = 4", "embed_dim = 0"));
        assert_eq!(
            e,
            "config field model.embed_dim: must be between 1 and 65536, got 0"
        );
        let e = err_of(&small.replace("tower_hidden = [4]", "tower_hidden = [0]"));
        assert!(e.contains("tasks[0].tower_hidden[0]"), "{e}");
        let e = err_of(&small.replace("expert_hidden = [8]", "expert_hidden = []"));
        assert!(e.contains("ple.expert_hidden"), "{e}");
        let e = err_of(&crate::test_support::SMALL_UIE.replace("dim = 6", "dim = 0"));
        assert!(e.contains("uie.dim"), "{e}");
    }

    #[test]
    fn syntax_errors_are_one_line_and_name_the_key() {
        let small = crate::test_support::SMALL;
        // An unknown field, in a table, an array of tables and an inline table.
        let e = err_of(&small.replace("embed_dim = 4", "embed_dim = 4\ncolour = 3"));
        assert!(
            e.starts_with("config syntax: model.colour (line 5, column 1): unknown field `colour`"),
            "{e}"
        );
        let e = err_of(&small.replace("tower_hidden = [4]", "tower_hidden = [4]\nhight = 1"));
        assert!(e.starts_with("config syntax: tasks[0].hight (line"), "{e}");
        let e = err_of(
            &crate::test_support::SMALL_UIE.replace("centres = 7, k = 3", "centres = 7, kk = 3"),
        );
        assert!(e.starts_with("config syntax: uie.upe.kk (line"), "{e}");
        // A wrong type, an empty file, text that is not TOML.
        let e = err_of(&small.replace("embed_dim = 4", "embed_dim = \"four\""));
        assert!(e.contains("model.embed_dim") || e.contains("line 4"), "{e}");
        let e = err_of("");
        assert!(e.contains("missing field `model`"), "{e}");
        let e = err_of("\u{0}\u{1}PK garbage ]]");
        assert!(e.starts_with("config syntax: line 1"), "{e}");
        for e in [
            err_of(""),
            err_of(&small.replace("embed_dim = 4", "embed_dim = 4\ncolour = 3")),
        ] {
            assert!(!e.contains('\n'), "not one line: {e:?}");
        }
    }
}

//! The compiled graph's interface: the names, types and shapes of its inputs and outputs, and the
//! `uie.*` metadata a compiled model describes itself with. `uie-compile` writes exactly this
//! (its `lower.rs`), `uie-runtime` reads exactly this (its `model.rs`); neither spells a name of
//! its own.
//!
//! The graph inputs, in order: one `i64 [N]` per categorical field (in
//! [`Config::fields_in_input_order`]), [`DENSE`] `f32 [N, d]` when the model has dense features,
//! and with a behaviour sequence [`HIST_ITEMS`] `i64 [N, L]` and [`HIST_LEN`] `i64 [N]`. The
//! output the services answer with is [`PROBS`] `f32 [N, tasks]`; a model compiled with debug
//! outputs has the [`DEBUG_OUTPUTS`] after it.
//!
//! The metadata ([`ModelMetadata`]) is five `metadata_props` entries: `uie.format_version`,
//! `uie.model_name`, `uie.checkpoint_sha256` (plain strings), `uie.tasks` (a JSON list of names)
//! and `uie.schema` (the JSON of [`GraphSchema`]). The JSON is serde's compact form, fields in
//! declaration order, so the same config always gives the same bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Group};
use crate::schema::Dtype;

/// Name of the dense graph input, `f32 [N, d]` (the raw dense features, in config order).
pub const DENSE: &str = "dense";
/// Name of the probabilities graph output, `f32 [N, tasks]`.
pub const PROBS: &str = "probs";
/// Name of the history items graph input, `i64 [N, L]` (also a golden tensor suffix).
pub const HIST_ITEMS: &str = "hist_items";
/// Name of the history lengths graph input, `i64 [N]`.
pub const HIST_LEN: &str = "hist_len";
/// The symbolic batch dimension of every input and output.
pub const BATCH_DIM: &str = "N";
/// The symbolic history length of [`HIST_ITEMS`].
pub const HIST_DIM: &str = "L";

/// The names of the debug outputs (intermediate UIE values) of a model compiled with them.
pub mod debug {
    /// UPE's retrieved centre indices, i64 `[N, K]`.
    pub const UPE_INDICES: &str = "debug.upe.indices";
    /// UCSE's retrieved centre indices, i64 `[N, K]`.
    pub const UCSE_INDICES: &str = "debug.ucse.indices";
    /// UPE's retrieval result `r`, f32 `[N, d]`.
    pub const UPE_R: &str = "debug.upe.r";
    /// UCSE's pooled history query, f32 `[N, d_e]`.
    pub const UCSE_POOLED: &str = "debug.ucse.pooled";
    /// `e_upe`, f32 `[N, d]`.
    pub const E_UPE: &str = "debug.e_upe";
    /// `e_ucbe`, f32 `[N, d]`.
    pub const E_UCBE: &str = "debug.e_ucbe";
    /// `e_ucse`, f32 `[N, d]`.
    pub const E_UCSE: &str = "debug.e_ucse";
    /// UPE's full retrieval scores, f32 `[N, centres]`.
    pub const UPE_SCORES: &str = "debug.upe.scores";
    /// UCSE's full retrieval scores, f32 `[N, centres]`.
    pub const UCSE_SCORES: &str = "debug.ucse.scores";
}

/// The extra graph outputs of a model compiled with debug outputs, in output order (after
/// [`PROBS`]); only those whose module is configured exist.
pub const DEBUG_OUTPUTS: [&str; 9] = [
    debug::UPE_INDICES,
    debug::UCSE_INDICES,
    debug::UPE_R,
    debug::UCSE_POOLED,
    debug::E_UPE,
    debug::E_UCBE,
    debug::E_UCSE,
    debug::UPE_SCORES,
    debug::UCSE_SCORES,
];

/// The `metadata_props` keys of a compiled model.
pub mod keys {
    /// Version of the metadata layout ([`METADATA_VERSION`](super::METADATA_VERSION)).
    pub const FORMAT_VERSION: &str = "uie.format_version";
    /// The config's `model.name`.
    pub const MODEL_NAME: &str = "uie.model_name";
    /// Task names, a JSON list in output-column order.
    pub const TASKS: &str = "uie.tasks";
    /// The [`GraphSchema`](super::GraphSchema) as JSON.
    pub const SCHEMA: &str = "uie.schema";
    /// The content hash of the checkpoint the model was compiled from.
    pub const CHECKPOINT_SHA256: &str = "uie.checkpoint_sha256";
}

/// Version of the metadata layout written and read by this crate.
pub const METADATA_VERSION: &str = "1";

/// One categorical graph input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoricalInput {
    /// Feature (and graph input) name.
    pub name: String,
    /// Hash buckets: the model maps an id to row `id mod buckets`.
    pub buckets: u64,
    /// Which part of the input the field describes.
    pub group: Group,
}

/// The behaviour sequence a model takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceInput {
    /// The item field whose ids (and embedding table) the history shares.
    pub item_field: String,
    /// The graph inputs that carry it: always `[HIST_ITEMS, HIST_LEN]`.
    pub inputs: Vec<String>,
}

/// The features a compiled model takes (its `uie.schema` metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphSchema {
    /// Categorical fields, in graph input order.
    pub categorical: Vec<CategoricalInput>,
    /// Dense feature names, in the column order of the [`DENSE`] input.
    pub dense: Vec<String>,
    /// The behaviour sequence, when the model has one (inputs [`HIST_ITEMS`], [`HIST_LEN`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<SequenceInput>,
}

/// The name, type and shape of one graph input or output. `None` dims are dynamic (the batch
/// dimension `N` first, and the history width `L`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Graph input or output name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dims, batch first; `None` for a dynamic dim.
    pub dims: Vec<Option<usize>>,
}

impl GraphSchema {
    /// The schema of a config's compiled model.
    pub fn from_config(config: &Config) -> GraphSchema {
        GraphSchema {
            categorical: config
                .fields_in_input_order()
                .iter()
                .map(|f| CategoricalInput {
                    name: f.name.clone(),
                    buckets: f.buckets as u64,
                    group: f.group,
                })
                .collect(),
            dense: config.features.dense.clone(),
            sequence: config.features.sequence.as_ref().map(|s| SequenceInput {
                item_field: s.item_field.clone(),
                inputs: vec![HIST_ITEMS.to_string(), HIST_LEN.to_string()],
            }),
        }
    }

    /// The graph inputs, in graph order (see the module doc).
    pub fn inputs(&self) -> Vec<TensorSpec> {
        let mut specs: Vec<TensorSpec> = self
            .categorical
            .iter()
            .map(|c| TensorSpec {
                name: c.name.clone(),
                dtype: Dtype::I64,
                dims: vec![None],
            })
            .collect();
        if !self.dense.is_empty() {
            specs.push(TensorSpec {
                name: DENSE.to_string(),
                dtype: Dtype::F32,
                dims: vec![None, Some(self.dense.len())],
            });
        }
        if self.sequence.is_some() {
            specs.push(TensorSpec {
                name: HIST_ITEMS.to_string(),
                dtype: Dtype::I64,
                dims: vec![None, None],
            });
            specs.push(TensorSpec {
                name: HIST_LEN.to_string(),
                dtype: Dtype::I64,
                dims: vec![None],
            });
        }
        specs
    }

    /// The graph input names, in graph order.
    pub fn input_names(&self) -> Vec<String> {
        self.inputs().into_iter().map(|s| s.name).collect()
    }
}

/// The output a service answers with: [`PROBS`], `f32 [N, tasks]`.
pub fn probs_spec(tasks: usize) -> TensorSpec {
    TensorSpec {
        name: PROBS.to_string(),
        dtype: Dtype::F32,
        dims: vec![None, Some(tasks)],
    }
}

/// The model's `uie.*` metadata is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MetadataError(pub String);

/// The `uie.*` metadata of a compiled model (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMetadata {
    /// The config's `model.name`.
    pub model_name: String,
    /// Task names, in output-column order.
    pub tasks: Vec<String>,
    /// The features the model takes.
    pub schema: GraphSchema,
    /// The content hash of the checkpoint the model was compiled from.
    pub checkpoint_sha256: String,
}

impl ModelMetadata {
    /// The metadata of a config's compiled model, given its checkpoint's content hash.
    pub fn new(config: &Config, checkpoint_sha256: String) -> ModelMetadata {
        ModelMetadata {
            model_name: config.model.name.clone(),
            tasks: config.tasks.iter().map(|t| t.name.clone()).collect(),
            schema: GraphSchema::from_config(config),
            checkpoint_sha256,
        }
    }

    /// The `metadata_props` entries, keyed and sorted.
    pub fn to_props(&self) -> Result<BTreeMap<String, String>, MetadataError> {
        let json = |what: &str, r: serde_json::Result<String>| {
            r.map_err(|e| MetadataError(format!("{what}: {e}")))
        };
        Ok(BTreeMap::from([
            (
                keys::FORMAT_VERSION.to_string(),
                METADATA_VERSION.to_string(),
            ),
            (keys::MODEL_NAME.to_string(), self.model_name.clone()),
            (
                keys::TASKS.to_string(),
                json(keys::TASKS, serde_json::to_string(&self.tasks))?,
            ),
            (
                keys::SCHEMA.to_string(),
                json(keys::SCHEMA, serde_json::to_string(&self.schema))?,
            ),
            (
                keys::CHECKPOINT_SHA256.to_string(),
                self.checkpoint_sha256.clone(),
            ),
        ]))
    }

    /// Reads the metadata back from `metadata_props` (`get` looks a key up). Every error names the
    /// key at fault.
    pub fn from_props<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<ModelMetadata, MetadataError> {
        let need = |key: &str| {
            get(key).ok_or_else(|| {
                MetadataError(format!(
                    "{key} is missing: was this file written by uie-compile?"
                ))
            })
        };
        let version = need(keys::FORMAT_VERSION)?;
        if version != METADATA_VERSION {
            return Err(MetadataError(format!(
                "{} is {version:?}, this build reads {METADATA_VERSION:?}",
                keys::FORMAT_VERSION
            )));
        }
        let tasks: Vec<String> = serde_json::from_str(need(keys::TASKS)?).map_err(|e| {
            MetadataError(format!("{} is not a JSON list of names: {e}", keys::TASKS))
        })?;
        let schema: GraphSchema = serde_json::from_str(need(keys::SCHEMA)?)
            .map_err(|e| MetadataError(format!("{} is malformed: {e}", keys::SCHEMA)))?;
        if let Some(seq) = &schema.sequence {
            if seq.inputs != [HIST_ITEMS, HIST_LEN] {
                return Err(MetadataError(format!(
                    "{}.sequence.inputs is {:?}, expected [{HIST_ITEMS}, {HIST_LEN}]",
                    keys::SCHEMA,
                    seq.inputs
                )));
            }
        }
        Ok(ModelMetadata {
            model_name: need(keys::MODEL_NAME)?.to_string(),
            tasks,
            schema,
            checkpoint_sha256: need(keys::CHECKPOINT_SHA256)?.to_string(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_support::{SMALL, SMALL_UIE};

    #[test]
    fn metadata_round_trips_and_is_compact_json_in_field_order() {
        for text in [SMALL, SMALL_UIE] {
            let config = Config::from_toml_str(text).unwrap();
            let meta = ModelMetadata::new(&config, "abc".into());
            let props = meta.to_props().unwrap();
            let back = ModelMetadata::from_props(|k| props.get(k).map(String::as_str)).unwrap();
            assert_eq!(back, meta);
        }
        let config = Config::from_toml_str(SMALL).unwrap();
        let props = ModelMetadata::new(&config, "abc".into())
            .to_props()
            .unwrap();
        assert_eq!(
            props[keys::SCHEMA],
            r#"{"categorical":[{"name":"education","buckets":16,"group":"user"}],"dense":["age"]}"#
        );
        assert_eq!(props[keys::TASKS], r#"["income","never_married"]"#);
        let config = Config::from_toml_str(SMALL_UIE).unwrap();
        let schema = &ModelMetadata::new(&config, String::new())
            .to_props()
            .unwrap()[keys::SCHEMA];
        assert!(
            schema.ends_with(
                r#""sequence":{"item_field":"movie_id","inputs":["hist_items","hist_len"]}}"#
            ),
            "{schema}"
        );
    }

    #[test]
    fn metadata_errors_name_the_key() {
        let config = Config::from_toml_str(SMALL_UIE).unwrap();
        let props = ModelMetadata::new(&config, "h".into()).to_props().unwrap();
        let read = |edit: &dyn Fn(&mut BTreeMap<String, String>)| {
            let mut p = props.clone();
            edit(&mut p);
            ModelMetadata::from_props(|k| p.get(k).map(String::as_str))
                .unwrap_err()
                .to_string()
        };
        let e = read(&|p| {
            p.remove(keys::SCHEMA);
        });
        assert!(e.contains("uie.schema is missing"), "{e}");
        let e = read(&|p| {
            p.insert(keys::TASKS.into(), "{".into());
        });
        assert!(e.contains("uie.tasks is not a JSON list"), "{e}");
        let e = read(&|p| {
            let s = p[keys::SCHEMA].replace("hist_len", "lengths");
            p.insert(keys::SCHEMA.into(), s);
        });
        assert!(e.contains("uie.schema.sequence.inputs"), "{e}");
        let e = read(&|p| {
            p.insert(keys::FORMAT_VERSION.into(), "2".into());
        });
        assert!(e.contains("uie.format_version"), "{e}");
    }

    #[test]
    fn inputs_follow_the_graph_order() {
        let config = Config::from_toml_str(SMALL_UIE).unwrap();
        let schema = GraphSchema::from_config(&config);
        let names = schema.input_names();
        let fields: Vec<&str> = config
            .fields_in_input_order()
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(&names[..fields.len()], fields.as_slice());
        assert_eq!(&names[fields.len()..], [DENSE, HIST_ITEMS, HIST_LEN]);
        assert_eq!(schema.inputs()[fields.len()].dims, [None, Some(1)]);
    }
}

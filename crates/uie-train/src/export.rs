//! Exports the prepared data of a config, exactly as the trainer feeds it, and the trainer's
//! initial weights, so that another framework can train the same model on the same rows (the
//! PyTorch baseline of `scripts/bench-train.sh`).
//!
//! The directory written (atomically, [`uie_model::checkpoint::write_dir_atomically`]) holds:
//!
//! - `train.safetensors`, `val.safetensors`, `test.safetensors`: per split, the raw model inputs
//!   under the golden names (`input.<field>` i64 `[n]`, `input.dense` f32 `[n, n_dense]`, and for
//!   a sequence `input.hist_items` / `input.hist_len`) and `labels` f32 `[n, T]` (tasks in config
//!   order). The rows are the trainer's rows in the trainer's order, after the same split.
//! - `init.safetensors`: the weights `uie-train train` starts from with that seed (the plan's
//!   tensor names, `dense.mean` and `dense.std` included).

use std::path::Path;

use uie_model::checkpoint::{to_safetensors, write_dir_atomically, GOLDEN_PROBS};
use uie_model::{Config, Tensor};

use crate::data::Dataset;
use crate::error::TrainError;
use crate::model;
use crate::train::{load_data, TrainOptions};

/// Name of the labels tensor in an exported split.
pub const LABELS: &str = "labels";

/// Rows written per split: `(split, rows)`.
pub type ExportReport = Vec<(&'static str, usize)>;

/// The safetensors bytes of one split: inputs under golden names plus [`LABELS`].
fn split_bytes(config: &Config, data: &Dataset) -> Result<Vec<u8>, TrainError> {
    let t = config.tasks.len();
    let mut map = data.batch.to_golden(config, &data.labels);
    map.remove(GOLDEN_PROBS);
    map.insert(
        LABELS.to_string(),
        Tensor::f32(vec![data.len(), t], data.labels.clone()),
    );
    Ok(to_safetensors(&map)?)
}

/// Loads the data `config` names (relative paths against `data_root`), and writes the three
/// splits and the initial weights for `seed` (default `train.seed`) into `out`.
pub fn export(
    config: &Config,
    data_root: &Path,
    seed: Option<u64>,
    out: &Path,
) -> Result<ExportReport, TrainError> {
    config.validate()?;
    let mut opts = TrainOptions::new(out);
    opts.data_root = data_root.to_path_buf();
    let splits = load_data(config, &opts)?;
    let seed = seed.unwrap_or(config.train.seed);
    let init = model::init_weights(config, &splits.train.batch.dense, seed);
    let files = [
        ("train.safetensors", split_bytes(config, &splits.train)?),
        ("val.safetensors", split_bytes(config, &splits.val)?),
        ("test.safetensors", split_bytes(config, &splits.test)?),
        ("init.safetensors", to_safetensors(&init)?),
    ];
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, &b[..])).collect();
    write_dir_atomically(out, &refs)?;
    Ok(vec![
        ("train", splits.train.len()),
        ("val", splits.val.len()),
        ("test", splits.test.len()),
    ])
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use uie_model::checkpoint::{from_safetensors, golden_input_name};
    use uie_model::RawBatch;

    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn exported_splits_are_the_trainers_rows() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = Config::load(&root().join("models/census-ple.toml")).expect("config");
        let out = tmp.path().join("export");
        let report = export(&config, &root(), Some(7), &out).expect("export");
        let splits = load_data(
            &config,
            &TrainOptions {
                data_root: root(),
                ..TrainOptions::new(&out)
            },
        )
        .expect("data");
        assert_eq!(
            report,
            vec![
                ("train", splits.train.len()),
                ("val", splits.val.len()),
                ("test", splits.test.len())
            ]
        );
        for (name, data) in [("train", &splits.train), ("test", &splits.test)] {
            let path = out.join(format!("{name}.safetensors"));
            let map = from_safetensors(&std::fs::read(&path).expect("read"), &path).expect("parse");
            let labels = map[LABELS].as_f32().expect("f32");
            assert_eq!(map[LABELS].shape, vec![data.len(), 2]);
            assert_eq!(labels, &data.labels[..]);
            // The inputs read back as the same batch (the labels stand in for the probabilities).
            let mut golden = map.clone();
            golden.insert(GOLDEN_PROBS.to_string(), map[LABELS].clone());
            let (batch, _) = RawBatch::from_golden(&config, &golden).expect("batch");
            assert_eq!(batch, data.batch);
            assert!(map.contains_key(&golden_input_name("education")));
        }
        let path = out.join("init.safetensors");
        let init = from_safetensors(&std::fs::read(&path).expect("read"), &path).expect("parse");
        assert_eq!(
            init,
            model::init_weights(&config, &splits.train.batch.dense, 7)
        );
    }
}

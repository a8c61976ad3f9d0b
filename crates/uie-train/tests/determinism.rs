//! Same seed, same data and weights: the Census split, the MovieLens preparation (its sampled
//! negatives), the initial weights and a short training run (shuffles, stream clustering,
//! k-means++) each come out byte-identical twice for one seed, and differ for another seed.

use std::path::{Path, PathBuf};

use uie_model::checkpoint::to_safetensors;
use uie_model::Config;
use uie_train::data::{census, movielens, Splits};
use uie_train::model::init_weights;
use uie_train::{train, TrainOptions};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn config(name: &str) -> Config {
    Config::load(&repo().join("models").join(name)).expect("config")
}

/// Every split's rows as bytes (the golden-row safetensors of inputs and labels), so equality is
/// byte equality.
fn split_bytes(config: &Config, splits: &Splits) -> Vec<Vec<u8>> {
    [&splits.train, &splits.val, &splits.test]
        .iter()
        .map(|d| {
            let map = d.batch.to_golden(config, &d.labels);
            let mut bytes = to_safetensors(&map).expect("safetensors");
            bytes.extend(d.users.iter().flat_map(|u| u.to_le_bytes()));
            bytes.extend(d.past_counts.iter().flat_map(|c| c.to_le_bytes()));
            bytes
        })
        .collect()
}

#[test]
fn census_split_depends_only_on_the_split_seed() {
    let config = config("census-ple.toml");
    let a = census::load(&config, &repo()).expect("census a");
    let b = census::load(&config, &repo()).expect("census b");
    assert_eq!(split_bytes(&config, &a), split_bytes(&config, &b));
    let mut other = config.clone();
    other.data.split_seed += 1;
    let c = census::load(&other, &repo()).expect("census c");
    assert_eq!(a.train.len(), c.train.len());
    assert_ne!(split_bytes(&config, &a)[0], split_bytes(&config, &c)[0]);
}

#[test]
fn movielens_negatives_depend_only_on_the_split_seed() {
    let config = config("movielens-uie.toml");
    let a = movielens::load(&config, &repo()).expect("movielens a");
    let b = movielens::load(&config, &repo()).expect("movielens b");
    assert_eq!(split_bytes(&config, &a), split_bytes(&config, &b));
    assert_eq!(a.user_train_counts, b.user_train_counts);
    let mut other = config.clone();
    other.data.split_seed += 1;
    let c = movielens::load(&other, &repo()).expect("movielens c");
    // The positives and the split are the same (by time); the negatives are drawn anew.
    assert_eq!(a.train.len(), c.train.len());
    assert_ne!(split_bytes(&config, &a)[0], split_bytes(&config, &c)[0]);
}

#[test]
fn initial_weights_depend_only_on_the_seed() {
    for name in ["census-ple.toml", "movielens-uie.toml"] {
        let config = config(name);
        let dense = [1.0f32, 2.0, 3.0].repeat(config.features.dense.len());
        let bytes = |seed| to_safetensors(&init_weights(&config, &dense, seed)).expect("bytes");
        assert_eq!(bytes(1), bytes(1), "{name}");
        assert_ne!(bytes(1), bytes(2), "{name}");
    }
}

/// `(file name, bytes)` of the files of one checkpoint directory.
type Files = Vec<(String, Vec<u8>)>;

/// The files of a checkpoint directory that hold numbers of the run (everything but
/// `meta.json`, whose metrics include wall times).
fn run_files(dir: &Path) -> Files {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("checkpoint dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors") || n == "config.toml" || n == "uie_state.json")
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).expect("read");
            (n, bytes)
        })
        .collect()
}

fn short_run(config: &Config, out: &Path, seed: u64) -> (Files, Files) {
    let mut opts = TrainOptions::new(out);
    opts.data_root = repo();
    opts.seed = Some(seed);
    opts.epochs = Some(1);
    opts.max_train_rows = Some(1200);
    opts.max_eval_rows = Some(400);
    train(config, &opts).expect("training");
    (run_files(&out.join("best")), run_files(&out.join("last")))
}

#[test]
fn a_short_training_run_is_reproducible() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut census = config("census-ple.toml");
    census.train.batch_size = 128;
    // UIE without warm-up: the centres are initialised by k-means++ before the first step and
    // stream clustering (with reseeding) runs on every step.
    let mut uie = config("movielens-uie.toml");
    uie.train.batch_size = 128;
    uie.uie.warmup_epochs = 0;
    uie.uie.clustering.reseed_after = 3;
    for (name, config) in [("census", census), ("uie", uie)] {
        let a = short_run(&config, &tmp.path().join(format!("{name}-a")), 5);
        let b = short_run(&config, &tmp.path().join(format!("{name}-b")), 5);
        let c = short_run(&config, &tmp.path().join(format!("{name}-c")), 6);
        assert!(
            a.1.iter().any(|(n, _)| n == "optimizer.safetensors"),
            "{name}"
        );
        assert_eq!(a, b, "{name}: two runs of seed 5 differ");
        let weights = |files: &Files| {
            files
                .iter()
                .find(|(n, _)| n == "weights.safetensors")
                .map(|(_, b)| b.clone())
                .expect("weights")
        };
        assert_ne!(weights(&a.1), weights(&c.1), "{name}: seeds 5 and 6 agree");
    }
}

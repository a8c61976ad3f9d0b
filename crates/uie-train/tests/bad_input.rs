//! Bad input to the real `uie-train` binary: configs (missing, empty, unknown field, K > N, zero
//! experts, zero widths, unknown task), data files (missing, empty, truncated, not gzip, wrong
//! columns, NaN, an empty MovieLens folder, a rating of an unknown movie), checkpoints to resume
//! (missing, garbage) and output paths. Every case exits non-zero with ONE line on stderr,
//! `error: …`, naming the problem, never a panic, and before any training starts. The rows of
//! `docs/bad-input.md` (uie-train) point here.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use uie_testkit::cli;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn census_text() -> String {
    std::fs::read_to_string(repo().join("models/census-ple.toml")).expect("census config")
}

fn movielens_text() -> String {
    std::fs::read_to_string(repo().join("models/movielens-uie.toml")).expect("movielens config")
}

/// Writes `text` with `from` replaced by `to` (which must occur) to `dir/name`.
fn edited(dir: &Path, name: &str, text: &str, from: &str, to: &str) -> PathBuf {
    assert!(
        text.contains(from),
        "{from:?} not in the config: update this test"
    );
    let path = dir.join(name);
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write config");
    path
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// Runs `uie-train train` and expects exit code 1 with one `error: ` line holding every fragment.
fn train_err(config: &Path, out: &Path, extra: &[&str], fragments: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_uie-train"))
        .arg("train")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--data-root")
        .arg(repo())
        .arg("--quiet")
        .args(extra)
        .output()
        .expect("runs");
    let line = cli::one_line_error(&output, fragments);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.contains("epoch"),
        "training started before the error: {stdout}"
    );
    line
}

#[test]
fn missing_empty_and_non_toml_configs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    train_err(
        &tmp.path().join("nope.toml"),
        &out,
        &[],
        &["loading config", "nope.toml", "No such file"],
    );
    let empty = tmp.path().join("empty.toml");
    std::fs::write(&empty, "").expect("write");
    train_err(&empty, &out, &[], &["empty.toml", "missing field `model`"]);
    let binary = tmp.path().join("binary.toml");
    std::fs::write(&binary, b"\x1f\x8b\x08\x00garbage\x00\xff").expect("write");
    train_err(
        &binary,
        &out,
        &[],
        &["binary.toml", "stream did not contain valid UTF-8"],
    );
    assert!(!out.exists());
}

#[test]
fn impossible_configs_name_the_field() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let (census, ml) = (census_text(), movielens_text());
    let cases: Vec<(&str, &str, &str, &str, &str)> = vec![
        (
            "unknown-field",
            &census,
            "embed_dim = 8",
            "embed_dim = 8\nembedding_size = 8",
            "config syntax: model.embedding_size (line",
        ),
        (
            "k-above-n",
            &ml,
            "centres = 256\nk = 3",
            "centres = 256\nk = 300",
            "config field uie.upe.k: must be between 1 and 256, got 300",
        ),
        (
            "zero-experts",
            &census,
            "shared_experts = 2\nspecific_experts = 2",
            "shared_experts = 0\nspecific_experts = 0",
            "config field ple: shared_experts + specific_experts must be at least 1",
        ),
        (
            "zero-width",
            &census,
            "expert_hidden = [64, 32]",
            "expert_hidden = [64, 0]",
            "config field ple.expert_hidden[1]: must be between 1 and 65536, got 0",
        ),
        (
            "zero-embed",
            &census,
            "embed_dim = 8",
            "embed_dim = 0",
            "config field model.embed_dim",
        ),
        (
            "bad-fraction",
            &census,
            "val_fraction = 0.2",
            "val_fraction = 1.5",
            "config field data.val_fraction",
        ),
    ];
    for (name, text, from, to, fragment) in cases {
        let config = edited(tmp.path(), &format!("{name}.toml"), text, from, to);
        train_err(&config, &out, &[], &[&format!("{name}.toml"), fragment]);
    }
    assert!(!out.exists());
}

#[test]
fn unknown_task_and_feature_names() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let census = census_text();
    let config = edited(
        tmp.path(),
        "task.toml",
        &census,
        "name = \"never_married\"",
        "name = \"owns_a_boat\"",
    );
    train_err(
        &config,
        &out,
        &[],
        &["task \"owns_a_boat\": not a task of this data set (known: "],
    );
    let config = edited(
        tmp.path(),
        "feature.toml",
        &census,
        "dense = [\"age\",",
        "dense = [\"shoe_size\", \"age\",",
    );
    train_err(&config, &out, &[], &["feature \"shoe_size\""]);
    assert!(!out.exists());
}

/// The census config reading `path` (absolute) instead of the bundled file.
fn census_on(dir: &Path, name: &str, path: &Path) -> PathBuf {
    edited(
        dir,
        &format!("{name}.toml"),
        &census_text(),
        "path = \"fixtures/datasets/census-income-kdd/census-income.test.gz\"",
        &format!("path = {:?}", path.display().to_string()),
    )
}

#[test]
fn missing_empty_truncated_and_wrong_format_census_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let real =
        std::fs::read(repo().join("fixtures/datasets/census-income-kdd/census-income.test.gz"))
            .expect("census data");
    let mut first_line = String::new();
    flate2::read::GzDecoder::new(&real[..])
        .take(4096)
        .read_to_string(&mut first_line)
        .ok();
    let first_line = first_line.lines().next().expect("a line").to_string();
    let age_nan = first_line.replacen(first_line.split(',').next().expect("age"), "nan", 1);
    let age_inf = first_line.replacen(first_line.split(',').next().expect("age"), "inf", 1);
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "empty-file",
            Vec::new(),
            vec!["empty-file.gz: the file holds no rows"],
        ),
        (
            "empty-gzip",
            gz(b""),
            vec!["empty-gzip.gz: the file holds no rows"],
        ),
        (
            "truncated",
            real[..real.len() / 3].to_vec(),
            vec!["truncated.gz: not a complete gzip file"],
        ),
        (
            "not-gzip",
            b"39, Private, 0, 0\n".to_vec(),
            vec!["not-gzip.gz", "invalid gzip header"],
        ),
        (
            "wrong-columns",
            gz(b"a,b,c\n"),
            vec!["wrong-columns.gz: line 1, column 3: expected 42 columns, found 3"],
        ),
        (
            "nan",
            gz(format!("{first_line}\n{age_nan}\n").as_bytes()),
            vec!["nan.gz: line 2, column 0: \"nan\" is not finite"],
        ),
        (
            "inf",
            gz(format!("{age_inf}\n").as_bytes()),
            vec!["inf.gz: line 1, column 0: \"inf\" is not finite"],
        ),
    ];
    for (name, bytes, fragments) in cases {
        let data = tmp.path().join(format!("{name}.gz"));
        std::fs::write(&data, bytes).expect("write data");
        let config = census_on(tmp.path(), name, &data);
        train_err(&config, &out, &[], &fragments);
    }
    let config = census_on(tmp.path(), "missing", &tmp.path().join("missing.gz"));
    train_err(&config, &out, &[], &["missing.gz", "No such file"]);
    assert!(!out.exists());
}

#[test]
fn empty_and_bad_movielens_folders() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let ml = movielens_text();
    let on = |name: &str, dir: &Path| {
        edited(
            tmp.path(),
            &format!("{name}.toml"),
            &ml,
            "path = \"fixtures/datasets/movielens-latest-small\"",
            &format!("path = {:?}", dir.display().to_string()),
        )
    };
    let real = repo().join("fixtures/datasets/movielens-latest-small");
    let movies = std::fs::read_to_string(real.join("movies.csv")).expect("movies");
    let folder = |name: &str, ratings: Option<&str>| -> PathBuf {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        if let Some(r) = ratings {
            std::fs::write(dir.join("movies.csv"), &movies).expect("movies");
            std::fs::write(dir.join("ratings.csv"), r).expect("ratings");
        }
        dir
    };
    let dir = folder("empty-dir", None);
    train_err(
        &on("empty-dir", &dir),
        &out,
        &[],
        &["empty-dir/movies.csv", "No such file"],
    );
    let dir = folder("header-only", Some("userId,movieId,rating,timestamp\n"));
    train_err(
        &on("header-only", &dir),
        &out,
        &[],
        &["header-only/ratings.csv: no ratings below the header"],
    );
    let dir = folder("empty-ratings", Some(""));
    train_err(
        &on("empty-ratings", &dir),
        &out,
        &[],
        &["empty-ratings/ratings.csv"],
    );
    let dir = folder(
        "bad-line",
        Some("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,x,4.0,964982703\n"),
    );
    train_err(
        &on("bad-line", &dir),
        &out,
        &[],
        &["bad-line/ratings.csv: line 3"],
    );
    let dir = folder(
        "unknown-movie",
        Some("userId,movieId,rating,timestamp\n1,9223372036854775807,4.0,964982703\n"),
    );
    train_err(
        &on("unknown-movie", &dir),
        &out,
        &[],
        &["unknown-movie/ratings.csv: line 2, column 1: movieId 9223372036854775807 is not in"],
    );
    assert!(!out.exists());
}

#[test]
fn bad_resume_checkpoints_and_output_paths() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("census.toml");
    std::fs::write(&config, census_text()).expect("config");
    let out = tmp.path().join("run");
    let missing = tmp.path().join("no-such-last");
    train_err(
        &config,
        &out,
        &["--resume", missing.to_str().expect("utf8")],
        &["no-such-last", "not found"],
    );
    let garbage = tmp.path().join("garbage-last");
    std::fs::create_dir(&garbage).expect("dir");
    std::fs::copy(&config, garbage.join("config.toml")).expect("config");
    std::fs::write(garbage.join("weights.safetensors"), b"garbage").expect("weights");
    train_err(
        &config,
        &out,
        &["--resume", garbage.to_str().expect("utf8")],
        &["garbage-last/weights.safetensors: not a valid safetensors file"],
    );
    // The output path is a file.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").expect("file");
    train_err(
        &config,
        &file,
        &["--max-train-rows", "64"],
        &["a-file: the output path exists and is not a directory"],
    );
}

#[test]
fn bad_flags_and_eval_checkpoints() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("census.toml");
    std::fs::write(&config, census_text()).expect("config");
    let out = tmp.path().join("run");
    train_err(
        &config,
        &out,
        &["--epochs", "0"],
        &["config field train.epochs: must be between 1 and 100000, got 0"],
    );
    train_err(
        &config,
        &out,
        &["--max-train-rows", "0"],
        &["train, validation and test sets must each have rows"],
    );
    // `eval` of a missing checkpoint and of a directory that is not one.
    for (name, fragments) in [
        (
            "no-such-ckpt",
            vec![
                "reading checkpoint",
                "no-such-ckpt: checkpoint directory not found",
            ],
        ),
        (
            "not-a-ckpt",
            vec!["reading checkpoint", "not-a-ckpt/config.toml: No such file"],
        ),
    ] {
        let dir = tmp.path().join(name);
        if name == "not-a-ckpt" {
            std::fs::create_dir(&dir).expect("dir");
        }
        let output = Command::new(env!("CARGO_BIN_EXE_uie-train"))
            .arg("eval")
            .arg("--checkpoint")
            .arg(&dir)
            .output()
            .expect("runs");
        cli::one_line_error(&output, &fragments);
    }
}

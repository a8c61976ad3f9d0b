//! Crash safety of training, proven by killing the real `uie-train` process: a SIGKILL at any
//! moment (mid-epoch, or while a checkpoint is being written) leaves `best/` and `last/` intact
//! and readable, and `--resume` from `last/` carries on. Kills land at several offsets after the
//! first `last/` checkpoint appears, so some fall inside an epoch and some inside a write.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use uie_model::Checkpoint;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The census PLE config with early stopping out of the way, so every round trains.
fn config(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("models/census-ple.toml")).expect("config");
    assert!(
        text.contains("patience = 3"),
        "models/census-ple.toml changed: update this test"
    );
    let path = dir.join("census-no-early-stop.toml");
    std::fs::write(&path, text.replace("patience = 3", "patience = 1000")).expect("write config");
    path
}

fn train(config: &Path, out: &Path, epochs: usize, resume: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uie-train"));
    cmd.arg("train")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--data-root")
        .arg(repo())
        .arg("--epochs")
        .arg(epochs.to_string())
        .arg("--quiet")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if resume {
        cmd.arg("--resume").arg(out.join("last"));
    }
    cmd
}

/// Waits until `last/` holds a checkpoint of at least `epoch` epochs.
fn wait_for_epoch(child: &mut Child, last: &Path, epoch: usize) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(ck) = Checkpoint::read(last) {
            if ck.meta.epoch >= epoch {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("uie-train exited early ({status})");
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of epoch {epoch} in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_during_training_leaves_usable_checkpoints_and_resume_continues() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path());
    let out = tmp.path().join("run");
    let last = out.join("last");
    let best = out.join("best");
    let mut done = 0;
    // Each round: start (or resume), wait for one more finished epoch, kill after an offset.
    for (round, offset_ms) in [0u64, 350, 1100, 1900].into_iter().enumerate() {
        let mut child = train(&config, &out, 30, round > 0)
            .spawn()
            .expect("start uie-train");
        wait_for_epoch(&mut child, &last, done + 1);
        std::thread::sleep(Duration::from_millis(offset_ms));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let l = Checkpoint::read(&last).expect("last/ is a complete checkpoint after the kill");
        let b = Checkpoint::read(&best).expect("best/ is a complete checkpoint after the kill");
        assert!(
            l.meta.epoch > done,
            "round {round}: last/ went back to epoch {}",
            l.meta.epoch
        );
        assert!(b.meta.epoch >= 1 && b.meta.epoch <= l.meta.epoch);
        assert!(
            l.extra.contains_key("optimizer.safetensors"),
            "last/ lost its optimizer state"
        );
        done = l.meta.epoch;
    }
    // A final resume runs to completion from the last good checkpoint.
    let status = train(&config, &out, done + 1, true)
        .status()
        .expect("resume");
    assert!(status.success(), "resume after the kills failed ({status})");
    let l = Checkpoint::read(&last).expect("last after resume");
    assert_eq!(l.meta.epoch, done + 1);
    let leftovers: Vec<String> = std::fs::read_dir(&out)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporaries left behind: {leftovers:?}"
    );
}

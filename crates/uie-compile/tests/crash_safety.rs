//! Crash safety of compiling, proven by killing the real `uie-compile` process: a SIGKILL at any
//! moment of `build` over an existing good output (reading the checkpoint, writing the data file,
//! writing the model file, between the renames) leaves the output path holding either the
//! complete old model or the complete new one — byte for byte, with the data file it references —
//! and that model loads and runs in tract. The next successful compile leaves exactly the model
//! and its data file: no temporary, no stale data file.
//!
//! The checkpoint has a 2,000,000 × 32 item table (256 MB), so writing takes long enough for the
//! kills to land inside the writes; the kill points are found by watching the writer's temporary
//! files, and the test asserts that kills did land mid-write.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use uie_compile::onnx;
use uie_compile::verify::{batch_inputs, run_engine};
use uie_model::{Checkpoint, Plan, Tensor, TensorMap};
use uie_runtime::engine::{Engine, EngineOptions};
use uie_testkit::assertions::listing;
use uie_testkit::checkpoints::rows;
use uie_testkit::configs::{config, TINY_PLE};

const MODEL: &str = "model.onnx";
const BUCKETS: usize = 2_000_000;
const DIM: usize = 32;

/// The tiny config with a big item table; weights from a cheap seeded sequence.
fn big_checkpoint(seed: u64) -> Checkpoint {
    let text = TINY_PLE
        .replace("embed_dim = 3", &format!("embed_dim = {DIM}"))
        .replace("buckets = 11", &format!("buckets = {BUCKETS}"));
    let cfg = config(&text);
    let mut weights = TensorMap::new();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for spec in Plan::new(&cfg).tensor_specs() {
        let n: usize = spec.shape.iter().product();
        let v = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = (x >> 40) as f32 / (1u64 << 24) as f32;
                if spec.name == "dense.std" {
                    0.5 + 1.5 * u
                } else {
                    -0.5 + u
                }
            })
            .collect();
        weights.insert(spec.name, Tensor::f32(spec.shape, v));
    }
    Checkpoint::new(cfg, weights, "uie-compile crash-safety test")
}

fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What a complete output is: the model's hash and the data file it references (name, hash).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Output {
    model: String,
    data: Option<(String, String)>,
}

/// The output at `dir/model.onnx`, with every external tensor's file present and long enough.
fn snapshot(dir: &Path) -> Output {
    let path = dir.join(MODEL);
    let s = onnx::summarize_file(&path).expect("the output parses as a model");
    assert!(s.external_files.len() <= 1, "{:?}", s.external_files);
    let data = s.external_files.first().map(|f| {
        assert_eq!(
            f.size_on_disk,
            Some(f.needed_bytes),
            "the data file {} is missing or short",
            f.location
        );
        (f.location.clone(), sha256_file(&dir.join(&f.location)))
    });
    Output {
        model: sha256_file(&path),
        data,
    }
}

/// `probs` of a few rows (extreme ids included) from the model at `dir/model.onnx`.
fn probs(dir: &Path, ck_config: &uie_model::Config) -> Vec<f32> {
    let engine = Engine::load_path(&dir.join(MODEL), EngineOptions::default()).expect("loads");
    let inputs = batch_inputs(ck_config, &rows(ck_config, 12, 7)).expect("inputs");
    let outs = run_engine(&engine, &inputs, "tract").expect("runs");
    outs[0].1.as_f32().expect("f32").to_vec()
}

fn build(checkpoint: &Path, out: &Path, external: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uie-compile"));
    cmd.arg("build")
        .arg(checkpoint)
        .arg("-o")
        .arg(out.join(MODEL))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if external {
        cmd.arg("--external-data");
    }
    cmd
}

fn run_to_end(checkpoint: &Path, out: &Path, external: bool) {
    let status = build(checkpoint, out, external).status().expect("runs");
    assert!(status.success(), "uie-compile build failed");
}

/// When to kill a running build.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// A fixed time after the start.
    After(u64),
    /// Once the temporary named `.<name>.tmp-<pid>` holds at least this many bytes.
    Temp(&'static str, u64),
}

/// Starts a build and SIGKILLs it at `at`. Returns whether the kill landed while a temporary of
/// the child existed (mid-write), or `None` when the build finished first.
fn kill_build(checkpoint: &Path, out: &Path, external: bool, at: KillAt) -> Option<bool> {
    let start = Instant::now();
    let mut child: Child = build(checkpoint, out, external).spawn().expect("start");
    let pid = child.id();
    let temp = |name: &str| out.join(format!(".{name}.tmp-{pid}"));
    let temps = [temp(MODEL), temp(&format!("{MODEL}.data"))];
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "the build failed on its own");
            return None;
        }
        let due = match at {
            KillAt::After(ms) => start.elapsed() >= Duration::from_millis(ms),
            KillAt::Temp(name, bytes) => std::fs::metadata(temp(name))
                .map(|m| m.len() >= bytes)
                .unwrap_or(false),
        };
        if due {
            let mid_write = temps.iter().any(|t| t.exists());
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            return Some(mid_write);
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no kill point in time"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn kill_rounds(external: bool, kill_points: &[KillAt]) {
    let tmp = tempfile::tempdir().expect("tmp");
    let cks: Vec<PathBuf> = (0..2)
        .map(|i| {
            let dir = tmp.path().join(format!("ck{i}"));
            big_checkpoint(100 + i as u64).write(&dir).expect("write");
            dir
        })
        .collect();
    let cfg = Checkpoint::read(&cks[0]).expect("read").config;
    // The two complete outputs, each compiled alone, and what they predict.
    let refs: Vec<(Output, Vec<f32>)> = cks
        .iter()
        .enumerate()
        .map(|(i, ck)| {
            let dir = tmp.path().join(format!("ref{i}"));
            std::fs::create_dir(&dir).expect("dir");
            run_to_end(ck, &dir, external);
            (snapshot(&dir), probs(&dir, &cfg))
        })
        .collect();
    assert_ne!(
        refs[0].1, refs[1].1,
        "the two checkpoints predict differently"
    );
    assert_eq!(refs[0].0.data.is_some(), external);

    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("dir");
    run_to_end(&cks[0], &out, external);
    let mut current = 0;
    let mut mid_write = 0;
    for &at in kill_points {
        // Compile the other checkpoint over the current good output, and kill it.
        let next = 1 - current;
        let killed = kill_build(&cks[next], &out, external, at);
        let got = snapshot(&out);
        let which = refs
            .iter()
            .position(|(r, _)| *r == got)
            .unwrap_or_else(|| panic!("{at:?}: the output is neither complete model: {got:?}"));
        assert!(
            which == current || which == next,
            "{at:?}: unexpected output"
        );
        if killed.is_none() {
            assert_eq!(
                which, next,
                "{at:?}: a finished build must leave the new model"
            );
        }
        assert_eq!(probs(&out, &cfg), refs[which].1, "{at:?}: predictions");
        mid_write += usize::from(killed == Some(true));
        current = which;
    }
    assert!(
        mid_write >= 2,
        "only {mid_write} kills landed mid-write: make the checkpoint bigger"
    );

    // The state of a kill between the data file's rename and the model's: the other output's
    // data file sits beside the current model, which still loads and predicts as before.
    if external {
        let (name, _) = refs[1 - current].0.data.clone().expect("data");
        std::fs::copy(
            tmp.path().join(format!("ref{}", 1 - current)).join(&name),
            out.join(&name),
        )
        .expect("copy");
        assert_eq!(snapshot(&out), refs[current].0);
        assert_eq!(probs(&out, &cfg), refs[current].1);
    }

    // The next successful compile leaves exactly the model and its data file.
    let next = 1 - current;
    run_to_end(&cks[next], &out, external);
    assert_eq!(snapshot(&out), refs[next].0);
    let mut want = vec![MODEL.to_string()];
    want.extend(refs[next].0.data.as_ref().map(|(n, _)| n.clone()));
    want.sort();
    assert_eq!(listing(&out), want);
}

#[test]
fn sigkill_during_an_external_data_build_leaves_the_old_or_the_new_model() {
    let data = "model.onnx.data";
    kill_rounds(
        true,
        &[
            KillAt::After(0),
            KillAt::Temp(data, 1),
            KillAt::Temp(data, 64 << 20),
            KillAt::Temp(data, 200 << 20),
            KillAt::Temp(MODEL, 0),
            KillAt::After(1500),
            KillAt::Temp(data, 128 << 20),
            KillAt::After(4000),
        ],
    );
}

#[test]
fn sigkill_during_an_inline_build_leaves_the_old_or_the_new_model() {
    kill_rounds(
        false,
        &[
            KillAt::After(0),
            KillAt::Temp(MODEL, 1),
            KillAt::Temp(MODEL, 100 << 20),
            KillAt::Temp(MODEL, 200 << 20),
            KillAt::After(1500),
            KillAt::After(4000),
        ],
    );
}

//! The `checkpoint_read` fuzz target's regression fixtures (`fixtures/fuzz-regressions/
//! checkpoint_read/`, see `docs/fuzzing.md`) through the same function, on stable: every file must
//! give a checkpoint (names starting `ok-`) or a typed error (every other name), never a panic.

use std::path::{Path, PathBuf};

use uie_model::{Checkpoint, CheckpointFiles};

/// The fuzz target's file separator (`fuzz/src/lib.rs`).
const SEPARATOR: &[u8] = b"\n\0--uie-fuzz-file--\0\n";

fn split_files(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        parts.push(&rest[..i]);
        rest = &rest[i + SEPARATOR.len()..];
    }
    parts.push(rest);
    parts
}

fn fixtures(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/fuzz-regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn checkpoint_read_regressions_return_without_panicking() {
    let files = fixtures("checkpoint_read");
    assert!(files.len() >= 3, "fixtures missing: {files:?}");
    for path in files {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        eprintln!("{name}");
        let data = std::fs::read(&path).expect("read fixture");
        let parts = split_files(&data);
        let part = |i: usize| parts.get(i).copied().unwrap_or_default();
        let result = Checkpoint::from_files(
            &CheckpointFiles {
                config: part(0),
                weights: part(1),
                meta: part(2),
                golden: parts.get(3).copied(),
            },
            Path::new("fuzz"),
        );
        match result {
            Ok(_) => assert!(name.starts_with("ok-"), "{name}: expected an error"),
            Err(e) => assert!(!name.starts_with("ok-"), "{name}: {e}"),
        }
    }
}

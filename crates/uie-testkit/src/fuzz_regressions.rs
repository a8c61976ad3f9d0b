//! The walk over a fuzz target's regression fixtures (`fixtures/fuzz-regressions/<target>/`, see
//! `docs/fuzzing.md`), shared by the `fuzz_regressions` tests of uie-model, uie-runtime and
//! uie-serve.

use std::fmt::Display;
use std::path::PathBuf;

/// The regular files of `fixtures/fuzz-regressions/<target>/`, sorted by name.
fn fixtures(target: &str) -> Vec<PathBuf> {
    let dir = crate::repo_root()
        .join("fixtures/fuzz-regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `run` on every fixture of `target` (at least 3 must exist): files named `ok-*` must
/// return `Ok`, every other file a typed error; a panic fails the test.
pub fn check_regressions<E: Display>(target: &str, mut run: impl FnMut(&[u8]) -> Result<(), E>) {
    let files = fixtures(target);
    assert!(files.len() >= 3, "fixtures missing: {files:?}");
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        eprintln!("{name}");
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        match run(&data) {
            Ok(()) => assert!(name.starts_with("ok-"), "{name}: expected an error"),
            Err(e) => assert!(!name.starts_with("ok-"), "{name}: {e}"),
        }
    }
}

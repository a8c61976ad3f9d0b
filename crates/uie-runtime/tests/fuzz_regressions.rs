//! The `model_load` fuzz target's regression fixtures (`fixtures/fuzz-regressions/model_load/`,
//! see `docs/fuzzing.md`) through the same function, on stable: every file must give a model
//! (names starting `ok-`) or a typed error (every other name), never a panic.

use std::path::{Path, PathBuf};

use uie_runtime::Model;

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
fn model_load_regressions_return_without_panicking() {
    let files = fixtures("model_load");
    assert!(files.len() >= 3, "fixtures missing: {files:?}");
    for path in files {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        eprintln!("{name}");
        let data = std::fs::read(&path).expect("read fixture");
        match Model::load_bytes(&data) {
            Ok(_) => assert!(name.starts_with("ok-"), "{name}: expected an error"),
            Err(e) => assert!(!name.starts_with("ok-"), "{name}: {e}"),
        }
    }
}

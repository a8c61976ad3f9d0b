//! Atomic file writes: a temporary file in the target's directory, fsync, rename, then fsync of
//! the directory. On failure the temporary file is removed and nothing appears under the target
//! name (a previous file there is left untouched).

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::CompileError;

/// Writes `bytes` to `path` atomically.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CompileError> {
    let name = path.file_name().ok_or_else(|| {
        CompileError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(|e| CompileError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| CompileError::io(&tmp, e))?;
        f.sync_all().map_err(|e| CompileError::io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| CompileError::io(path, e))?;
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

//! Atomic file writes: a temporary file in the target's directory, fsync, rename, then fsync of
//! the directory. On failure the temporary file is removed and nothing appears under the target
//! name (a previous file there is left untouched).
//!
//! [`TempFile`] is the building block: a dot-named temporary beside the target that deletes
//! itself when dropped uncommitted (an error, or a panic unwinding through the writer). A process
//! killed outright leaves at most a `.<name>.tmp-<pid>` file, never a partial file under the
//! target name.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::CompileError;

/// The directory of `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A temporary file beside a target path, removed on drop unless renamed onto the target.
pub(crate) struct TempFile {
    tmp: PathBuf,
    target: PathBuf,
    file: Option<fs::File>,
    done: bool,
}

impl TempFile {
    /// Creates `.<name>.tmp-<pid>` in the target's directory.
    pub(crate) fn create(target: &Path) -> Result<TempFile, CompileError> {
        let name = target.file_name().ok_or_else(|| {
            CompileError::io(
                target,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
            )
        })?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = parent_dir(target).join(tmp_name);
        let file = fs::File::create(&tmp).map_err(|e| CompileError::io(&tmp, e))?;
        Ok(TempFile {
            tmp,
            target: target.to_path_buf(),
            file: Some(file),
            done: false,
        })
    }

    /// The temporary path.
    pub(crate) fn path(&self) -> &Path {
        &self.tmp
    }

    /// The open file, for writing.
    pub(crate) fn file(&mut self) -> Result<&mut fs::File, CompileError> {
        let tmp = self.tmp.clone();
        self.file
            .as_mut()
            .ok_or_else(|| CompileError::io(&tmp, std::io::Error::other("file already closed")))
    }

    /// Flushes the data to disk and closes the file (the rename comes later).
    pub(crate) fn sync(&mut self) -> Result<(), CompileError> {
        if let Some(f) = self.file.take() {
            f.sync_all().map_err(|e| CompileError::io(&self.tmp, e))?;
        }
        Ok(())
    }

    /// Syncs, then renames the temporary file onto the target.
    pub(crate) fn commit(mut self) -> Result<(), CompileError> {
        self.sync()?;
        fs::rename(&self.tmp, &self.target).map_err(|e| CompileError::io(&self.target, e))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            self.file = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Fsyncs a directory so renames in it are durable (best effort: some filesystems refuse).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CompileError> {
    let mut tmp = TempFile::create(path)?;
    let p = tmp.path().to_path_buf();
    tmp.file()?
        .write_all(bytes)
        .map_err(|e| CompileError::io(&p, e))?;
    tmp.commit()?;
    sync_dir(&parent_dir(path));
    Ok(())
}

//! Atomic file writes: a temporary file in the target's directory, fsync, rename, then fsync of
//! the directory. On failure the temporary file is removed and nothing appears under the target
//! name (a previous file there is left untouched).
//!
//! [`TempFile`] is the building block: a dot-named temporary beside the target that deletes
//! itself when dropped uncommitted (an error, or a panic unwinding through the writer). A process
//! killed outright leaves at most a `.<name>.tmp-<pid>` file, never a partial file under the
//! target name; [`remove_dead_temporaries`] removes those of processes that no longer exist (the
//! writers call it after each successful write).

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::CompileError;

/// What sits between a target's name and the writer's pid in a temporary's name.
const TMP_INFIX: &str = ".tmp-";

/// The file name of `path`, or an I/O error naming it (`/`, `..`).
pub(crate) fn file_name(path: &Path) -> Result<&std::ffi::OsStr, CompileError> {
    path.file_name().ok_or_else(|| {
        CompileError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        )
    })
}

/// Removes the `.<name>.tmp-<pid>` files in `dir` (for each `name` in `names`) left by writers
/// that were killed: their process no longer exists (checked only where `/proc` exists; this
/// process's own temporaries are kept). Best effort: a file that cannot be removed stays.
pub(crate) fn remove_dead_temporaries(dir: &Path, names: &[&str]) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefixes: Vec<String> = names.iter().map(|n| format!(".{n}{TMP_INFIX}")).collect();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(pid) = prefixes
            .iter()
            .find_map(|p| file_name.strip_prefix(p.as_str()))
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

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
        let name = file_name(target)?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(TMP_INFIX);
        tmp_name.push(std::process::id().to_string());
        let tmp = parent_dir(target).join(tmp_name);
        let file = fs::File::create(&tmp).map_err(|e| CompileError::io(&tmp, e))?;
        Ok(TempFile {
            tmp,
            target: target.to_path_buf(),
            file: Some(file),
            done: false,
        })
    }

    /// Changes the path [`TempFile::commit`] renames onto (a name known only once the content is
    /// written, e.g. one made from its hash). The new target must be in the same directory.
    pub(crate) fn retarget(&mut self, target: PathBuf) {
        self.target = target;
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
    if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
        remove_dead_temporaries(&parent_dir(path), &[name]);
    }
    Ok(())
}

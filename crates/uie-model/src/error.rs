//! The one error type of `uie-model`: every failure names the file, field or tensor at fault.

use std::path::{Path, PathBuf};

/// Errors from reading, validating or writing configs and checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The config is not valid TOML or has unknown or mistyped keys.
    #[error("config syntax: {0}")]
    ConfigSyntax(String),
    /// A config value is impossible.
    #[error("config field {path}: {message}")]
    InvalidConfig {
        /// Dotted path of the field, e.g. `ple.expert_hidden[1]`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// An error inside a named file.
    #[error("{path}: {inner}")]
    InFile {
        /// The file.
        path: PathBuf,
        /// The error.
        inner: Box<ModelError>,
    },
    /// A safetensors file is corrupt or truncated.
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A tensor the config requires is absent.
    #[error("tensor {name}: missing (the config requires shape {expected:?})")]
    MissingTensor {
        /// Tensor name.
        name: String,
        /// Shape the config implies.
        expected: Vec<usize>,
    },
    /// A tensor is present that the config does not explain.
    #[error("tensor {name}: not part of this config's model")]
    UnexpectedTensor {
        /// Tensor name.
        name: String,
    },
    /// A tensor's shape disagrees with the config.
    #[error(
        "tensor {name}: shape {found:?} disagrees with the config, which requires {expected:?}"
    )]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A tensor has the wrong element type.
    #[error("tensor {name}: dtype {found}, expected {expected}")]
    DtypeMismatch {
        /// Tensor name.
        name: String,
        /// Expected dtype.
        expected: String,
        /// Dtype in the file.
        found: String,
    },
    /// A tensor holds NaN or infinity.
    #[error("tensor {name}: element {index} is {value}, not finite")]
    NonFinite {
        /// Tensor name.
        name: String,
        /// Flat index of the first bad element.
        index: usize,
        /// The value.
        value: f32,
    },
    /// The checkpoint's metadata is unreadable.
    #[error("checkpoint metadata: {0}")]
    Meta(String),
}

impl ModelError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> ModelError {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn in_file(self, path: &Path) -> ModelError {
        ModelError::InFile {
            path: path.to_path_buf(),
            inner: Box::new(self),
        }
    }
}

/// An error and its chain of causes on one line, `outer: cause: …`, for the binaries' stderr.
/// A cause whose text the line already holds is left out: the typed errors put their source in
/// their own message (`path: No such file or directory`), and repeating it would only add noise.
/// Line breaks inside a message become spaces.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string().replace(['\n', '\r'], " ");
        if !parts.join(": ").contains(text.as_str()) {
            match parts.last_mut() {
                // A cause that repeats its context's words first (`loading x` then
                // `loading x: …`) replaces it.
                Some(last) if text.starts_with(last.as_str()) => *last = text,
                _ => parts.push(text),
            }
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_drops_repeated_causes_and_line_breaks() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = ModelError::io(Path::new("/x/config.toml"), io);
        assert_eq!(one_line(&e), "/x/config.toml: gone");
        let e = ModelError::ConfigSyntax("a\nb".into()).in_file(Path::new("c.toml"));
        assert_eq!(one_line(&e), "c.toml: config syntax: a b");
        #[derive(Debug, thiserror::Error)]
        #[error("loading m.onnx")]
        struct Context(#[source] ModelError);
        let e = Context(ModelError::Meta("x".into()));
        assert_eq!(one_line(&e), "loading m.onnx: checkpoint metadata: x");
        #[derive(Debug, thiserror::Error)]
        #[error("loading m.onnx: gone")]
        struct Inner;
        #[derive(Debug, thiserror::Error)]
        #[error("loading m.onnx")]
        struct Outer(#[source] Inner);
        assert_eq!(one_line(&Outer(Inner)), "loading m.onnx: gone");
    }
}

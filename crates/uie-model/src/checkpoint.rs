//! The checkpoint: a directory holding the resolved config and the weights, written atomically.
//!
//! ```text
//! <checkpoint>/
//!   config.toml           the resolved config (every default filled in)
//!   weights.safetensors   every tensor of `schema::Plan::tensor_specs`, f32, little-endian
//!   meta.json             format version, producer, epoch, metrics (see `CheckpointMeta`)
//!   golden.safetensors    optional: verification rows and the producer's probabilities
//!   <other files>         optional, producer-private (the trainer's optimizer state); ignored
//! ```
//!
//! Writing goes to a hidden sibling directory first, every file is synced, then the directory is
//! renamed into place (a previous checkpoint under the same name is moved aside first and removed
//! last), so a crash never leaves a half-written checkpoint under the final name.
//!
//! Reading checks the weights against the config: every required tensor present with the
//! config's shape and dtype, nothing extra, every value finite, every `dense.std` positive.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::ModelError;
use crate::schema::{Dtype, Plan, DENSE_STD};

/// File names inside a checkpoint directory.
pub mod files {
    /// The resolved config.
    pub const CONFIG: &str = "config.toml";
    /// The weights.
    pub const WEIGHTS: &str = "weights.safetensors";
    /// The metadata.
    pub const META: &str = "meta.json";
    /// The verification rows.
    pub const GOLDEN: &str = "golden.safetensors";
}

/// Version of the checkpoint layout written by this crate.
pub const FORMAT_VERSION: u32 = 1;

/// Values of a tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// f32 values.
    F32(Vec<f32>),
    /// i64 values.
    I64(Vec<i64>),
}

/// A dense row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, `shape.iter().product()` of them.
    pub data: TensorData,
}

impl Tensor {
    /// An f32 tensor. Panics in debug builds if the length disagrees with the shape.
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        Tensor {
            shape,
            data: TensorData::F32(values),
        }
    }

    /// An i64 tensor.
    pub fn i64(shape: Vec<usize>, values: Vec<i64>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        Tensor {
            shape,
            data: TensorData::I64(values),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        match self.data {
            TensorData::F32(_) => Dtype::F32,
            TensorData::I64(_) => Dtype::I64,
        }
    }

    /// The f32 values, if this is an f32 tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            TensorData::I64(_) => None,
        }
    }

    /// The i64 values, if this is an i64 tensor.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            TensorData::F32(_) => None,
        }
    }

    fn le_bytes(&self) -> Vec<u8> {
        match &self.data {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// Named tensors, in name order.
pub type TensorMap = BTreeMap<String, Tensor>;

struct View {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl safetensors::View for &View {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Serialises tensors into safetensors bytes.
pub fn to_safetensors(tensors: &TensorMap) -> Result<Vec<u8>, ModelError> {
    let views: Vec<(String, View)> = tensors
        .iter()
        .map(|(name, t)| {
            let dtype = st_dtype(t.dtype());
            (
                name.clone(),
                View {
                    dtype,
                    shape: t.shape.clone(),
                    bytes: t.le_bytes(),
                },
            )
        })
        .collect();
    safetensors::serialize(views.iter().map(|(n, v)| (n.as_str(), v)), &None).map_err(|e| {
        ModelError::Safetensors {
            path: PathBuf::from("<memory>"),
            message: e.to_string(),
        }
    })
}

/// Parses safetensors bytes; `path` only names the source in errors. Only f32 and i64 tensors are
/// accepted.
pub fn from_safetensors(bytes: &[u8], path: &Path) -> Result<TensorMap, ModelError> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| ModelError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = TensorMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let raw = view.data();
        let data = match view.dtype() {
            safetensors::Dtype::F32 => TensorData::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            safetensors::Dtype::I64 => TensorData::I64(
                raw.chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            other => {
                return Err(ModelError::DtypeMismatch {
                    name,
                    expected: "f32 or i64".into(),
                    found: format!("{other:?}"),
                }
                .in_file(path))
            }
        };
        out.insert(name, Tensor { shape, data });
    }
    Ok(out)
}

/// The largest safetensors header accepted (the limit of the `safetensors` crate, 100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Bytes read from a weights file (or hashed) per step.
const CHUNK_BYTES: usize = 1 << 20;

/// Reads a safetensors file tensor by tensor: the header first, then each tensor's bytes in
/// chunks of [`CHUNK_BYTES`] decoded straight into its values. Unlike reading the whole file and
/// calling [`from_safetensors`], no copy of the file is held, so the peak memory is the decoded
/// tensors plus one chunk. The checks are those of [`from_safetensors`]: a header that parses, data
/// offsets that tile the data section exactly, byte lengths that match the shapes, f32 or i64
/// only.
pub fn read_safetensors_file(path: &Path) -> Result<TensorMap, ModelError> {
    let bad = |message: String| ModelError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let mut file = fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
    if file_len < 8 {
        return Err(bad(format!("{file_len} bytes: too short for a header")));
    }
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| ModelError::io(path, e))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER_BYTES || header_len > file_len - 8 {
        return Err(bad(format!(
            "header length {header_len} does not fit a {file_len}-byte file"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| ModelError::io(path, e))?;
    let infos = header_tensors(&header).map_err(bad)?;
    let data_len = infos.last().map_or(0, |(_, info)| info.data_offsets.1);
    if data_len as u64 != file_len - 8 - header_len {
        return Err(bad(format!(
            "the header describes {data_len} data bytes, the file holds {}",
            file_len - 8 - header_len
        )));
    }
    let mut out = TensorMap::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    for (name, info) in infos {
        let count: usize = info.shape.iter().product();
        let data = match info.dtype {
            safetensors::Dtype::F32 => {
                let mut v = Vec::with_capacity(count);
                read_chunks(&mut file, count * 4, &mut buf, |c| {
                    v.extend(
                        c.chunks_exact(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    )
                })
                .map_err(|e| ModelError::io(path, e))?;
                TensorData::F32(v)
            }
            safetensors::Dtype::I64 => {
                let mut v = Vec::with_capacity(count);
                read_chunks(&mut file, count * 8, &mut buf, |c| {
                    v.extend(c.chunks_exact(8).map(|b| {
                        i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                    }))
                })
                .map_err(|e| ModelError::io(path, e))?;
                TensorData::I64(v)
            }
            other => {
                return Err(ModelError::DtypeMismatch {
                    name,
                    expected: "f32 or i64".into(),
                    found: format!("{other:?}"),
                }
                .in_file(path))
            }
        };
        out.insert(
            name,
            Tensor {
                shape: info.shape,
                data,
            },
        );
    }
    Ok(out)
}

/// Reads `total` bytes from `r` in pieces of at most `buf.len()` (a multiple of 8), handing each
/// to `sink`.
fn read_chunks(
    r: &mut impl Read,
    total: usize,
    buf: &mut [u8],
    mut sink: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let mut left = total;
    while left > 0 {
        let n = left.min(buf.len());
        r.read_exact(&mut buf[..n])?;
        sink(&buf[..n]);
        left -= n;
    }
    Ok(())
}

/// Parses a safetensors JSON header (without its 8-byte length) into `(name, info)` in data
/// order, checking that the offsets tile the data section and that every byte length matches its
/// shape and dtype.
fn header_tensors(header: &[u8]) -> Result<Vec<(String, safetensors::tensor::TensorInfo)>, String> {
    let metadata: safetensors::tensor::Metadata =
        serde_json::from_slice(header).map_err(|e| format!("invalid header: {e}"))?;
    let mut infos: Vec<(String, safetensors::tensor::TensorInfo)> = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, info.clone()))
        .collect();
    infos.sort_by_key(|a| a.1.data_offsets);
    let mut start = 0usize;
    for (name, info) in &infos {
        let (s, e) = info.data_offsets;
        let bytes = info
            .shape
            .iter()
            .try_fold(info.dtype.size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor {name}: shape {:?} overflows", info.shape))?;
        if s != start || e < s || e - s != bytes {
            return Err(format!(
                "tensor {name}: data offsets ({s}, {e}) do not follow the previous tensor \
                 (which ends at {start}) or do not hold {bytes} bytes"
            ));
        }
        start = e;
    }
    Ok(infos)
}

/// A tensor's metadata for [`safetensors::serialize`] without its bytes: `data_len` is the real
/// length but `data` is empty, so serialising such views yields exactly the 8-byte length and the
/// header that [`to_safetensors`] writes before the tensor bytes.
struct HeaderOnly {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    len: usize,
}

impl safetensors::View for &HeaderOnly {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&[])
    }
    fn data_len(&self) -> usize {
        self.len
    }
}

fn st_dtype(d: Dtype) -> safetensors::Dtype {
    match d {
        Dtype::F32 => safetensors::Dtype::F32,
        Dtype::I64 => safetensors::Dtype::I64,
    }
}

/// Hands `v`'s little-endian bytes to `sink` in pieces of at most `buf.len()` bytes.
fn le_chunks<T: Copy, const N: usize>(
    v: &[T],
    le: impl Fn(T) -> [u8; N],
    buf: &mut [u8],
    sink: &mut impl FnMut(&[u8]),
) {
    for c in v.chunks(buf.len() / N) {
        let out = &mut buf[..c.len() * N];
        for (o, x) in out.chunks_exact_mut(N).zip(c) {
            o.copy_from_slice(&le(*x));
        }
        sink(out);
    }
}

/// Feeds exactly the bytes of [`to_safetensors`]`(tensors)` to `sink`, without building them: the
/// header (from `safetensors` itself), then each tensor's little-endian bytes in the order the
/// header's data offsets give, in chunks of at most [`CHUNK_BYTES`].
pub fn stream_safetensors(
    tensors: &TensorMap,
    mut sink: impl FnMut(&[u8]),
) -> Result<(), ModelError> {
    let in_memory = |message: String| ModelError::Safetensors {
        path: PathBuf::from("<memory>"),
        message,
    };
    let views: Vec<(&str, HeaderOnly)> = tensors
        .iter()
        .map(|(name, t)| {
            let len = match &t.data {
                TensorData::F32(v) => v.len() * 4,
                TensorData::I64(v) => v.len() * 8,
            };
            let view = HeaderOnly {
                dtype: st_dtype(t.dtype()),
                shape: t.shape.clone(),
                len,
            };
            (name.as_str(), view)
        })
        .collect();
    let head = safetensors::serialize(views.iter().map(|(n, v)| (*n, v)), &None)
        .map_err(|e| in_memory(e.to_string()))?;
    let header_len = head
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| in_memory("no header length".into()))?;
    if head.len() as u64 != 8 + header_len {
        return Err(in_memory(format!(
            "the header-only serialisation is {} bytes, expected {}",
            head.len(),
            8 + header_len
        )));
    }
    let order = header_tensors(&head[8..]).map_err(in_memory)?;
    sink(&head);
    let mut buf = vec![0u8; CHUNK_BYTES];
    for (name, _) in &order {
        let t = tensors
            .get(name)
            .ok_or_else(|| in_memory(format!("tensor {name} is in the header only")))?;
        match &t.data {
            TensorData::F32(v) => le_chunks(v, f32::to_le_bytes, &mut buf, &mut sink),
            TensorData::I64(v) => le_chunks(v, i64::to_le_bytes, &mut buf, &mut sink),
        }
    }
    Ok(())
}

/// `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Who wrote it, e.g. `uie-train 0.1.0`.
    pub producer: String,
    /// Epochs completed when this checkpoint was taken.
    pub epoch: usize,
    /// Named scalar metrics (validation AUC per task and so on).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// A checkpoint in memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The resolved config.
    pub config: Config,
    /// The weights.
    pub weights: TensorMap,
    /// The metadata.
    pub meta: CheckpointMeta,
    /// Verification rows (`input.<field>`, `input.dense`, `output.probs`), if any.
    pub golden: Option<TensorMap>,
    /// Producer-private files (name → bytes), written beside the others and read back verbatim.
    pub extra: BTreeMap<String, Vec<u8>>,
}

/// The bytes of a checkpoint's files, as [`Checkpoint::read`] finds them in a directory.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointFiles<'a> {
    /// `config.toml`.
    pub config: &'a [u8],
    /// `weights.safetensors`.
    pub weights: &'a [u8],
    /// `meta.json`.
    pub meta: &'a [u8],
    /// `golden.safetensors`, when present.
    pub golden: Option<&'a [u8]>,
}

/// Name of a categorical input column in `golden.safetensors`.
pub fn golden_input_name(field: &str) -> String {
    format!("input.{field}")
}
/// Name of the dense input in `golden.safetensors`.
pub const GOLDEN_DENSE: &str = "input.dense";
/// Name of the expected probabilities in `golden.safetensors`.
pub const GOLDEN_PROBS: &str = "output.probs";

/// The first value that is NaN or infinite, with its index. A value is non-finite exactly when
/// its exponent bits are all ones, so each block is tested with a branch-free maximum of the
/// exponent bits (which the compiler vectorises): checking a large table costs about as much as
/// reading it.
fn first_non_finite(values: &[f32]) -> Option<(usize, &f32)> {
    const BLOCK: usize = 1024;
    const EXPONENT: u32 = 0x7f80_0000;
    let block = values
        .chunks(BLOCK)
        .position(|c| c.iter().fold(0u32, |m, v| m.max(v.to_bits() & EXPONENT)) == EXPONENT)?;
    values
        .iter()
        .enumerate()
        .skip(block * BLOCK)
        .find(|(_, v)| !v.is_finite())
}

/// Checks weights against the config's plan (presence, shape, dtype, finiteness, std > 0).
pub fn validate_weights(config: &Config, weights: &TensorMap) -> Result<(), ModelError> {
    let specs = Plan::new(config).tensor_specs();
    for spec in &specs {
        let t = weights
            .get(&spec.name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: spec.name.clone(),
                expected: spec.shape.clone(),
            })?;
        if t.dtype() != spec.dtype {
            return Err(ModelError::DtypeMismatch {
                name: spec.name.clone(),
                expected: spec.dtype.to_string(),
                found: t.dtype().to_string(),
            });
        }
        if t.shape != spec.shape {
            return Err(ModelError::ShapeMismatch {
                name: spec.name.clone(),
                expected: spec.shape.clone(),
                found: t.shape.clone(),
            });
        }
        if let Some(values) = t.as_f32() {
            if let Some((index, &value)) = first_non_finite(values) {
                return Err(ModelError::NonFinite {
                    name: spec.name.clone(),
                    index,
                    value,
                });
            }
            if spec.name == DENSE_STD {
                if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| **v <= 0.0) {
                    return Err(ModelError::InvalidConfig {
                        path: format!("tensor {DENSE_STD}[{index}]"),
                        message: format!("must be > 0, got {value}"),
                    });
                }
            }
        }
    }
    if weights.len() != specs.len() {
        for name in weights.keys() {
            if !specs.iter().any(|s| &s.name == name) {
                return Err(ModelError::UnexpectedTensor { name: name.clone() });
            }
        }
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let mut f = fs::File::create(path).map_err(|e| ModelError::io(path, e))?;
    f.write_all(bytes).map_err(|e| ModelError::io(path, e))?;
    f.sync_all().map_err(|e| ModelError::io(path, e))
}

fn sibling(dir: &Path, suffix: &str) -> Result<PathBuf, ModelError> {
    let name = dir.file_name().ok_or_else(|| {
        ModelError::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no directory name"),
        )
    })?;
    let mut hidden = std::ffi::OsString::from(".");
    hidden.push(name);
    hidden.push(suffix);
    Ok(dir.with_file_name(hidden))
}

/// Finishes a replacement that a crash interrupted. [`write_dir_atomically`] moves the previous
/// checkpoint aside to `.<name>.old` just before renaming the new one into place; a process killed
/// between the two renames leaves no `<name>` but a complete `.<name>.old`. This moves it back and
/// returns true; otherwise it changes nothing. [`Checkpoint::read`] and every write call it first.
pub fn recover_interrupted_write(dir: &Path) -> Result<bool, ModelError> {
    let old = sibling(dir, ".old")?;
    if dir.exists() || !old.is_dir() {
        return Ok(false);
    }
    fs::rename(&old, dir).map_err(|e| ModelError::io(dir, e))?;
    sync_parent(dir);
    Ok(true)
}

/// Removes `.<name>.tmp-<pid>` siblings left by writers that were killed (their process is gone;
/// only checked where `/proc` exists). Best effort: a failure leaves the directory in place.
fn remove_stale_temporaries(dir: &Path) {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        let alive = pid.parse::<u32>().map_or(true, |pid| {
            pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
        });
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Syncs the directory holding `path`, so a rename survives a power loss too (best effort).
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
}

/// Writes a whole directory atomically: `files` go into a hidden temporary sibling which is then
/// renamed to `dir`. An existing `dir` is replaced (moved aside, then removed after the rename).
pub fn write_dir_atomically(dir: &Path, files: &[(&str, &[u8])]) -> Result<(), ModelError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
    }
    recover_interrupted_write(dir)?;
    remove_stale_temporaries(dir);
    let tmp = sibling(dir, &format!(".tmp-{}", std::process::id()))?;
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    }
    fs::create_dir(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    let result = (|| {
        for (name, bytes) in files {
            write_synced(&tmp.join(name), bytes)?;
        }
        let old = sibling(dir, ".old")?;
        if dir.exists() {
            if old.exists() {
                fs::remove_dir_all(&old).map_err(|e| ModelError::io(&old, e))?;
            }
            fs::rename(dir, &old).map_err(|e| ModelError::io(dir, e))?;
        }
        fs::rename(&tmp, dir).map_err(|e| ModelError::io(dir, e))?;
        sync_parent(dir);
        if old.exists() {
            fs::remove_dir_all(&old).map_err(|e| ModelError::io(&old, e))?;
        }
        Ok(())
    })();
    if result.is_err() && tmp.exists() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

impl Checkpoint {
    /// A checkpoint of `weights` at epoch 0 with no metrics, golden rows or extra files.
    pub fn new(config: Config, weights: TensorMap, producer: &str) -> Checkpoint {
        Checkpoint {
            config,
            weights,
            meta: CheckpointMeta {
                format_version: FORMAT_VERSION,
                producer: producer.to_string(),
                epoch: 0,
                metrics: BTreeMap::new(),
            },
            golden: None,
            extra: BTreeMap::new(),
        }
    }

    /// Validates and writes the checkpoint to `dir` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), ModelError> {
        self.config.validate()?;
        validate_weights(&self.config, &self.weights)?;
        let config = self.config.to_toml_string()?;
        let weights = to_safetensors(&self.weights)?;
        let meta =
            serde_json::to_vec_pretty(&self.meta).map_err(|e| ModelError::Meta(e.to_string()))?;
        let golden = self.golden.as_ref().map(to_safetensors).transpose()?;
        let mut files: Vec<(&str, &[u8])> = vec![
            (files::CONFIG, config.as_bytes()),
            (files::WEIGHTS, &weights),
            (files::META, &meta),
        ];
        if let Some(g) = &golden {
            files.push((files::GOLDEN, g));
        }
        for (name, bytes) in &self.extra {
            if [files::CONFIG, files::WEIGHTS, files::META, files::GOLDEN].contains(&name.as_str())
                || name.contains('/')
            {
                return Err(ModelError::Meta(format!(
                    "extra file name {name:?} is reserved or not a plain name"
                )));
            }
            files.push((name, bytes));
        }
        write_dir_atomically(dir, &files)
    }

    /// Reads and validates a checkpoint directory. Producer-private files are read into `extra`.
    /// The weights file is decoded tensor by tensor ([`read_safetensors_file`]), so reading holds
    /// one copy of the weights, not two; the other files are checked by the same code as
    /// [`Checkpoint::from_files`] (the fuzzed entry point).
    pub fn read(dir: &Path) -> Result<Checkpoint, ModelError> {
        Checkpoint::read_with(dir, true)
    }

    /// [`Checkpoint::read`] without the producer-private files (`extra` is left empty): what a
    /// consumer of the model needs (the compiler), without loading, say, the trainer's optimizer
    /// state (about twice the weights) into memory.
    pub fn read_model(dir: &Path) -> Result<Checkpoint, ModelError> {
        Checkpoint::read_with(dir, false)
    }

    fn read_with(dir: &Path, with_extra: bool) -> Result<Checkpoint, ModelError> {
        recover_interrupted_write(dir)?;
        if !dir.is_dir() {
            return Err(ModelError::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "checkpoint directory not found",
                ),
            ));
        }
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read(&path).map_err(|e| ModelError::io(&path, e))
        };
        let config = parse_config(&read(files::CONFIG)?, dir)?;
        let weights = read_safetensors_file(&dir.join(files::WEIGHTS))?;
        let meta = read(files::META)?;
        let golden_path = dir.join(files::GOLDEN);
        let golden = if golden_path.exists() {
            Some(read_safetensors_file(&golden_path)?)
        } else {
            None
        };
        let mut checkpoint = assemble(config, weights, &meta, golden, dir)?;
        let mut extra = BTreeMap::new();
        let entries = fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))?;
        for entry in entries.filter(|_| with_extra) {
            let entry = entry.map_err(|e| ModelError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let known = [files::CONFIG, files::WEIGHTS, files::META, files::GOLDEN];
            if known.contains(&name.as_str()) || !entry.path().is_file() {
                continue;
            }
            let bytes = fs::read(entry.path()).map_err(|e| ModelError::io(&entry.path(), e))?;
            extra.insert(name, bytes);
        }
        checkpoint.extra = extra;
        Ok(checkpoint)
    }

    /// Parses and validates a checkpoint's files from bytes (no producer-private files): the
    /// config, the weights against it, the metadata and its format version, and the golden rows
    /// when given. `dir` only names the files in errors. Any byte string gives a checkpoint or an
    /// error, never a panic (fuzzed: `fuzz/fuzz_targets/checkpoint_read.rs`).
    pub fn from_files(parts: &CheckpointFiles<'_>, dir: &Path) -> Result<Checkpoint, ModelError> {
        let config = parse_config(parts.config, dir)?;
        let weights = from_safetensors(parts.weights, &dir.join(files::WEIGHTS))?;
        let golden = parts
            .golden
            .map(|bytes| from_safetensors(bytes, &dir.join(files::GOLDEN)))
            .transpose()?;
        assemble(config, weights, parts.meta, golden, dir)
    }

    /// SHA-256 (hex) of the resolved config text and the weights file bytes
    /// ([`to_safetensors`] of the weights): what identifies the model a compiled file came from.
    /// The weights' bytes are streamed into the hash ([`stream_safetensors`]), never built.
    pub fn content_hash(&self) -> Result<String, ModelError> {
        let mut h = Sha256::new();
        h.update(self.config.to_toml_string()?.as_bytes());
        stream_safetensors(&self.weights, |bytes| h.update(bytes))?;
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// The config file's bytes as a [`Config`] (UTF-8, TOML, validated); errors name the file.
fn parse_config(bytes: &[u8], dir: &Path) -> Result<Config, ModelError> {
    let config_path = dir.join(files::CONFIG);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ModelError::ConfigSyntax(format!("the file is not UTF-8 text: {e}")).in_file(&config_path)
    })?;
    Config::from_toml_str(text).map_err(|e| e.in_file(&config_path))
}

/// The checks shared by [`Checkpoint::read`] and [`Checkpoint::from_files`] once the tensors are
/// decoded: the weights against the config, the metadata and its format version.
fn assemble(
    config: Config,
    weights: TensorMap,
    meta: &[u8],
    golden: Option<TensorMap>,
    dir: &Path,
) -> Result<Checkpoint, ModelError> {
    validate_weights(&config, &weights).map_err(|e| e.in_file(&dir.join(files::WEIGHTS)))?;
    let meta_path = dir.join(files::META);
    let meta: CheckpointMeta = serde_json::from_slice(meta)
        .map_err(|e| ModelError::Meta(e.to_string()).in_file(&meta_path))?;
    if meta.format_version != FORMAT_VERSION {
        return Err(ModelError::Meta(format!(
            "format_version {} is not supported (this build reads {FORMAT_VERSION})",
            meta.format_version
        ))
        .in_file(&meta_path));
    }
    Ok(Checkpoint {
        config,
        weights,
        meta,
        golden,
        extra: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_checkpoint() -> Checkpoint {
        let config = Config::from_toml_str(crate::test_support::SMALL).expect("config");
        let mut weights = TensorMap::new();
        for (i, spec) in Plan::new(&config).tensor_specs().into_iter().enumerate() {
            let n = spec.shape.iter().product();
            let v = (0..n)
                .map(|j| ((i * 31 + j) % 7) as f32 * 0.1 + 0.05)
                .collect();
            weights.insert(spec.name, Tensor::f32(spec.shape, v));
        }
        Checkpoint {
            config,
            weights,
            meta: CheckpointMeta {
                format_version: FORMAT_VERSION,
                producer: "test".into(),
                epoch: 3,
                metrics: BTreeMap::from([("val_auc.income".to_string(), 0.9)]),
            },
            golden: None,
            extra: BTreeMap::from([("optimizer.bin".to_string(), vec![1, 2, 3])]),
        }
    }

    #[test]
    fn round_trips_and_replaces_atomically() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ckpt");
        let ck = tiny_checkpoint();
        ck.write(&dir).expect("write");
        ck.write(&dir).expect("overwrite");
        let back = Checkpoint::read(&dir).expect("read");
        assert_eq!(back.weights, ck.weights);
        assert_eq!(back.meta, ck.meta);
        assert_eq!(back.extra, ck.extra);
        assert_eq!(
            back.content_hash().expect("hash"),
            ck.content_hash().expect("hash")
        );
        let leftovers: Vec<_> = fs::read_dir(tmp.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("ckpt")]);
    }

    #[test]
    fn refuses_weights_that_disagree_with_the_config() {
        let mut ck = tiny_checkpoint();
        ck.weights.insert(
            "embed.education".into(),
            Tensor::f32(vec![15, 4], vec![0.0; 60]),
        );
        let e = ck
            .write(Path::new("/nonexistent/never"))
            .expect_err("bad shape");
        assert!(e.to_string().contains("embed.education"), "{e}");

        let mut ck = tiny_checkpoint();
        ck.weights.remove("tower.income.out.bias");
        let e = validate_weights(&ck.config, &ck.weights).expect_err("missing");
        assert!(e.to_string().contains("tower.income.out.bias"), "{e}");

        let mut ck = tiny_checkpoint();
        ck.weights
            .insert("extra.thing".into(), Tensor::f32(vec![1], vec![0.0]));
        let e = validate_weights(&ck.config, &ck.weights).expect_err("extra");
        assert!(e.to_string().contains("extra.thing"), "{e}");

        let mut ck = tiny_checkpoint();
        ck.weights
            .insert("dense.mean".into(), Tensor::f32(vec![1], vec![f32::NAN]));
        let e = validate_weights(&ck.config, &ck.weights).expect_err("nan");
        assert!(e.to_string().contains("dense.mean"), "{e}");
    }

    /// Tensors of both dtypes, an empty one, and names whose order differs from the data order
    /// `safetensors` chooses (i64 before f32).
    fn mixed_tensors() -> TensorMap {
        let mut m = TensorMap::new();
        m.insert(
            "a.f32".into(),
            Tensor::f32(
                vec![3, 700_001],
                (0..2_100_003).map(|i| i as f32 * 0.25 - 7.0).collect(),
            ),
        );
        m.insert("b.empty".into(), Tensor::f32(vec![0, 4], vec![]));
        m.insert(
            "c.i64".into(),
            Tensor::i64(vec![5], vec![i64::MIN, -1, 0, 1, i64::MAX]),
        );
        m.insert(
            "d.scalar".into(),
            Tensor::f32(vec![], vec![f32::MIN_POSITIVE]),
        );
        m
    }

    #[test]
    fn streamed_bytes_are_the_safetensors_bytes() {
        let m = mixed_tensors();
        let mut streamed = Vec::new();
        let mut pieces = 0;
        stream_safetensors(&m, |b| {
            streamed.extend_from_slice(b);
            pieces += 1;
        })
        .expect("stream");
        assert_eq!(streamed, to_safetensors(&m).expect("serialise"));
        assert!(
            pieces > 3,
            "the big tensor is streamed in chunks ({pieces} pieces)"
        );
    }

    #[test]
    fn the_content_hash_is_the_hash_of_config_and_weights_file() {
        let ck = tiny_checkpoint();
        let mut h = Sha256::new();
        h.update(ck.config.to_toml_string().expect("toml").as_bytes());
        h.update(to_safetensors(&ck.weights).expect("serialise"));
        let whole: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(ck.content_hash().expect("hash"), whole);
    }

    #[test]
    fn the_file_reader_agrees_with_the_in_memory_parser() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("w.safetensors");
        let bytes = to_safetensors(&mixed_tensors()).expect("serialise");
        fs::write(&path, &bytes).expect("write");
        let streamed = read_safetensors_file(&path).expect("read");
        assert_eq!(streamed, from_safetensors(&bytes, &path).expect("parse"));
        assert_eq!(streamed, mixed_tensors());

        // One byte more or less than the header describes, and an unsupported dtype.
        fs::write(&path, [&bytes[..], &[0u8]].concat()).expect("write");
        let e = read_safetensors_file(&path).expect_err("trailing byte");
        assert!(e.to_string().contains("data bytes"), "{e}");
        fs::write(&path, &bytes[..bytes.len() - 1]).expect("write");
        let e = read_safetensors_file(&path).expect_err("missing byte");
        assert!(e.to_string().contains("w.safetensors"), "{e}");
        let mut renamed = bytes.clone();
        let at = renamed
            .windows(5)
            .position(|w| w == b"\"I64\"")
            .expect("the i64 dtype in the header");
        renamed[at + 1] = b'U';
        fs::write(&path, &renamed).expect("write");
        let e = read_safetensors_file(&path).expect_err("u64");
        assert!(e.to_string().contains("c.i64"), "{e}");
        fs::write(&path, [3u8, 0, 0]).expect("write");
        let e = read_safetensors_file(&path).expect_err("short");
        assert!(e.to_string().contains("too short"), "{e}");
    }

    #[test]
    fn read_model_leaves_out_the_producer_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ckpt");
        let ck = tiny_checkpoint();
        ck.write(&dir).expect("write");
        let back = Checkpoint::read_model(&dir).expect("read");
        assert!(back.extra.is_empty());
        assert_eq!(back.weights, ck.weights);
        assert_eq!(Checkpoint::read(&dir).expect("read").extra, ck.extra);
    }

    #[test]
    fn the_first_non_finite_value_is_found_anywhere() {
        let mut v = vec![1.5f32; 5000];
        v[4999] = -f32::MAX;
        assert_eq!(first_non_finite(&v), None);
        assert_eq!(first_non_finite(&[]), None);
        for (i, bad) in [
            (0, f32::NAN),
            (1023, f32::INFINITY),
            (1024, f32::NEG_INFINITY),
            (4999, -f32::NAN),
        ] {
            let mut w = v.clone();
            w[i] = bad;
            w[4000] = f32::NAN; // a later one must not win
            let (index, value) = first_non_finite(&w).expect("found");
            assert_eq!(index, i.min(4000));
            assert!(!value.is_finite());
        }
    }

    #[test]
    fn truncated_weights_file_is_a_clear_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ckpt");
        tiny_checkpoint().write(&dir).expect("write");
        let w = dir.join(files::WEIGHTS);
        let bytes = fs::read(&w).expect("read");
        fs::write(&w, &bytes[..bytes.len() / 2]).expect("truncate");
        let e = Checkpoint::read(&dir).expect_err("truncated");
        assert!(e.to_string().contains("weights.safetensors"), "{e}");
    }

    #[test]
    fn a_replacement_interrupted_between_the_renames_is_recovered() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("last");
        let ck = tiny_checkpoint();
        ck.write(&dir).expect("write");
        // The state a SIGKILL between the two renames leaves: the old checkpoint moved aside,
        // the new one still under its temporary name (from a process that no longer exists).
        fs::rename(&dir, tmp.path().join(".last.old")).expect("move aside");
        fs::create_dir(tmp.path().join(".last.tmp-4000000000")).expect("stale temporary");
        let back = Checkpoint::read(&dir).expect("recovered on read");
        assert_eq!(back.weights, ck.weights);
        assert!(!tmp.path().join(".last.old").exists());
        // The next write cleans the dead writer's temporary and replaces normally.
        ck.write(&dir).expect("write again");
        let mut names: Vec<_> = fs::read_dir(tmp.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["last".to_string()]);
    }
}

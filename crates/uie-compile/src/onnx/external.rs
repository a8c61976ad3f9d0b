//! Writing a model to disk, inline or with ONNX external data
//! (<https://onnx.ai/onnx/repo-docs/ExternalData.html>).
//!
//! Layout: every initializer of at least [`ExternalDataOptions::threshold`] bytes goes, in
//! initializer (name) order, into ONE data file beside the model, named by the model's file name
//! and its own content hash, `<model file name>.<16 hex of its SHA-256>.data`
//! (`model.onnx` → `model.onnx.0123456789abcdef.data`, see [`data_file_path`]). Each starts at an offset aligned to
//! [`ExternalDataOptions::alignment`] (default 4096, the page size ONNX Runtime maps on Linux;
//! the gaps are zero bytes) and its `TensorProto` carries `data_location = EXTERNAL` and the
//! `external_data` entries `location` (the data file's bare name, relative to the model's
//! directory), `offset` and `length`. Smaller initializers stay inline. When no initializer
//! reaches the threshold, no data file is written.
//!
//! The 2 GiB rule: without external data options, a model whose inline encoding would pass the
//! protobuf limit ([`PROTOBUF_LIMIT`], 2^31 − 1 bytes) is written with external data anyway, with
//! the default options, and [`WriteReport::automatic`] says so. The size is estimated from the
//! skeleton (the model without tensor bytes) plus every tensor's bytes and a worst-case framing
//! overhead, so no inline encoding is ever built for the test.
//!
//! Memory: tensor bytes are streamed from the graph's tensors into the data file in chunks of
//! 64 Ki elements (converted to little-endian on the way); no copy of a whole table is made. Only
//! inline initializers are copied into the `ModelProto`, which is then streamed into the file;
//! [`write_model_owned`] moves them instead of copying when the whole model is inline.
//!
//! Atomicity and determinism: both files are written to dot-named temporaries in the target
//! directory and fsynced; then the data file is renamed to its hash-named path (a name the
//! current model at the output path does not reference, unless its data is identical), then the
//! model. The model's rename is the single commit point: a process killed at any moment leaves
//! the output path holding either the complete old model with its old data file or the complete
//! new one with its new data file. After the commit, the data files of this output name that the
//! new model does not reference (older hashes, or the pre-hash `<model file name>.data`) and the
//! temporaries of killed writers are removed. Any error removes the temporaries (and the
//! just-renamed data file if the model's rename fails and it was new), so no partial file ever
//! appears under the output names. The bytes and names of both files are a function of the graph
//! and the options only.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use onnx_protobuf::Message;
use sha2::{Digest, Sha256};
use uie_model::{Tensor, TensorData};

use super::emit::{model_proto, ExternalRef, Placement};
use super::write::{file_name, parent_dir, remove_dead_temporaries, sync_dir, TempFile};
use crate::error::CompileError;
use crate::ir::Graph;

/// Default size from which an initializer goes to the data file: 1 MiB.
pub const DEFAULT_EXTERNAL_THRESHOLD: u64 = 1 << 20;
/// Default alignment of tensor offsets in the data file: 4096 bytes.
pub const DEFAULT_ALIGNMENT: u64 = 4096;
/// The largest protobuf message: 2^31 − 1 bytes.
pub const PROTOBUF_LIMIT: u64 = i32::MAX as u64;
/// A progress bar is shown (on a terminal) only when at least this many bytes go external.
pub const PROGRESS_MIN_BYTES: u64 = 64 << 20;
/// Suffix of a data file's name (after the model's file name and the content hash).
pub const DATA_SUFFIX: &str = ".data";
/// How many bytes of the data file's SHA-256 name it (16 hex digits).
pub const HASH_BYTES: usize = 8;

/// Elements converted and written per chunk.
const CHUNK_ELEMS: usize = 1 << 16;
/// Worst-case framing bytes a tensor's inline data adds (tag + length varints of the field, the
/// tensor and the graph).
const FRAMING: u64 = 1 + 10 + 10;

/// How initializers go to the external data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalDataOptions {
    /// Initializers of at least this many bytes go to the data file (0: every non-empty one).
    pub threshold: u64,
    /// Offsets of tensors in the data file are multiples of this (a power of two).
    pub alignment: u64,
}

impl Default for ExternalDataOptions {
    fn default() -> Self {
        ExternalDataOptions {
            threshold: DEFAULT_EXTERNAL_THRESHOLD,
            alignment: DEFAULT_ALIGNMENT,
        }
    }
}

/// Options of [`write_model`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// External data; `None` writes one self-contained file unless it would pass `inline_limit`.
    pub external_data: Option<ExternalDataOptions>,
    /// The largest inline model; past it, external data is used with default options
    /// ([`PROTOBUF_LIMIT`] unless a test lowers it).
    pub inline_limit: u64,
    /// Show a progress bar on stderr while writing large tables (only if stderr is a terminal).
    pub progress: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            external_data: None,
            inline_limit: PROTOBUF_LIMIT,
            progress: false,
        }
    }
}

/// The data file written beside a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFileReport {
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes (tensors plus alignment padding).
    pub bytes: u64,
    /// Number of initializers stored in it.
    pub tensors: usize,
}

/// What [`write_model`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReport {
    /// The model file.
    pub model_path: PathBuf,
    /// Size of the model file in bytes.
    pub model_bytes: u64,
    /// The data file, when any initializer went external.
    pub data: Option<DataFileReport>,
    /// True when external data was chosen because the inline model would pass the limit.
    pub automatic: bool,
    /// The estimated size of the model had everything been inline (an upper bound).
    pub inline_estimate: u64,
}

/// The data file's path for a model path and the first [`HASH_BYTES`] bytes of the SHA-256 of
/// the data file's content, in lowercase hex: `<model file name>.<hash>.data` in the model's
/// directory (`model.onnx` → `model.onnx.0123456789abcdef.data`).
pub fn data_file_path(model: &Path, hash: &str) -> Result<PathBuf, CompileError> {
    let name = utf8_file_name(model)?;
    Ok(model.with_file_name(format!("{name}.{hash}{DATA_SUFFIX}")))
}

/// Whether `file` is the name of a data file written for the model file `model_name` by this
/// compiler (`<model_name>.<16 hex>.data`) or by an older one (`<model_name>.data`).
pub fn is_data_file_of(model_name: &str, file: &str) -> bool {
    let Some(rest) = file
        .strip_prefix(model_name)
        .and_then(|r| r.strip_suffix(DATA_SUFFIX))
    else {
        return false;
    };
    rest.is_empty()
        || rest
            .strip_prefix('.')
            .is_some_and(|h| h.len() == 2 * HASH_BYTES && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// After a model was committed at `path`: removes the data files of that model name that it does
/// not reference (`keep` is the one it does, if any) and the temporaries of killed writers.
/// Best effort: a file that cannot be removed is left (it is never referenced).
fn remove_stale_files(path: &Path, keep: Option<&str>) {
    let Some(model_name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let dir = parent_dir(path);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if Some(name) != keep && is_data_file_of(model_name, name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    remove_dead_temporaries(&dir, &[model_name, &format!("{model_name}{DATA_SUFFIX}")]);
}

/// The file name of `path` as UTF-8 (ONNX locations are strings).
fn utf8_file_name(path: &Path) -> Result<&str, CompileError> {
    file_name(path)?.to_str().ok_or_else(|| {
        CompileError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the file name is not UTF-8 (ONNX locations are strings)",
            ),
        )
    })
}

fn tensor_bytes(t: &Tensor) -> u64 {
    match &t.data {
        TensorData::F32(v) => v.len() as u64 * 4,
        TensorData::I64(v) => v.len() as u64 * 8,
    }
}

fn align_up(x: u64, alignment: u64) -> u64 {
    x.div_ceil(alignment) * alignment
}

fn encode_error(e: impl std::fmt::Display) -> CompileError {
    CompileError::Onnx(format!("encoding the model: {e}"))
}

/// Writes a validated, shape-inferred graph to `path` (and its data file, if any) atomically.
pub fn write_model(
    graph: &Graph,
    path: &Path,
    opts: &WriteOptions,
) -> Result<WriteReport, CompileError> {
    let skeleton = model_proto(graph, |_, _| Placement::Empty)?.compute_size();
    let data_total: u64 = graph
        .initializers()
        .iter()
        .map(|(_, t)| tensor_bytes(t) + FRAMING)
        .sum();
    let inline_estimate = skeleton + data_total;
    let (external, automatic) = match opts.external_data {
        Some(e) => (Some(e), false),
        None if inline_estimate > opts.inline_limit => (Some(ExternalDataOptions::default()), true),
        None => (None, false),
    };
    let mut report = match external {
        None => write_inline(graph, path)?,
        Some(e) => write_external(graph, path, &e, opts)?,
    };
    report.automatic = automatic;
    report.inline_estimate = inline_estimate;
    Ok(report)
}

/// [`write_model`] consuming the graph. The same bytes; with external data the tables are streamed
/// from the graph as in [`write_model`]; inline, each initializer's tensor is moved into its
/// `raw_data` ([`into_le_bytes`]) instead of copied, so the model is never held twice.
pub fn write_model_owned(
    mut graph: Graph,
    path: &Path,
    opts: &WriteOptions,
) -> Result<WriteReport, CompileError> {
    let skeleton = model_proto(&graph, |_, _| Placement::Empty)?;
    let data_total: u64 = graph
        .initializers()
        .iter()
        .map(|(_, t)| tensor_bytes(t) + FRAMING)
        .sum();
    let inline_estimate = skeleton.compute_size() + data_total;
    if opts.external_data.is_some() || inline_estimate > opts.inline_limit {
        drop(skeleton);
        return write_model(&graph, path, opts);
    }
    let mut model = skeleton;
    let mut tensors: Vec<(String, Tensor)> = graph
        .take_initializers()
        .into_iter()
        .map(|(id, t)| (graph.value(id).name.clone(), t))
        .collect();
    drop(graph);
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let protos = &mut model.graph.mut_or_insert_default().initializer;
    if protos.len() != tensors.len() {
        return Err(CompileError::Onnx(format!(
            "{} initializer protos for {} tensors",
            protos.len(),
            tensors.len()
        )));
    }
    for (proto, (name, t)) in protos.iter_mut().zip(tensors) {
        if proto.name != name {
            return Err(CompileError::Onnx(format!(
                "initializer proto {} where {name} was expected",
                proto.name
            )));
        }
        proto.raw_data = into_le_bytes(t.data);
    }
    let mut report = write_inline_proto(&model, path)?;
    report.inline_estimate = inline_estimate;
    Ok(report)
}

/// A tensor's values as little-endian bytes, consuming them: converted from the end in chunks,
/// the source shrunk after each chunk, so the two buffers together stay about one tensor large
/// (the output is zero-allocated, so its pages only count once written; how far the shrinking
/// returns memory is the allocator's business: glibc gives large blocks back with `mremap`).
fn into_le_bytes(data: TensorData) -> Vec<u8> {
    fn convert<T: Copy, const N: usize>(mut v: Vec<T>, le: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        let mut out = vec![0u8; v.len() * N];
        while !v.is_empty() {
            let start = v.len().saturating_sub(CHUNK_ELEMS);
            for (x, o) in v[start..].iter().zip(out[start * N..].chunks_exact_mut(N)) {
                o.copy_from_slice(&le(*x));
            }
            v.truncate(start);
            v.shrink_to_fit();
        }
        out
    }
    match data {
        TensorData::F32(v) => convert(v, f32::to_le_bytes),
        TensorData::I64(v) => convert(v, i64::to_le_bytes),
    }
}

fn write_proto(model: &onnx_protobuf::ModelProto, tmp: &mut TempFile) -> Result<u64, CompileError> {
    let size = model.compute_size();
    if size > PROTOBUF_LIMIT {
        return Err(CompileError::Onnx(format!(
            "the model would be {size} bytes, past the 2 GiB protobuf limit; use external data \
             (`--external-data`) with a lower threshold"
        )));
    }
    let p = tmp.path().to_path_buf();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.file()?);
    model.write_to_writer(&mut w).map_err(encode_error)?;
    w.flush().map_err(|e| CompileError::io(&p, e))?;
    Ok(size)
}

fn write_inline(graph: &Graph, path: &Path) -> Result<WriteReport, CompileError> {
    let model = model_proto(graph, |_, _| Placement::Inline)?;
    write_inline_proto(&model, path)
}

fn write_inline_proto(
    model: &onnx_protobuf::ModelProto,
    path: &Path,
) -> Result<WriteReport, CompileError> {
    let mut tmp = TempFile::create(path)?;
    let model_bytes = write_proto(model, &mut tmp)?;
    tmp.commit()?;
    sync_dir(&parent_dir(path));
    remove_stale_files(path, None);
    Ok(WriteReport {
        model_path: path.to_path_buf(),
        model_bytes,
        data: None,
        automatic: false,
        inline_estimate: 0,
    })
}

fn progress_bar(total: u64, opts: &WriteOptions, label: String) -> ProgressBar {
    if !opts.progress || total < PROGRESS_MIN_BYTES || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(label);
    pb
}

/// Streams one tensor's little-endian bytes into `w`, chunk by chunk.
fn stream_tensor(
    w: &mut impl Write,
    t: &Tensor,
    buf: &mut Vec<u8>,
    pb: &ProgressBar,
) -> std::io::Result<()> {
    fn chunks<T: Copy, const N: usize>(
        w: &mut impl Write,
        v: &[T],
        le: impl Fn(T) -> [u8; N],
        buf: &mut Vec<u8>,
        pb: &ProgressBar,
    ) -> std::io::Result<()> {
        buf.resize(CHUNK_ELEMS * N, 0);
        for c in v.chunks(CHUNK_ELEMS) {
            let out = &mut buf[..c.len() * N];
            for (o, x) in out.chunks_exact_mut(N).zip(c) {
                o.copy_from_slice(&le(*x));
            }
            w.write_all(out)?;
            pb.inc(out.len() as u64);
        }
        Ok(())
    }
    match &t.data {
        TensorData::F32(v) => chunks(w, v, f32::to_le_bytes, buf, pb),
        TensorData::I64(v) => chunks(w, v, i64::to_le_bytes, buf, pb),
    }
}

/// A writer that hashes what passes through it (SHA-256) on another thread: each written chunk
/// is copied to the hashing thread (in order, at most [`HASH_QUEUE`] chunks ahead), so hashing
/// overlaps the writes instead of adding to them.
struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    chunks: std::sync::mpsc::SyncSender<Vec<u8>>,
}

/// Chunks the writer may run ahead of the hashing thread.
const HASH_QUEUE: usize = 8;

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.chunks
            .send(buf[..n].to_vec())
            .map_err(|_| std::io::Error::other("the hashing thread stopped"))?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Runs `write` with a [`HashingWriter`] over `inner` and returns its result with the SHA-256 of
/// everything it wrote (`None` if the hashing thread failed).
fn write_hashed<W: Write, T>(
    inner: &mut W,
    write: impl FnOnce(&mut HashingWriter<'_, W>) -> T,
) -> (T, Option<[u8; 32]>) {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE);
        let hasher = scope.spawn(move || {
            let mut h = Sha256::new();
            for chunk in rx {
                h.update(&chunk);
            }
            <[u8; 32]>::from(h.finalize())
        });
        let out = {
            let mut w = HashingWriter { inner, chunks: tx };
            write(&mut w)
            // `w` (the only sender) is dropped here, which ends the hashing thread's loop.
        };
        (out, hasher.join().ok())
    })
}

fn write_external(
    graph: &Graph,
    path: &Path,
    e: &ExternalDataOptions,
    opts: &WriteOptions,
) -> Result<WriteReport, CompileError> {
    if e.alignment == 0 || !e.alignment.is_power_of_two() {
        return Err(CompileError::Onnx(format!(
            "external data alignment must be a power of two, got {}",
            e.alignment
        )));
    }
    let model_name = utf8_file_name(path)?;

    // Layout, in initializer (name) order; the location is known once the data is hashed.
    let inits = graph.initializers();
    let mut layout: Vec<(&str, &Tensor, ExternalRef)> = Vec::new();
    let mut cursor = 0u64;
    for (name, t) in &inits {
        let length = tensor_bytes(t);
        if length > 0 && length >= e.threshold {
            let offset = align_up(cursor, e.alignment);
            cursor = offset + length;
            let r = ExternalRef {
                location: String::new(),
                offset,
                length,
            };
            layout.push((name, t, r));
        }
    }
    if layout.is_empty() {
        return write_inline(graph, path);
    }

    // The data file, under a temporary name, hashed on the way.
    let mut data_tmp =
        TempFile::create(&path.with_file_name(format!("{model_name}{DATA_SUFFIX}")))?;
    let dp = data_tmp.path().to_path_buf();
    let pb = progress_bar(cursor, opts, format!("writing the data of {model_name}"));
    let (written, digest) = write_hashed(data_tmp.file()?, |w| {
        let mut buf = Vec::with_capacity(CHUNK_ELEMS * 8);
        let mut written = 0u64;
        for (_, t, r) in &layout {
            if r.offset > written {
                let pad = vec![0u8; (r.offset - written) as usize];
                w.write_all(&pad)?;
                pb.inc(pad.len() as u64);
            }
            stream_tensor(w, t, &mut buf, &pb)?;
            written = r.offset + r.length;
        }
        Ok::<_, std::io::Error>(())
    });
    written.map_err(|err| CompileError::io(&dp, err))?;
    let digest = digest
        .ok_or_else(|| CompileError::io(&dp, std::io::Error::other("the hashing thread failed")))?;
    pb.finish_and_clear();
    data_tmp.sync()?;
    let hash: String = digest[..HASH_BYTES]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let data_path = data_file_path(path, &hash)?;
    let location = utf8_file_name(&data_path)?.to_string();
    for (_, _, r) in &mut layout {
        r.location.clone_from(&location);
    }

    // The model file.
    let model = model_proto(graph, |name, _| {
        match layout.binary_search_by(|(n, _, _)| (*n).cmp(name)) {
            Ok(i) => Placement::External(&layout[i].2),
            Err(_) => Placement::Inline,
        }
    })?;
    let mut model_tmp = TempFile::create(path)?;
    let model_bytes = write_proto(&model, &mut model_tmp)?;
    drop(model);
    model_tmp.sync()?;

    // The data file first (a new name: the current model does not reference it, unless it is
    // the same data), then the model: its rename is the commit point.
    let data_existed = data_path.exists();
    data_tmp.retarget(data_path.clone());
    data_tmp.commit()?;
    if let Err(err) = model_tmp.commit() {
        if !data_existed {
            let _ = std::fs::remove_file(&data_path);
        }
        return Err(err);
    }
    let dir = parent_dir(path);
    sync_dir(&dir);
    remove_stale_files(path, Some(&location));
    Ok(WriteReport {
        model_path: path.to_path_buf(),
        model_bytes,
        data: Some(DataFileReport {
            path: data_path,
            bytes: cursor,
            tensors: layout.len(),
        }),
        automatic: false,
        inline_estimate: 0,
    })
}

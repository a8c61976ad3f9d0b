//! Helpers shared by the uie fuzz targets (`fuzz_targets/`): the input formats of the multi-part
//! targets and the panic policy. See `docs/fuzzing.md`.

use std::collections::BTreeSet;
use std::sync::{Mutex, Once};

/// Separates the files of a `checkpoint_read` input: `config.toml`, `weights.safetensors`,
/// `meta.json` and optionally `golden.safetensors`, in that order (the seed generator
/// `tests/examples/fuzz_seeds.rs` and uie-model's regression test use the same constant).
pub const SEPARATOR: &[u8] = b"\n\0--uie-fuzz-file--\0\n";

/// Splits a `checkpoint_read` input into its files (missing trailing files are empty).
pub fn split_files(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        parts.push(&rest[..i]);
        rest = &rest[i + SEPARATOR.len()..];
    }
    parts.push(rest);
    parts
}

/// Splits a `request_decode` input: an optional first line `#<value>\n` carries the value of the
/// `Inference-Header-Content-Length` header (as bytes, possibly not a number); the rest is the
/// body. Without the leading `#` the whole input is the body and there is no header.
pub fn split_header(data: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match data.strip_prefix(b"#") {
        Some(rest) => match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (Some(rest), &[][..]),
        },
        None => (None, data),
    }
}

/// libFuzzer's hook aborts on every panic, even one the code under test catches. The runtime
/// catches panics raised inside tract (`uie_runtime::engine` runs every tract call under
/// `catch_unwind` and returns `RuntimeError::Load`/`Run`), so for the targets that reach tract
/// this installs (once) a hook that lets a panic whose location is in a third-party crate (under
/// the cargo registry) unwind to that guard, printing each distinct location once. A panic in the
/// project's own code, or one no guard catches (libfuzzer-sys then aborts), is still a crash.
pub fn let_dependency_panics_reach_the_guards() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let fatal = std::panic::take_hook();
        let seen: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
        std::panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            if location.contains("/.cargo/registry/") {
                let first = seen.lock().map_or(true, |mut s| s.insert(location.clone()));
                if first {
                    let message = info
                        .payload()
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| info.payload().downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    eprintln!("[uie-fuzz] dependency panic at {location}: {message}");
                }
                return;
            }
            fatal(info);
        }));
    });
}

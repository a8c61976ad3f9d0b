//! Helpers shared by the uie fuzz targets (`fuzz_targets/`): the input formats of the multi-part
//! targets and the panic policy. See `docs/fuzzing.md`.

use std::collections::BTreeSet;
use std::sync::{Mutex, Once};

/// The input formats of the multi-part targets (`checkpoint_read`: files joined by [`SEPARATOR`];
/// `request_decode`: an optional `#<header value>` first line), defined once in uie-testkit so the
/// stable regression tests and the seed generator split inputs the same way.
pub use uie_testkit::fuzz_input::{split_files, split_header, SEPARATOR};

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

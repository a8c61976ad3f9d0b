//! The check every bad-input test of a project binary (`uie-compile`, `uie-train`) makes on a run
//! that must fail: exit code 1, no panic, ONE line on stderr `error: …` naming the problem.

use std::process::Output;

/// Checks a finished run of a binary that must refuse its input: exit code 1, no panic, and
/// stderr exactly one line starting `error: ` that holds every fragment (printed for the test
/// log). Returns that line.
pub fn one_line_error(output: &Output, fragments: &[&str]) -> String {
    let err = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{}", err.trim_end());
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit code; stdout {stdout:?}, stderr {err:?}"
    );
    assert!(!err.contains("panicked"), "a panic: {err}");
    let line = err.trim_end();
    assert!(!line.contains('\n'), "not one line: {err:?}");
    assert!(line.starts_with("error: "), "{err:?}");
    for f in fragments {
        assert!(line.contains(f), "{f:?} missing from {line:?}");
    }
    line.to_string()
}

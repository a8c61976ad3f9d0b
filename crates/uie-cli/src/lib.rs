//! What the uie binaries (`uie-train`, `uie-compile`, `uie-serve`) share at their edge: the one
//! line a failed run reports on stderr. The libraries return typed errors; each binary wraps them
//! in `anyhow` context and prints [`one_line`] of the result. Nothing here prints.

/// The error and its causes on one line, `outer: cause: …`: a cause whose text the line already
/// holds is left out (the typed errors put their source in their own message), one that starts
/// with the previous part's words replaces it, and line breaks become spaces.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string().replace(['\n', '\r'], " ");
        if parts.join(": ").contains(text.as_str()) {
            continue;
        }
        match parts.last_mut() {
            Some(last) if text.starts_with(last.as_str()) => *last = text,
            _ => parts.push(text),
        }
    }
    parts.join(": ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::one_line;
    use anyhow::{anyhow, Context};

    #[test]
    fn joins_the_chain_with_colons() {
        let e = Err::<(), _>(anyhow!("file is truncated"))
            .context("reading weights.safetensors")
            .context("loading checkpoint out/best")
            .unwrap_err();
        assert_eq!(
            one_line(&e),
            "loading checkpoint out/best: reading weights.safetensors: file is truncated"
        );
    }

    #[test]
    fn leaves_out_a_cause_the_line_already_holds() {
        // A typed error that repeats its source in its own message.
        let e = Err::<(), _>(anyhow!("disk full"))
            .context("writing model.onnx: disk full")
            .context("compiling")
            .unwrap_err();
        assert_eq!(one_line(&e), "compiling: writing model.onnx: disk full");
    }

    #[test]
    fn a_cause_that_extends_the_previous_part_replaces_it() {
        let e = Err::<(), _>(anyhow!("bad config: field model.name is empty"))
            .context("bad config")
            .unwrap_err();
        assert_eq!(one_line(&e), "bad config: field model.name is empty");
    }

    #[test]
    fn line_breaks_become_spaces() {
        let e = anyhow!("first line\nsecond line\r\nthird");
        assert_eq!(one_line(&e), "first line second line  third");
    }
}

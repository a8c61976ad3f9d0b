//! The input formats of the multi-part fuzz targets (`fuzz/`, see `docs/fuzzing.md`), shared by
//! the targets, their seed generator (`uie-compile`'s `fuzz_seeds` example) and the stable
//! regression tests that replay `fixtures/fuzz-regressions/` (uie-model, uie-serve). Plain byte
//! splitting: nothing here can fail.

/// Separates the files of a `checkpoint_read` input: `config.toml`, `weights.safetensors`,
/// `meta.json` and optionally `golden.safetensors`, in that order.
pub const SEPARATOR: &[u8] = b"\n\0--uie-fuzz-file--\0\n";

/// Splits a `checkpoint_read` input into its files at every [`SEPARATOR`] (an input without one
/// is a single file; the caller treats missing trailing files as empty).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_files_cuts_at_every_separator() {
        let data = [b"a".as_slice(), SEPARATOR, b"", SEPARATOR, b"c"].concat();
        assert_eq!(split_files(&data), vec![&b"a"[..], &b""[..], &b"c"[..]]);
        assert_eq!(split_files(b"whole"), vec![&b"whole"[..]]);
    }

    #[test]
    fn split_header_reads_an_optional_first_line() {
        assert_eq!(split_header(b"#12\nbody"), (Some(&b"12"[..]), &b"body"[..]));
        assert_eq!(split_header(b"#12"), (Some(&b"12"[..]), &b""[..]));
        assert_eq!(split_header(b"body"), (None, &b"body"[..]));
    }
}

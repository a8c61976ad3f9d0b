//! How raw values become ids and ids become embedding rows (`docs/model.md` §1).
//!
//! A categorical value that is not already an integer (a census string, a genre) becomes an int64
//! id by [`feature_id`], FNV-1a 64 of its UTF-8 bytes, reinterpreted as `i64`: anyone can compute it
//! without a vocabulary. An id becomes a row by [`bucket`]: `id mod H_f` with the Python rule (the
//! result is in `[0, H_f)` for every int64, negative ids included), which is ONNX `Mod` with
//! `fmod = 0`. No id can index out of range.

/// FNV-1a 64-bit hash of a value's UTF-8 bytes, as the int64 id the model takes.
pub fn feature_id(value: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in value.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h as i64
}

/// The embedding row of `id` in a table of `buckets` rows: `id mod buckets`, Python-style.
///
/// `buckets` must be at least 1 and at most `i64::MAX` (the config caps it at 2^31).
pub fn bucket(id: i64, buckets: usize) -> usize {
    let h = buckets as i64;
    id.rem_euclid(h) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_follows_python_modulo() {
        assert_eq!(bucket(7, 5), 2);
        assert_eq!(bucket(-1, 5), 4);
        assert_eq!(bucket(-10, 5), 0);
        assert_eq!(
            bucket(i64::MIN, 7),
            (((i64::MIN as i128) % 7 + 7) % 7) as usize
        );
        assert_eq!(bucket(i64::MAX, 1000), (i64::MAX % 1000) as usize);
        assert_eq!(bucket(1 << 41, 3), ((1i64 << 41) % 3) as usize);
    }

    #[test]
    fn fnv1a_known_values() {
        // Reference values of FNV-1a 64 ("" is the offset basis; "a" from the FNV test suite).
        assert_eq!(feature_id("") as u64, 0xcbf2_9ce4_8422_2325);
        assert_eq!(feature_id("a") as u64, 0xaf63_dc4c_8601_ec8c);
        assert_ne!(feature_id("Private"), feature_id("private"));
    }
}

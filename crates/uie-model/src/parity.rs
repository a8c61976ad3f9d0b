//! The parity rule of `docs/model.md` §7, shared by `uie-compile verify` and the end-to-end tests:
//! for the same checkpoint and inputs, engines agree on `probs` within `|a − b| ≤ 1e-5 + 1e-4·|b|`
//! (b the reference value).

/// Absolute part of the parity tolerance.
pub const ABS_TOL: f32 = 1e-5;
/// Relative part of the parity tolerance.
pub const REL_TOL: f32 = 1e-4;

/// The parity rule for one value `a` against the expected `b` (false for NaN).
pub fn within_tolerance(a: f32, b: f32) -> bool {
    (a - b).abs() <= ABS_TOL + REL_TOL * b.abs()
}

/// How far one engine's values are from the expected ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Values compared.
    pub count: usize,
    /// Largest `|a − b|` (infinite on a length mismatch or NaN).
    pub max_abs_diff: f32,
    /// Values outside the tolerance.
    pub mismatches: usize,
}

/// Compares values element by element with [`within_tolerance`].
pub fn compare(actual: &[f32], expected: &[f32]) -> Comparison {
    if actual.len() != expected.len() {
        return Comparison {
            count: actual.len().max(expected.len()),
            max_abs_diff: f32::INFINITY,
            mismatches: actual.len().max(expected.len()),
        };
    }
    let mut c = Comparison {
        count: actual.len(),
        max_abs_diff: 0.0,
        mismatches: 0,
    };
    for (&a, &b) in actual.iter().zip(expected) {
        let d = (a - b).abs();
        if d.is_nan() || d > c.max_abs_diff {
            c.max_abs_diff = if d.is_nan() { f32::INFINITY } else { d };
        }
        if !within_tolerance(a, b) {
            c.mismatches += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_is_relative_and_rejects_nan_and_length_mismatch() {
        assert!(within_tolerance(1.0, 1.0 + 1.05e-4));
        assert!(!within_tolerance(1.0, 1.0 + 2e-4));
        assert!(within_tolerance(0.0, 9e-6));
        assert!(!within_tolerance(0.0, 2e-5));
        assert!(!within_tolerance(f32::NAN, 0.5));
        let c = compare(&[0.5, f32::NAN], &[0.5, 0.5]);
        assert_eq!((c.mismatches, c.max_abs_diff), (1, f32::INFINITY));
        assert_eq!(compare(&[0.5], &[0.5, 0.5]).mismatches, 2);
    }
}

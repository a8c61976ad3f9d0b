//! Shared assertions: two tensors compared by the parity rule (`uie_model::parity`), the IR and
//! other text snapshots, sorted directory listings.

use std::path::Path;

use uie_model::parity::within_tolerance;
use uie_model::{Tensor, TensorData};

/// Compares an engine's output with the expected one: same dtype and shape, exact for int64, the
/// parity rule ([`within_tolerance`]) for f32. Returns the largest `|actual − expected|` (0 for
/// int64); the error names the first offending element.
pub fn compare(actual: &Tensor, expected: &Tensor) -> Result<f32, String> {
    if actual.shape != expected.shape {
        return Err(format!(
            "shape {:?} vs expected {:?}",
            actual.shape, expected.shape
        ));
    }
    match (&actual.data, &expected.data) {
        (TensorData::F32(a), TensorData::F32(b)) => {
            let mut worst = 0.0f32;
            for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
                let d = (x - y).abs();
                if !within_tolerance(x, y) {
                    return Err(format!(
                        "element {i}: {x} vs expected {y} (|diff| {d:e}) breaks the parity rule"
                    ));
                }
                worst = worst.max(d);
            }
            Ok(worst)
        }
        (TensorData::I64(a), TensorData::I64(b)) => {
            match a.iter().zip(b).position(|(x, y)| x != y) {
                Some(i) => Err(format!("element {i}: {} vs expected {}", a[i], b[i])),
                None => Ok(0.0),
            }
        }
        _ => Err(format!(
            "dtype {} vs expected {}",
            actual.dtype(),
            expected.dtype()
        )),
    }
}

/// Asserts [`compare`]: panics with `what` and the first difference.
pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor) {
    if let Err(e) = compare(actual, expected) {
        panic!("{what}: {e}");
    }
}

/// Asserts that `text` equals the snapshot file at `path`; with the environment variable
/// `UPDATE_SNAPSHOTS` set, writes `text` there first (review the diff, then commit it).
pub fn assert_snapshot(path: &Path, text: &str) {
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, text)
            .unwrap_or_else(|e| panic!("writing snapshot {}: {e}", path.display()));
    }
    let want = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "snapshot {}: {e} (run with UPDATE_SNAPSHOTS=1)",
            path.display()
        )
    });
    assert_eq!(
        text,
        want,
        "{} changed: review and rerun with UPDATE_SNAPSHOTS=1",
        path.display()
    );
}

/// Every entry of a directory, sorted by name.
pub fn listing(dir: &Path) -> Vec<String> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut v: Vec<String> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_is_exact_for_ints_and_relative_for_floats() {
        let i = |v: &[i64]| Tensor::i64(vec![v.len()], v.to_vec());
        let f = |v: &[f32]| Tensor::f32(vec![v.len()], v.to_vec());
        assert_eq!(compare(&i(&[1, i64::MIN]), &i(&[1, i64::MIN])), Ok(0.0));
        assert!(compare(&i(&[1, 2]), &i(&[1, 3])).is_err());
        assert!(compare(&f(&[1.0]), &f(&[1.00005])).is_ok());
        assert!(compare(&f(&[1.0]), &f(&[1.001])).is_err());
        assert!(compare(&f(&[1.0]), &i(&[1])).is_err());
        assert!(compare(&f(&[1.0, 2.0]), &f(&[1.0])).is_err());
        assert!(compare(&f(&[f32::NAN]), &f(&[1.0])).is_err());
    }

    #[test]
    #[should_panic(expected = "probs: element 0")]
    fn assert_close_names_what_differs() {
        let f = |v: f32| Tensor::f32(vec![1], vec![v]);
        assert_close("probs", &f(0.5), &f(0.6));
    }
}

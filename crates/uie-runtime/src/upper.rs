//! Clearing the upper halves of the vector registers between plan nodes.
//!
//! tract's matrix-multiply and activation kernels are hand-written AVX/AVX-512 assembly that
//! starts with `vzeroall` but returns without `vzeroupper`, so after each of them the upper halves
//! of the YMM/ZMM registers are left "dirty". Code compiled for the baseline x86-64 target (this
//! crate's kernels, most of tract's Rust code) uses legacy SSE encodings, and on this project's
//! machine every such instruction then runs under the dirty-upper-state penalty: the fused
//! attention measured 2.7× slower after one model run than before it, and as fast again after a
//! `vzeroupper` (`docs/perf-log.md`, "The upper vector state"). [`clear`] issues that
//! `vzeroupper`; [`crate::Engine`] calls it after every node of the plan.

/// Clears the upper halves of the vector registers (`vzeroupper`) when the CPU has AVX; does
/// nothing on CPUs without AVX (their SSE code has no such state) and on other architectures.
#[inline]
pub fn clear() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: `zero_upper` only requires AVX, which the CPU was just checked to have.
        // `vzeroupper` reads and writes no memory; it zeroes bits 128 and up of the vector
        // registers, which code compiled without AVX (every caller of this function, since the
        // `target_feature` function cannot be inlined into them) never keeps values in.
        #[allow(unsafe_code)]
        unsafe {
            zero_upper()
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn zero_upper() {
    std::arch::x86_64::_mm256_zeroupper();
}

#[cfg(test)]
mod tests {
    use super::clear;

    /// Values live in vector registers across the call keep their values: `clear` only zeroes
    /// bits no caller keeps values in.
    #[test]
    fn clear_keeps_live_values() {
        let xs: Vec<f32> = (0..64).map(|i| i as f32 * 0.37 - 5.0).collect();
        let before: f32 = xs.iter().map(|x| x * x).sum();
        let mut acc = [0f32; 8];
        for (k, chunk) in xs.chunks_exact(8).enumerate() {
            for (a, &x) in acc.iter_mut().zip(chunk) {
                *a += x * x;
            }
            if k % 2 == 0 {
                clear();
            }
        }
        let after: f32 = acc.iter().sum();
        assert!(
            (before - after).abs() <= 1e-3 * before.abs(),
            "{before} vs {after}"
        );
        // Idempotent and callable any number of times.
        for _ in 0..3 {
            clear();
        }
    }
}

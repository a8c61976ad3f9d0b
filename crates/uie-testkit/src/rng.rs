//! The seeded generator of all test data: ChaCha8 (`rand_chacha`), seeded with
//! `SeedableRng::seed_from_u64`. rand_chacha keeps the ChaCha streams stable across its
//! releases, and the mapping to floats below is this crate's own, so a seed names the same data
//! for as long as the seed does not change.

use rand_chacha::rand_core::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded pseudo-random generator for reproducible test data.
#[derive(Debug, Clone)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// A generator seeded with `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[lo, hi)`: the top 24 bits of [`Rng::next_u64`] as a fraction of 2^24.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let (mut a, mut b, mut c) = (Rng::new(3), Rng::new(3), Rng::new(4));
        let (x, y, z) = (a.next_u64(), b.next_u64(), c.next_u64());
        assert_eq!(x, y);
        assert_ne!(x, z);
        let u = a.uniform(-1.0, 1.0);
        assert!((-1.0..1.0).contains(&u), "{u}");
    }

    /// The stream is part of the test data: a change of generator or seeding shows here first.
    #[test]
    fn the_stream_of_seed_zero_is_pinned() {
        let mut r = Rng::new(0);
        let first: Vec<u64> = (0..2).map(|_| r.next_u64()).collect();
        assert_eq!(first, PINNED);
    }

    const PINNED: [u64; 2] = [0xB585_F767_A79A_3B6C, 0x7746_A55F_BAD8_C037];
}

//! The one random-number generator of the trainer: every seed that makes data or weights (the
//! Census split, MovieLens negatives, initial weights, the per-epoch shuffles, stream clustering,
//! k-means++ and reseeding) seeds a [`SeedRng`] through [`seeded`].
//!
//! The stream is part of the data contract: [`SeedRng`] is `rand_chacha::ChaCha8Rng`, seeded by
//! `SeedableRng::seed_from_u64` (the `u64` expanded by PCG32 into the 32-byte ChaCha key, stream
//! 0), whose output rand_chacha documents as portable and stable across versions. The values drawn
//! from it go through rand 0.10's `random_range`, `random`, `SliceRandom::shuffle` and
//! `seq::index::sample`, whose algorithms rand keeps within a minor series: a change of the
//! `rand` or `rand_chacha` minor version (or rand's `unbiased` feature) may change every split
//! and initial weight, and so must be treated as a change of the data. (`rand::rngs::StdRng` is
//! not used: rand documents its algorithm as free to change.)

use rand::SeedableRng;
pub use rand_chacha::ChaCha8Rng as SeedRng;

/// The generator of `seed` (see the module doc for why this and no other).
pub fn seeded(seed: u64) -> SeedRng {
    SeedRng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn the_stream_of_a_seed_is_fixed() {
        // The first words of `seeded(0)` and `seeded(1)`, as an independent implementation of
        // the same definition computes them (PCG32 key expansion, then the ChaCha block function
        // with 8 rounds, 64-bit block counter from 0, nonce 0, words little-endian in pairs). A
        // change of generator, seeding or rand_chacha version that moves them changes every split
        // and weight of the trainer.
        let words = |seed| {
            let mut r = seeded(seed);
            [r.next_u64(), r.next_u64(), r.next_u64()]
        };
        assert_eq!(words(0), STREAM_0);
        assert_eq!(words(1), STREAM_1);
        assert_ne!(words(0), words(1));
    }

    const STREAM_0: [u64; 3] = [
        13080132717333068652,
        8594738769458413623,
        12896916468484187878,
    ];
    const STREAM_1: [u64; 3] = [
        7424550030962593201,
        1482817706323250795,
        11004592982271133285,
    ];
}

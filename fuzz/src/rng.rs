//! A small deterministic random number generator (SplitMix64). Input `i` of a run is made from
//! `Rng::for_input(seed, i)` alone, so any input can be made again from its index: that is how the
//! driver recovers the input that killed a worker (stack overflow, abort) or hung it.

/// SplitMix64: fast, good enough for choosing mutations, and reproducible everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The generator for input `index` of a run started with `seed`.
    pub fn for_input(seed: u64, index: u64) -> Rng {
        let mut r = Rng(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next_u64() % n as u64) as usize
    }

    /// True once in `n` times.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length biased towards small values (most useful mutations are small), up to `max`.
    pub fn small_len(&mut self, max: usize) -> usize {
        let cap = match self.below(4) {
            0 => 4,
            1 => 16,
            2 => 256,
            _ => max,
        };
        self.below(cap.min(max) + 1)
    }
}

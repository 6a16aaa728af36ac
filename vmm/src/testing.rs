//! Helpers for unit tests: a small deterministic PRNG for mutation tests (no external
//! fuzzing crate in the normal test run; cargo-fuzz targets live in rpc-shm/fuzz).

/// xorshift64*: deterministic, seedable, good enough to scramble test inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Flips 1..=8 random bytes of `bytes` to random values (or interesting ones).
    pub fn mutate(&mut self, bytes: &mut [u8]) {
        if bytes.is_empty() {
            return;
        }
        for _ in 0..1 + self.below(8) {
            let at = self.below(bytes.len());
            bytes[at] = match self.below(4) {
                0 => 0,
                1 => 0xff,
                2 => bytes[at].wrapping_add(1),
                _ => self.next() as u8,
            };
        }
    }
}

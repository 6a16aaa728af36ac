//! xorshift64*: deterministic, seedable, good enough to scramble test inputs.

/// A seedable PRNG; the same seed gives the same sequence on every run.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (made odd: an all-zero state never leaves zero).
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    #[allow(
        clippy::should_implement_trait,
        reason = "an endless generator, not an iterator: `next` never ends"
    )]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (0 for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// An index into a slice of `len` elements (0 for an empty one).
    pub fn index(&mut self, len: usize) -> usize {
        let len = u64::try_from(len).expect("slice lengths fit u64");
        usize::try_from(self.below(len)).expect("below len, which came from a usize")
    }

    /// Flips 1..=8 random bytes of `bytes` to random values (or interesting ones).
    pub fn mutate(&mut self, bytes: &mut [u8]) {
        if bytes.is_empty() {
            return;
        }
        for _ in 0..1 + self.below(8) {
            let at = self.index(bytes.len());
            bytes[at] = match self.below(4) {
                0 => 0,
                1 => 0xff,
                2 => bytes[at].wrapping_add(1),
                _ => self.next().to_le_bytes()[0],
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_bounds_hold() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            assert_eq!(a.next(), b.next());
            assert!(a.below(10) < 10);
            assert!(b.below(10) < 10);
            assert!(a.index(3) < 3);
            b.index(3);
        }
        assert_eq!(a.below(0), 0);
        assert_ne!(Rng::new(0).next(), 0);
    }

    #[test]
    fn mutate_changes_at_most_eight_bytes() {
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            let mut bytes = [0x55u8; 64];
            rng.mutate(&mut bytes);
            assert!(bytes.iter().filter(|&&b| b != 0x55).count() <= 8);
        }
    }
}

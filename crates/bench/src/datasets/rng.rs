//! A small seeded random number generator (SplitMix64) for dataset sampling.
//!
//! It is deliberately self-contained so that a seed keeps producing the same datasets no
//! matter which version of an external random-number crate is in the lock file.

/// Deterministic 64-bit generator (SplitMix64). Not for cryptography.
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Mixes one 64-bit value into a well-distributed one (the SplitMix64 finaliser).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stable 64-bit hash of a string (FNV-1a followed by [`mix64`]), used to derive
/// per-template seeds.
pub fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix64(h)
}

impl SeededRng {
    /// A generator whose whole stream is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: mix64(seed ^ GOLDEN),
        }
    }

    /// A generator derived from a seed and a list of stream labels.
    pub fn derive(seed: u64, labels: &[u64]) -> Self {
        let mut s = mix64(seed);
        for &l in labels {
            s = mix64(s ^ l.wrapping_mul(GOLDEN));
        }
        Self::new(s)
    }

    /// Next raw 64-bit output.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform integer in `0..n` (`n > 0`), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "SeededRng::below(0)");
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Uniform index in `0..n` (`n > 0`).
    pub fn index(&mut self, n: usize) -> usize {
        // usize -> u64 is lossless on every supported target; the result is < n.
        self.below(n as u64) as usize
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }

    /// `k` distinct indices from `0..n`, in sampling order (like Python's `random.sample`).
    pub fn distinct_indices(&mut self, n: usize, k: usize) -> Option<Vec<usize>> {
        if k > n {
            return None;
        }
        let mut pool: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = i + self.index(n - i);
            pool.swap(i, j);
        }
        pool.truncate(k);
        Some(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_in_range() {
        let mut a = SeededRng::new(7);
        let mut b = SeededRng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut r = SeededRng::new(1);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let v = r.index(5);
            seen[v] = true;
        }
        assert!(seen.iter().all(|&s| s));
        let d = r.distinct_indices(10, 10).expect("k <= n");
        let mut s = d.clone();
        s.sort_unstable();
        assert_eq!(s, (0..10).collect::<Vec<_>>());
        assert!(r.distinct_indices(3, 4).is_none());
    }

    #[test]
    fn derive_separates_streams() {
        let mut a = SeededRng::derive(1, &[1, 2]);
        let mut b = SeededRng::derive(1, &[2, 1]);
        assert_ne!(a.next_u64(), b.next_u64());
    }
}

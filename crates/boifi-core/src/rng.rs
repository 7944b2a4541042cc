//! Deterministic random numbers and hashing for the percentage draw.
//!
//! The core takes its randomness as an argument; callers that need a generator (the filter,
//! `simulate`) use [`XorShift64Star`], seeded, so runs can be repeated.

/// Marsaglia's xorshift64* generator: small, fast, and good enough for sampling.
#[derive(Debug, Clone)]
pub struct XorShift64Star {
    state: u64,
}

impl XorShift64Star {
    /// A generator from a seed; every seed, 0 included, gives a usable stream.
    pub fn new(seed: u64) -> XorShift64Star {
        // The state must never be 0; mixing the seed also spreads nearby seeds apart.
        let state = splitmix64(seed);
        XorShift64Star {
            state: if state == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                state
            },
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// SplitMix64's output function for the state `x` (the golden-gamma step, then the
/// finalizer): a bijective 64-bit mix; `splitmix64(0)` is SplitMix64's first output from seed 0.
pub const fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a (64-bit) over bytes, its offset basis xor'ed with `seed` (`seed` 0 is plain
/// FNV-1a): the same value on every platform (wasm32 and x86_64 alike).
pub fn fnv1a64(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325 ^ seed, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_zero_seed_works() {
        let mut a = XorShift64Star::new(7);
        let mut b = XorShift64Star::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut z = XorShift64Star::new(0);
        assert_ne!(z.next_u64(), z.next_u64());
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a64(b"", 0), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a", 0), 0xaf63_dc4c_8601_ec8c);
    }
}

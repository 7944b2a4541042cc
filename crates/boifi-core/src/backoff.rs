//! Reconnect delays: exponential, bounded, with jitter, forever. The filters' config long-poll
//! and the control plane's etcd watch both wait with it. Pure: the jitter comes from a random
//! number the caller draws, so the same draws give the same waits.

/// Exponential backoff with "equal jitter": each wait is half the current base plus a random
/// share of the other half, so a fleet of sidecars that lost the control plane together does
/// not reconnect in lockstep. The base doubles per failure up to the maximum; there is no
/// retry limit (the legacy plugin gave up after one failure and never recovered). linkerd2-proxy's
/// `exp-backoff` is the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    base_ms: u64,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `initial_ms` and capped at `max_ms` (both at least 1 ms).
    pub fn new(initial_ms: u64, max_ms: u64) -> Backoff {
        let initial_ms = initial_ms.max(1);
        let max_ms = max_ms.max(initial_ms);
        Backoff {
            initial_ms,
            max_ms,
            base_ms: initial_ms,
            failures: 0,
        }
    }

    /// The wait before the next attempt after one more failure; `draw` is a random number.
    pub fn next_delay_ms(&mut self, draw: u64) -> u64 {
        let base = self.base_ms;
        let half = base / 2;
        let spread = base - half;
        let wait = half + draw % spread.saturating_add(1);
        self.base_ms = base.saturating_mul(2).min(self.max_ms);
        self.failures = self.failures.saturating_add(1);
        wait.clamp(1, self.max_ms)
    }

    /// Back to the initial delay (after a successful request).
    pub fn reset(&mut self) {
        self.base_ms = self.initial_ms;
        self.failures = 0;
    }

    /// Consecutive failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;

    #[test]
    fn grows_to_the_cap_and_never_exceeds_it() {
        let mut b = Backoff::new(1_000, 30_000);
        let mut draws = crate::rng::XorShift64Star::new(7);
        let mut last_base = 0;
        for i in 0..40 {
            let w = b.next_delay_ms(draws.next_u64());
            assert!((1..=30_000).contains(&w), "attempt {i}: {w}");
            let base = (1_000u64 << i.min(5)).min(30_000);
            assert!(
                w >= base / 2 && w <= base,
                "attempt {i}: {w} not in [{}, {base}]",
                base / 2
            );
            last_base = base;
        }
        assert_eq!(last_base, 30_000);
        assert_eq!(b.failures(), 40);
    }

    #[test]
    fn reset_returns_to_the_initial_delay() {
        let mut b = Backoff::new(1_000, 30_000);
        for _ in 0..10 {
            b.next_delay_ms(u64::MAX);
        }
        b.reset();
        assert!(b.next_delay_ms(u64::MAX) <= 1_000);
        assert_eq!(b.failures(), 1);
    }

    #[test]
    fn jitter_spreads_waits() {
        let mut seen = alloc::collections::BTreeSet::new();
        for draw in 0..100u64 {
            let mut b = Backoff::new(1_000, 30_000);
            seen.insert(b.next_delay_ms(draw.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        }
        assert!(seen.len() > 50, "{} distinct waits", seen.len());
    }

    #[test]
    fn degenerate_bounds_are_fixed_up() {
        let mut b = Backoff::new(0, 0);
        assert_eq!(b.next_delay_ms(12345), 1);
    }
}

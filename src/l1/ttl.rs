//! Lifetimes of one write: the L2 TTL and the L1 lifetime, both spread by the category's
//! `ttl_jitter` so that keys written together do not expire together.
//!
//! Why its own file: the jitter is a pure function of (configured lifetime, jitter fraction,
//! a uniform draw); the draw comes from a small seedable generator, so tests can replay it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::L1Category;

/// The L2 TTL and the L1 lifetime of one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteTtls {
    /// TTL of the key in Redis.
    pub l2: Duration,
    /// Lifetime of the L1 entry (at most the category TTL).
    pub l1: Duration,
}

/// `d` scaled by a factor in `(1 − jitter, 1]` chosen by `unit` (uniform in `[0, 1)`):
/// never longer than `d`, never shorter than `d · (1 − jitter)`.
pub fn jittered(d: Duration, jitter: f64, unit: f64) -> Duration {
    if jitter <= 0.0 || !jitter.is_finite() {
        return d;
    }
    let factor = (1.0 - jitter.min(1.0) * unit.clamp(0.0, 1.0)).clamp(0.0, 1.0);
    // Float rounding must never make an entry live longer than configured.
    d.mul_f64(factor).min(d)
}

/// A lock-free splitmix64 generator: uniform draws in `[0, 1)`, reproducible from its seed.
#[derive(Debug)]
pub struct JitterRng {
    state: AtomicU64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl JitterRng {
    /// A generator starting at `seed`.
    pub fn seeded(seed: u64) -> JitterRng {
        JitterRng {
            state: AtomicU64::new(seed),
        }
    }

    /// Restarts the sequence at `seed`.
    pub fn reseed(&self, seed: u64) {
        self.state.store(seed, Ordering::Relaxed);
    }

    /// The next draw, uniform in `[0, 1)`.
    pub fn unit(&self) -> f64 {
        let mut z = self
            .state
            .fetch_add(GOLDEN, Ordering::Relaxed)
            .wrapping_add(GOLDEN);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl L1Category {
    /// Restarts the jitter draws from `seed` (tests replay a sequence of lifetimes).
    pub fn seed_jitter(&self, seed: u64) {
        self.jitter.reseed(seed);
    }

    /// The lifetimes of a write with the per-call `ttl`: the L2 TTL is `ttl` (else the
    /// category TTL), the L1 lifetime `min(ttl, category TTL)`, both scaled by one draw of
    /// the category's `ttl_jitter` (never longer than that).
    pub fn write_ttls(&self, ttl: Option<Duration>) -> WriteTtls {
        let j = self.config.ttl_jitter;
        let u = if j > 0.0 { self.jitter.unit() } else { 0.0 };
        WriteTtls {
            l2: jittered(ttl.unwrap_or(self.config.ttl()), j, u),
            l1: jittered(self.entry_ttl(ttl), j, u),
        }
    }

    /// The L1 lifetime of a value read from L2 with `remaining` TTL: at most that, and at
    /// most the category TTL spread by `ttl_jitter`.
    pub fn fill_ttl(&self, remaining: Option<Duration>) -> Duration {
        let j = self.config.ttl_jitter;
        let cap = if j > 0.0 {
            jittered(self.config.ttl(), j, self.jitter.unit())
        } else {
            self.config.ttl()
        };
        remaining.map_or(cap, |r| r.min(cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_range_and_never_exceeds_the_ttl() {
        let d = Duration::from_secs(600);
        assert_eq!(jittered(d, 0.0, 0.7), d);
        assert_eq!(jittered(d, 0.2, 0.0), d);
        assert_eq!(jittered(d, 0.2, 0.5), Duration::from_secs(540));
        let rng = JitterRng::seeded(7);
        for _ in 0..10_000 {
            let t = jittered(d, 0.2, rng.unit());
            assert!(t <= d && t > Duration::from_secs(480), "{t:?}");
        }
        // A full jitter may go down to (but not reach) zero.
        assert!(jittered(d, 1.0, 0.999_999) < Duration::from_secs(1));
    }

    #[test]
    fn the_same_seed_replays_the_same_draws() {
        let (a, b) = (JitterRng::seeded(42), JitterRng::seeded(42));
        let xs: Vec<f64> = (0..100).map(|_| a.unit()).collect();
        let ys: Vec<f64> = (0..100).map(|_| b.unit()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((0.3..0.7).contains(&mean), "mean {mean}");
        let other: Vec<f64> = (0..100).map(|_| JitterRng::seeded(43).unit()).collect();
        assert_ne!(xs[0], other[0]);
    }
}

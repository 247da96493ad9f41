//! The clock of the freshness lease. `Instant` (CLOCK_MONOTONIC) stops while a VM or host
//! is suspended: a node resumed after a suspend would still hold up to B of lease measured
//! on it, however long the suspend lasted. The lease therefore runs on CLOCK_BOOTTIME, which
//! keeps counting through a suspend (CLOCK_MONOTONIC off Linux, where no such clock is
//! read here).
//!
//! The sans-IO machine keeps taking an `Instant` as its time; the bus takes that `Instant`
//! from [`Clock::now`], which advances with the boottime clock (the time spent suspended
//! included). Ping send times, lease deadlines and the read path's check are then all on
//! one clock: the read path compares [`Clock::reading`] (one clock read) with the deadline
//! (one atomic load).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A clock that keeps counting while the machine is suspended, and the `Instant`s derived
/// from it for the coherence machine.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Reads the clock: the time since an arbitrary origin (boot).
    read: fn() -> Duration,
    /// An `Instant` and the reading taken with it: [`Clock::now`] is `at` plus the reading
    /// gained since.
    at: Instant,
    reading: Duration,
}

impl Clock {
    /// The process-wide clock: CLOCK_BOOTTIME on Linux, CLOCK_MONOTONIC elsewhere. Every
    /// caller gets the same anchor, so the `Instant`s of one caller mean the same readings
    /// for another (the bus's deadlines, the read path's lease).
    pub fn system() -> Clock {
        static SYSTEM: OnceLock<Clock> = OnceLock::new();
        *SYSTEM.get_or_init(|| Clock::new(boottime))
    }

    /// A clock that reads `read` (tests inject one that jumps forward, as a suspend does).
    pub fn new(read: fn() -> Duration) -> Clock {
        let reading = read();
        Clock {
            read,
            at: Instant::now(),
            reading,
        }
    }

    /// The clock now (the read path's check).
    #[inline]
    pub fn reading(&self) -> Duration {
        (self.read)()
    }

    /// Now as an `Instant` for the coherence machine: it advances by the time spent
    /// suspended too.
    pub fn now(&self) -> Instant {
        let gained = self.reading().saturating_sub(self.reading);
        // An `Instant` holds i64 seconds and the gain fits in u64 nanoseconds: no overflow.
        self.at.checked_add(gained).unwrap_or(self.at)
    }

    /// The reading that an `Instant` of [`Self::now`] stands for.
    pub fn reading_of(&self, t: Instant) -> Duration {
        if t >= self.at {
            self.reading.saturating_add(t - self.at)
        } else {
            self.reading.saturating_sub(self.at - t)
        }
    }

    /// How long from now until `t` (an `Instant` of [`Self::now`]), for a real timer.
    pub fn until(&self, t: Instant) -> Duration {
        self.reading_of(t).saturating_sub(self.reading())
    }
}

/// CLOCK_BOOTTIME: CLOCK_MONOTONIC plus the time spent suspended.
#[cfg(target_os = "linux")]
fn boottime() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

/// Off Linux: CLOCK_MONOTONIC (a suspend stops it; see the module docs).
#[cfg(not(target_os = "linux"))]
fn boottime() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_is_boottime() {
        let raw = || {
            let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        };
        let before = raw();
        let r = Clock::system().reading();
        let after = raw();
        assert!(
            before <= r && r <= after,
            "{before:?} <= {r:?} <= {after:?}"
        );
    }
}

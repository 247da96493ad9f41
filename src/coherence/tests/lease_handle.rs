//! The read path's [`Lease`]: one atomic deadline against a monotonic clock.

use super::*;
use crate::coherence::Clock;

#[test]
fn new_lease_is_not_held_until_extended() {
    let l = Lease::new(Duration::from_millis(100));
    assert!(!l.held());
    l.extend_to(Instant::now() + Duration::from_secs(60));
    assert!(l.held());
    l.revoke();
    assert!(!l.held());
}

#[test]
fn past_deadline_is_not_held_and_never_shortened() {
    let l = Lease::new(Duration::from_millis(100));
    let now = Instant::now();
    l.extend_to(now + Duration::from_secs(60));
    l.extend_to(now); // older renewal arriving late: ignored
    assert!(l.held());
    l.revoke();
    l.extend_to(now.checked_sub(Duration::from_millis(1)).unwrap_or(now));
    std::thread::sleep(Duration::from_millis(2));
    assert!(!l.held(), "a deadline in the past is no lease");
}

#[test]
fn always_lease_ignores_revoke() {
    let l = Lease::always();
    assert!(l.held() && l.is_always());
    l.revoke();
    l.extend_to(Instant::now());
    assert!(l.held());
    assert_eq!(l.age(), None);
}

#[test]
fn age_counts_from_the_ping_send_time() {
    let b = Duration::from_millis(100);
    let l = Lease::new(b);
    let sent = Instant::now();
    l.extend_to(sent + b);
    let age = l.age().expect("lease exists");
    assert!(age < Duration::from_secs(5), "{age:?}");
}

// ---- issue #23, item 8: a suspended host ----------------------------------------------

/// The boottime clock of [`suspend_lapses_the_lease`], in nanoseconds: it jumps forward
/// when the test "suspends" the machine, while `Instant` (CLOCK_MONOTONIC) does not move.
static SUSPENDABLE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000_000_000);

fn suspendable() -> Duration {
    Duration::from_nanos(SUSPENDABLE.load(std::sync::atomic::Ordering::SeqCst))
}

fn suspend(d: Duration) {
    let nanos = u64::try_from(d.as_nanos()).expect("short suspend");
    SUSPENDABLE.fetch_add(nanos, std::sync::atomic::Ordering::SeqCst);
}

/// A suspend stops CLOCK_MONOTONIC but not CLOCK_BOOTTIME: the lease reads its time from
/// the boottime clock, so a resumed node holds no lease, whether the suspend came after the
/// renewal or between the ping and its echo.
#[test]
fn suspend_lapses_the_lease() {
    let clock = Clock::new(suspendable);
    let l = Lease::with_clock(B, clock);
    let t = clock.now();
    l.extend_to(t + B);
    assert!(l.held());
    suspend(Duration::from_secs(10));
    assert!(!l.held(), "a node resumed from a suspend holds no lease");
    assert!(
        clock.now() >= t + Duration::from_secs(10),
        "the machine's time moved too"
    );

    // The machine runs on the same clock: a ping sent before a suspend and echoed after
    // it renews nothing that is still valid.
    let t = clock.now();
    let mut n = leased(t);
    let id = pings(&n.tick(t))[0];
    suspend(Duration::from_secs(10));
    for a in n.handle_message(echo(id), clock.now()) {
        if let Action::Renew { until } = a {
            l.extend_to(until);
        }
    }
    assert!(
        !l.held(),
        "a ping sent before the suspend proves nothing after it"
    );
}

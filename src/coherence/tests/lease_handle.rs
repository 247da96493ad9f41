//! The read path's [`Lease`]: one atomic deadline against a monotonic clock.

use super::*;

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

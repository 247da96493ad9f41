//! The L2 side of Sentinel's primary proof (see [`crate::coherence::primary`]): L2 is read
//! only while a proof holds, and an authoritative write returns `Ok` only once a proof sent
//! after it returned confirms the server it went to. The bus sets the proof
//! ([`Fence::prove`]) from the coherence machine's
//! [`Action::PrimaryProven`](crate::coherence::Action::PrimaryProven); installing a
//! connection ([`Fence::reset`]) or a majority naming another primary
//! ([`Fence::revoke`]) ends it. Off (always open) for single Redis and Cluster.
//!
//! The decisions are the pure functions of [`crate::coherence::primary`]; this file only
//! keeps their inputs and wakes the writers waiting for a proof.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::L2Error;
use crate::coherence::primary::{readable, write_confirmed};
use crate::coherence::Clock;

/// The proof as the L2 calls see it.
#[derive(Debug, Clone, Copy, Default)]
struct Proof {
    /// Incremented with every installed connection: a proof of one connection's server
    /// confirms nothing written through another.
    conn: u64,
    /// Send time of the newest proof of this connection.
    sent: Option<Instant>,
    /// End of that proof.
    until: Option<Instant>,
}

/// Sentinel's primary fence of one L2 (open when off).
#[derive(Debug)]
pub(super) struct Fence {
    on: bool,
    state: watch::Sender<Proof>,
}

/// What a write must be confirmed against: the connection it went through.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket(Option<u64>);

impl Fence {
    /// A fence: `on` for Sentinel, open otherwise.
    pub(super) fn new(on: bool) -> Fence {
        Fence {
            on,
            state: watch::Sender::new(Proof::default()),
        }
    }

    /// Whether L2 may be read now (always when off).
    pub(super) fn readable(&self) -> Result<(), L2Error> {
        if !self.on || readable(self.state.borrow().until, Clock::system().now()) {
            Ok(())
        } else {
            Err(L2Error::Unproven)
        }
    }

    /// Taken before a write: the connection it goes through.
    pub(super) fn ticket(&self) -> Ticket {
        Ticket(self.on.then(|| self.state.borrow().conn))
    }

    /// After a write returned: waits (at most `bound`) for a proof sent after now, on the
    /// same connection. `Err(L2Error::Unproven)` when none came (fail as if Redis had not
    /// answered).
    pub(super) async fn confirm(&self, ticket: Ticket, bound: Duration) -> Result<(), L2Error> {
        let Ticket(Some(conn)) = ticket else {
            return Ok(());
        };
        let completed = Clock::system().now();
        let mut rx = self.state.subscribe();
        let wait = rx.wait_for(|p| p.conn != conn || write_confirmed(p.sent, completed));
        let same_conn = match tokio::time::timeout(bound, wait).await {
            Ok(Ok(p)) => p.conn == conn,
            _ => false,
        };
        if same_conn {
            Ok(())
        } else {
            Err(L2Error::Unproven)
        }
    }

    /// A proof sent at `sent`, valid until `until`, for the installed connection.
    pub(crate) fn prove(&self, sent: Instant, until: Instant) {
        self.state.send_modify(|p| {
            if p.sent.map_or(true, |s| s < sent) {
                p.sent = Some(sent);
                p.until = Some(until);
            }
        });
    }

    /// Nothing proves the installed connection's server is the primary any more.
    pub(crate) fn revoke(&self) {
        self.state.send_modify(|p| {
            p.sent = None;
            p.until = None;
        });
    }

    /// A connection is installed: proofs start over for it.
    pub(super) fn reset(&self) {
        self.state.send_modify(|p| {
            *p = Proof {
                conn: p.conn.wrapping_add(1),
                sent: None,
                until: None,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_millis(500);

    #[tokio::test]
    async fn off_is_open_on_needs_a_proof_sent_after_the_write() {
        let off = Fence::new(false);
        assert!(off.readable().is_ok());
        assert!(off.confirm(off.ticket(), BOUND).await.is_ok());

        let f = std::sync::Arc::new(Fence::new(true));
        assert!(matches!(f.readable(), Err(L2Error::Unproven)));
        let now = Clock::system().now();
        // A proof sent before the write returned does not confirm it.
        f.prove(now, now + Duration::from_secs(5));
        assert!(f.readable().is_ok());
        let ticket = f.ticket();
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.confirm(ticket, BOUND).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "confirmed by an older proof");
        let later = Clock::system().now();
        f.prove(later, later + Duration::from_secs(5));
        assert!(matches!(waiter.await, Ok(Ok(()))));
    }

    #[tokio::test]
    async fn a_new_connection_or_no_proof_in_time_fails_the_write() {
        let f = std::sync::Arc::new(Fence::new(true));
        let ticket = f.ticket();
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.confirm(ticket, BOUND).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        f.reset();
        let later = Clock::system().now();
        f.prove(later, later + Duration::from_secs(5));
        assert!(matches!(waiter.await, Ok(Err(L2Error::Unproven))));
        let ticket = f.ticket();
        let short = Duration::from_millis(30);
        assert!(matches!(
            f.confirm(ticket, short).await,
            Err(L2Error::Unproven)
        ));
        f.revoke();
        assert!(matches!(f.readable(), Err(L2Error::Unproven)));
    }
}

//! Every Redis call of [`L2`] goes through here: a snapshot of the installed connection,
//! one of the two circuit breakers, the call timeout and the latency timer, and, for
//! authoritative writes, the `WAIT n` pipeline of `l2_min_replicas`.
//!
//! Two breakers, so slow data calls (GET/SET/SCAN) never stop the control calls (PUBLISH of
//! invalidations, heartbeats, lease pings), and the other way round. Each opens after 3
//! consecutive failures for 50 ms doubling up to 400 ms, so a recovered Redis is used again
//! well within a second.

use std::time::Duration;

use failsafe::failure_policy::ConsecutiveFailures;
use failsafe::StateMachine;

use super::{L2Conn, L2Error, L2};

/// Open-circuit periods: 50 ms doubling up to 400 ms, so a recovered Redis is used again
/// well within a second. (failsafe's own exponential backoff only has whole-second steps.)
type OpenPeriods = std::iter::Successors<Duration, fn(&Duration) -> Option<Duration>>;
/// A circuit breaker guarding one kind of call (data or control).
pub(super) type Breaker = StateMachine<ConsecutiveFailures<OpenPeriods>, ()>;

fn open_periods() -> OpenPeriods {
    fn next(d: &Duration) -> Option<Duration> {
        Some((*d * 2).min(Duration::from_millis(400)))
    }
    std::iter::successors(
        Some(Duration::from_millis(50)),
        next as fn(&Duration) -> Option<Duration>,
    )
}

/// A closed breaker that opens after 3 consecutive failures.
pub(super) fn breaker() -> Breaker {
    let policy = failsafe::failure_policy::consecutive_failures(3, open_periods());
    failsafe::Config::new().failure_policy(policy).build()
}

impl L2 {
    /// Runs `pipe` (whose keys share one slot) followed by `WAIT n` on the same connection;
    /// returns the replies of `pipe`'s commands, or [`L2Error::NotReplicated`].
    pub(super) async fn with_wait(
        &self,
        mut pipe: redis::Pipeline,
    ) -> Result<Vec<redis::Value>, L2Error> {
        let wanted = self.wait_for();
        // Leave room in the call timeout for the reply itself.
        let wait_ms = (self.timeout.as_millis() as u64 / 2).max(1);
        pipe.cmd("WAIT").arg(wanted).arg(wait_ms);
        let mut replies: Vec<redis::Value> = self
            .call(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let got = match replies.pop() {
            Some(redis::Value::Int(n)) => n,
            other => return Err(L2Error::Protocol(format!("WAIT replied {other:?}"))),
        };
        if got < i64::from(wanted) {
            return Err(L2Error::NotReplicated { wanted, got });
        }
        Ok(replies)
    }

    /// A data call (GET/SET/SCAN), guarded by the data breaker.
    pub(super) async fn call<T, F, Fut>(&self, f: F) -> Result<T, L2Error>
    where
        F: FnOnce(L2Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, redis::RedisError>>,
    {
        self.call_with(&self.breaker, f).await
    }

    /// Runs `f` on the installed connection unless `breaker` is open, bounded by the call
    /// timeout and timed into the latency histogram; the outcome feeds `breaker`.
    pub(super) async fn call_with<T, F, Fut>(&self, breaker: &Breaker, f: F) -> Result<T, L2Error>
    where
        F: FnOnce(L2Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, redis::RedisError>>,
    {
        let conn = self
            .conn
            .read()
            .ok()
            .and_then(|g| g.clone())
            .ok_or(L2Error::NotConnected)?;
        if !breaker.is_call_permitted() {
            return Err(L2Error::CircuitOpen);
        }
        let _timer = crate::node_metrics::Timer::start(&self.latency);
        match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(v)) => {
                breaker.on_success();
                Ok(v)
            }
            Ok(Err(e)) => {
                breaker.on_error();
                Err(L2Error::Redis(e))
            }
            Err(_) => {
                breaker.on_error();
                Err(L2Error::Timeout(self.timeout))
            }
        }
    }
}

//! Plain limit settings: sizes, timeouts and concurrency caps that other modules enforce.
//!
//! Why here and not next to the code that enforces them: configuration is a leaf. The HTTP
//! server (`server::http::limits`), the actor mailboxes and the message
//! authentication read these values; keeping the data (and its defaults) in `config` means
//! `config` imports none of them, so no import cycle runs through it.

use std::time::Duration;

/// Default capacity of every actor mailbox and of the bus publisher's queue
/// (`mailbox_capacity`, `HC_MAILBOX_CAPACITY`).
pub const DEFAULT_MAILBOX_CAPACITY: usize = 4096;

/// Shortest usable cluster secret in bytes: shorter secrets are rejected at configuration
/// time (the secret keys the HMAC of gossip and bus messages).
pub const MIN_SECRET_LEN: usize = 16;

/// HTTP server limits (the server's `server::http::limits` module has the table of
/// mechanisms and defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections at once (`max_connections`, `HC_MAX_CONNECTIONS`); more are
    /// accepted and closed at once.
    pub max_connections: usize,
    /// Time allowed to read a request's headers; also reaps idle keep-alive connections
    /// (`header_read_timeout_ms`, `HC_HEADER_READ_TIMEOUT_MS`).
    pub header_read_timeout: Duration,
    /// Time allowed to read a request's body (`body_read_timeout_ms`,
    /// `HC_BODY_READ_TIMEOUT_MS`).
    pub body_read_timeout: Duration,
    /// Deadline of a whole API request (`request_timeout_ms`, `HC_REQUEST_TIMEOUT_MS`).
    pub request_timeout: Duration,
    /// API requests in flight at once; more are shed with 503 `overloaded`
    /// (`max_in_flight`, `HC_MAX_IN_FLIGHT`).
    pub max_in_flight: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
            max_in_flight: 512,
        }
    }
}

//! The optional shared L2: Redis.
//!
//! Keys are `{ns}:{category}:{generation}:{key}`. The per-category generation lives in
//! `{ns}:gen:{category}`; `invalidate("*", category)` is one `INCR` instead of a keyspace
//! scan (old keys become unreachable and expire by their TTL). Every read and write is one
//! Lua script, so the generation lookup and the data access are atomic and take one round
//! trip.
//!
//! Values carry a one-byte type tag: [`TAG_VALUE`], [`TAG_TOMBSTONE`], [`TAG_NEGATIVE`] or
//! [`TAG_TAGGED`] (a value carrying tags, see `tags`). A delete writes a short
//! tombstone instead of `DEL`, and fills from loaders are conditional (`NX` and "generation
//! unchanged since the load started"), so a slow loader on one node cannot put an old value
//! back into L2 after another node changed or deleted it. A load that read a tombstone may
//! replace that very tombstone (each carries a random token), so a key deleted more often
//! than the tombstone lives is still cached between its deletes.
//!
//! Every call is bounded by `redis_timeout`, and a circuit breaker (failsafe) stops calling a
//! Redis that keeps failing, so misses answer fast during an outage instead of hanging.
//!
//! The topology (one Redis, Sentinel, Cluster) is [`topology`]'s business; in a cluster each
//! category is split into buckets with a hash tag and a generation each, spread over every
//! primary ([`topology::KeyLayout`]); "the category generation" is then that of the key's
//! bucket, and a category-wide change is applied to every bucket.
//!
//! With `l2_min_replicas = n > 0`, every authoritative write (set, delete tombstone,
//! generation bump, glob tombstones) is followed by `WAIT n` on the same connection, in the
//! same pipeline, and reported as failed ([`L2Error::NotReplicated`]) unless `n` replicas
//! acknowledged it: an acknowledged write is then on the primary and on `n` replicas.
//! Conditional fills after a load are not waited for (losing one costs a miss, not
//! freshness).
//!
//! This file holds the [`L2`] handle and its shared types; the work is split by job:
//! `scripts` (the Lua text), `call` (breakers, timeout, `WAIT`), `read`, `batch` (the
//! fast reads of concurrent misses in one pipeline), `write` (sets,
//! fills, tombstones, generations), `invalidate` (by pattern: generation bump or SCAN),
//! `publish` (the control path of the bus), `backlog` (changes to replay into L2), `hot`
//! (warm-up's shared ranking of hot keys) and
//! [`topology`] (single, Sentinel, Cluster; PUBLISH or SPUBLISH).

mod backlog;
mod batch;
mod call;
mod fence;
mod hot;
mod invalidate;
mod publish;
mod read;
mod refresh;
mod scripts;
mod tags;
pub mod topology;
mod write;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;

use call::Breaker;
use scripts::Scripts;
use topology::KeyLayout;

pub use backlog::Backlog;
pub use publish::{BundleCheck, BundledSet, Outbound};
pub use topology::L2Conn;

use crate::config::RedisTarget;

/// Tag byte of a value written by this crate (the value follows).
pub const TAG_VALUE: u8 = 1;
/// Tag byte of a delete tombstone. A random token of [`TOMBSTONE_TOKEN_BYTES`] follows, so
/// that each delete's tombstone differs from every other: a load that read one tombstone may
/// replace exactly that one (see [`L2::fill`]), never a later delete's. Nodes that predate
/// the token wrote the tag byte alone; such a tombstone is never replaced by a fill.
pub const TAG_TOMBSTONE: u8 = 0;
/// Length of the random token after [`TAG_TOMBSTONE`].
pub const TOMBSTONE_TOKEN_BYTES: usize = 16;
/// Tag byte of a cached "not found" (negative caching; nothing follows). Nodes that predate
/// it read it as a miss, like anything they did not write.
pub const TAG_NEGATIVE: u8 = 2;
/// Tag byte of a value carrying tags (see `tags`): a two-byte header length, the header
/// `,a,b,` and the value follow. Nodes that predate it read it as a miss.
pub const TAG_TAGGED: u8 = 3;
/// A new delete tombstone: [`TAG_TOMBSTONE`] and a random token.
pub(crate) fn new_tombstone() -> Vec<u8> {
    let mut t = Vec::with_capacity(1 + TOMBSTONE_TOKEN_BYTES);
    t.push(TAG_TOMBSTONE);
    t.extend_from_slice(&rand::random::<[u8; TOMBSTONE_TOKEN_BYTES]>());
    t
}

/// A value as stored: [`TAG_VALUE`], then the value's bytes.
pub(crate) fn tagged_value(value: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(value.len() + 1);
    t.push(TAG_VALUE);
    t.extend_from_slice(value);
    t
}

/// A value write's script reply: `-1` means Redis refused it as past its deadline
/// ([`L2Error::Late`]), logged unless the deadline was the caller's own (`by_caller`).
fn not_late(reply: i64, by_caller: bool) -> Result<i64, L2Error> {
    if reply != -1 {
        return Ok(reply);
    }
    if !by_caller {
        // Only seen by the caller when Redis's clock is ahead of ours by more than the
        // allowance (a late delivery is seen by nobody: its caller timed out long ago).
        tracing::warn!(
            "redis refused a write as late: check clock skew between this node and redis"
        );
    }
    Err(L2Error::Late)
}

/// How long a delete keeps slow loaders that started before it from refilling a key in L2.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(10);
/// Keys unlinked per SCAN batch in glob invalidations.
pub const SCAN_BATCH: usize = 500;

/// How late (beyond the call timeout) a value write may reach Redis and still apply: zero.
/// The writer reports failure when the call times out, and a write that failed must not
/// land after that (it could overwrite a newer, acknowledged value and be served past the
/// staleness bound). The check runs on Redis's clock, so node and Redis clocks must agree
/// within a small fraction of the staleness bound (NTP); a Redis clock ahead only refuses
/// (fails) writes, never lets a late one through.
pub const LATE_WRITE_ALLOWANCE: Duration = Duration::ZERO;

/// L2 errors.
#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    /// No connection is installed.
    #[error("redis is not connected")]
    NotConnected,
    /// The breaker is open after recent failures; Redis was not called.
    #[error("redis circuit open (recent failures); not calling")]
    CircuitOpen,
    /// The call did not finish within the call timeout.
    #[error("redis call timed out after {0:?}")]
    Timeout(Duration),
    /// Redis (or the connection) reported an error.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// A value write reached Redis after its deadline and was refused.
    #[error("redis refused the write as late (clock skew between node and redis?)")]
    Late,
    /// The Redis target is misconfigured (bad URL, address, no channel).
    #[error("invalid redis configuration: {0}")]
    Config(String),
    /// Redis answered something this crate does not expect.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// The Redis keeps its data across a restart (RDB or AOF), or does not say whether it
    /// does; refused unless `allow_persistent_redis` is set (see
    /// [`topology::persistence`]).
    #[error("{0}")]
    Persistent(String),
    /// Sentinel: no majority of the sentinels has confirmed lately that the server this node
    /// talks to is the primary (see [`crate::coherence::primary`]); treated like a Redis
    /// that does not answer.
    #[error("the sentinels have not confirmed this redis as the primary lately")]
    Unproven,
    /// A pipelined batch of bus messages was not taken whole (the first failure): none of
    /// its messages counts as sent.
    #[error("redis did not take the whole batch: {0}")]
    Batch(String),
    /// `WAIT` returned fewer replicas than `l2_min_replicas`.
    #[error("write not acknowledged by {wanted} replica(s) in time (only {got})")]
    NotReplicated {
        /// Replicas asked for.
        wanted: u32,
        /// Replicas that acknowledged.
        got: i64,
    },
}

/// A value read from L2 with its remaining TTL and the category generation it was read under.
#[derive(Debug, Clone)]
pub struct L2Value {
    /// The value; `None` for a miss, a tombstone or a cached "not found".
    pub value: Option<Bytes>,
    /// Whether the key holds a cached "not found" ([`TAG_NEGATIVE`]).
    pub negative: bool,
    /// Remaining TTL of the key, when it has one.
    pub ttl: Option<Duration>,
    /// The category generation the read resolved.
    pub generation: i64,
    /// The tags the value carries (none for an untagged value or a miss).
    pub tags: Vec<String>,
    /// The key holds this delete tombstone (with its token): a load that started after the
    /// read may fill the key in its place ([`L2::fill`]'s `over`).
    pub tombstone: Option<Bytes>,
}

/// What a fill after a load is conditional on, read before the loader runs
/// ([`L2::fill_guard`]): the category generation, the category's glob-invalidation count and
/// the tombstone the key held. A fill lands only if all three still hold.
#[derive(Debug, Clone)]
pub struct FillGuard {
    /// The category generation the load's read resolved.
    pub generation: i64,
    /// How many glob invalidations the category had seen (`…:gen…:globs`).
    pub globs: i64,
    /// The delete tombstone the key held, which the fill may replace.
    pub over: Option<Bytes>,
}

/// The Redis L2 of one node.
pub struct L2 {
    ns: String,
    timeout: Duration,
    conn: RwLock<Option<L2Conn>>,
    /// The installed connection is a cluster: hash-tagged keys, SPUBLISH.
    cluster: AtomicBool,
    /// `l2_min_replicas`: replicas each authoritative write waits for.
    min_replicas: AtomicU32,
    /// Guards data calls (GET/SET/SCAN).
    breaker: Breaker,
    /// Guards control calls (PUBLISH of invalidations, heartbeats, lease pings), so slow data
    /// calls never stop invalidations, and the other way round.
    control: Breaker,
    /// Sentinel's primary proof (open for single Redis and Cluster).
    fence: fence::Fence,
    /// The Lua scripts (and the sources of the write scripts, for `EVAL` + `WAIT`).
    scripts: Scripts,
    /// Key prefixes per category and bucket (see [`KeyLayout`]).
    prefixes: topology::Prefixes,
    /// Latency of every call (`hc_l2_request_duration_seconds`).
    latency: prometheus_client::metrics::histogram::Histogram,
    /// Fast reads gathered into one pipeline (see `batch`).
    reads: batch::ReadBatch,
}

impl std::fmt::Debug for L2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2").field("ns", &self.ns).finish()
    }
}

impl L2 {
    /// A disconnected L2; [`L2::install`] provides the connection.
    pub fn new(namespace: &str, timeout: Duration) -> L2 {
        L2 {
            ns: namespace.to_string(),
            timeout,
            conn: RwLock::new(None),
            cluster: AtomicBool::new(false),
            min_replicas: AtomicU32::new(0),
            breaker: call::breaker(),
            control: call::breaker(),
            fence: fence::Fence::new(false),
            scripts: Scripts::new(),
            prefixes: topology::Prefixes::new(namespace),
            latency: crate::node_metrics::l2_histogram(),
            reads: batch::ReadBatch::default(),
        }
    }

    /// `l2_min_replicas`: authoritative writes wait for this many replicas (0: no wait).
    pub fn with_min_replicas(self, n: u32) -> L2 {
        self.min_replicas.store(n, Ordering::Relaxed);
        self
    }

    /// Sentinel: reads need, and writes wait for, a proof that the server is the primary
    /// (see [`crate::coherence::primary`]).
    pub fn with_primary_fence(mut self) -> L2 {
        self.fence = fence::Fence::new(true);
        self
    }

    /// Sentinel: a majority of the sentinels named the installed connection's server in a
    /// query sent at `sent`; L2 may be read until `until`.
    pub fn primary_proven(&self, sent: std::time::Instant, until: std::time::Instant) {
        self.fence.prove(sent, until);
    }

    /// Sentinel: nothing proves the installed connection's server is the primary any more.
    pub fn primary_lost(&self) {
        self.fence.revoke();
    }

    /// `host:port` of the installed connection's server when Sentinel named it.
    pub fn primary_addr(&self) -> Option<String> {
        let g = self.conn.read().ok()?;
        g.as_ref()?.primary_addr().map(str::to_string)
    }

    /// Connects the command connection of the configured topology (bounded by the timeout).
    pub async fn connect(target: &RedisTarget, timeout: Duration) -> Result<L2Conn, L2Error> {
        topology::connect(target, timeout).await
    }

    /// The start-up persistence check: `Err` (an [`L2Error::Persistent`]) when Redis answers
    /// and keeps its data across a restart (or does not answer `CONFIG GET`). A Redis that
    /// cannot be reached now passes: the bus checks it on every connection, before the lease.
    pub async fn refuse_persistent(target: &RedisTarget, timeout: Duration) -> Result<(), L2Error> {
        let Ok(mut conn) = topology::connect(target, timeout).await else {
            return Ok(());
        };
        let bound = timeout.max(Duration::from_millis(500));
        match tokio::time::timeout(bound, topology::persistence::check(&mut conn, target)).await {
            Ok(Err(e @ L2Error::Persistent(_))) => Err(e),
            _ => Ok(()),
        }
    }

    /// Installs (or removes) the live connection.
    pub fn install(&self, conn: Option<L2Conn>) {
        if let Some(c) = &conn {
            self.cluster.store(c.is_cluster(), Ordering::Relaxed);
        }
        if let Ok(mut g) = self.conn.write() {
            // Before the connection is visible: no read or write may use an older proof.
            self.fence.reset();
            *g = conn;
        }
        self.breaker.reset();
        self.control.reset();
    }

    /// Whether a connection is installed and the breaker lets calls through.
    pub fn available(&self) -> bool {
        self.conn.read().map(|g| g.is_some()).unwrap_or(false) && self.breaker.is_call_permitted()
    }

    /// Whether a connection is installed (whatever the breaker says).
    pub fn connected(&self) -> bool {
        self.conn.read().map(|g| g.is_some()).unwrap_or(false)
    }

    /// The call latency histogram (shared, not copied).
    pub fn latency_histogram(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.latency.clone()
    }

    fn layout(&self) -> KeyLayout {
        if self.cluster.load(Ordering::Relaxed) {
            KeyLayout::Spread
        } else {
            KeyLayout::Plain
        }
    }

    /// The bucket of `key` in the installed layout (always 0 outside a cluster).
    pub fn bucket(&self, key: &str) -> usize {
        self.layout().bucket(key)
    }

    /// Buckets per category in the installed layout (1 outside a cluster).
    fn buckets(&self) -> usize {
        self.layout().buckets()
    }

    fn gen_key(&self, category: &str, bucket: usize) -> String {
        self.prefixes.gen_key(self.layout(), category, bucket)
    }

    fn prefix(&self, category: &str, bucket: usize) -> String {
        self.prefixes.prefix(self.layout(), category, bucket)
    }

    /// The generation key and data key prefix of `key`'s bucket.
    fn key_names(&self, category: &str, key: &str) -> (String, String) {
        let layout = self.layout();
        self.prefixes.names(layout, category, layout.bucket(key))
    }

    /// The counter of a bucket's glob invalidations: the generation key with `:globs`
    /// appended (same slot in a cluster; category names hold no `:`, so no clash).
    fn globs_key(&self, category: &str, bucket: usize) -> String {
        format!("{}:globs", self.gen_key(category, bucket))
    }

    /// Sentinel: `r`, once a primary proof sent after the write returned confirmed the
    /// server it went to (ticket taken before the write); [`L2Error::Unproven`] if none came
    /// within the call bound. At once otherwise.
    async fn confirmed<T>(
        &self,
        ticket: fence::Ticket,
        r: Result<T, L2Error>,
    ) -> Result<T, L2Error> {
        let v = r?;
        let bound = self.timeout.max(Duration::from_millis(500));
        self.fence.confirm(ticket, bound).await?;
        Ok(v)
    }

    /// The deadline Redis enforces on a value write sent now, unix ms: the caller's when
    /// earlier than the call bound (and whether it is the caller's).
    fn deadline_ms(&self, not_after: Option<std::time::SystemTime>) -> (u64, bool) {
        let own = std::time::SystemTime::now() + self.timeout + LATE_WRITE_ALLOWANCE;
        let by_caller = not_after.is_some_and(|d| d < own);
        let deadline = not_after.map_or(own, |d| d.min(own));
        let ms = deadline
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        (ms, by_caller)
    }

    fn wait_for(&self) -> u32 {
        self.min_replicas.load(Ordering::Relaxed)
    }
}

//! The optional shared L2: Redis.
//!
//! Keys are `{ns}:{category}:{generation}:{key}`. The per-category generation lives in
//! `{ns}:gen:{category}`; `invalidate("*", category)` is one `INCR` instead of a keyspace
//! scan (old keys become unreachable and expire by their TTL). Every read and write is one
//! Lua script, so the generation lookup and the data access are atomic and take one round
//! trip.
//!
//! Values carry a one-byte tag: [`TAG_VALUE`] or [`TAG_TOMBSTONE`]. A delete writes a short
//! tombstone instead of `DEL`, and fills from loaders are conditional (`NX` and "generation
//! unchanged since the load started"), so a slow loader on one node cannot put an old value
//! back into L2 after another node changed or deleted it.
//!
//! Every call is bounded by `redis_timeout`, and a circuit breaker (failsafe) stops calling a
//! Redis that keeps failing, so misses answer fast during an outage instead of hanging.
//!
//! The topology (one Redis, Sentinel, Cluster) is [`topology`]'s business; in a cluster the
//! keys of a category carry the hash tag `{ns:category}` ([`topology::KeyLayout`]).
//!
//! With `l2_min_replicas = n > 0`, every authoritative write (set, delete tombstone,
//! generation bump, glob tombstones) is followed by `WAIT n` on the same connection, in the
//! same pipeline, and reported as failed ([`L2Error::NotReplicated`]) unless `n` replicas
//! acknowledged it: an acknowledged write is then on the primary and on `n` replicas.
//! Conditional fills after a load are not waited for (losing one costs a miss, not
//! freshness).

pub mod topology;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use failsafe::failure_policy::ConsecutiveFailures;
use failsafe::StateMachine;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, Script};

use topology::KeyLayout;
pub use topology::L2Conn;

use crate::config::RedisTarget;
use crate::pattern::{redis_escape, Glob, Pattern};

pub const TAG_VALUE: u8 = 1;
pub const TAG_TOMBSTONE: u8 = 0;
/// How long a delete keeps slow loaders from refilling a key in L2.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(10);
/// Keys unlinked per SCAN batch in glob invalidations.
pub const SCAN_BATCH: usize = 500;

/// L2 errors.
#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    #[error("redis is not connected")]
    NotConnected,
    #[error("redis circuit open (recent failures); not calling")]
    CircuitOpen,
    #[error("redis call timed out after {0:?}")]
    Timeout(Duration),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis refused the write as late (clock skew between node and redis?)")]
    Late,
    #[error("invalid redis configuration: {0}")]
    Config(String),
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    #[error("write not acknowledged by {wanted} replica(s) in time (only {got})")]
    NotReplicated { wanted: u32, got: i64 },
}

/// A value read from L2 with its remaining TTL and the category generation it was read under.
#[derive(Debug, Clone)]
pub struct L2Value {
    pub value: Option<Bytes>,
    pub ttl: Option<Duration>,
    pub generation: i64,
}

/// Open-circuit periods: 50 ms doubling up to 400 ms, so a recovered Redis is used again
/// well within a second. (failsafe's own exponential backoff only has whole-second steps.)
type OpenPeriods = std::iter::Successors<Duration, fn(&Duration) -> Option<Duration>>;
type Breaker = StateMachine<ConsecutiveFailures<OpenPeriods>, ()>;

fn open_periods() -> OpenPeriods {
    fn next(d: &Duration) -> Option<Duration> {
        Some((*d * 2).min(Duration::from_millis(400)))
    }
    std::iter::successors(
        Some(Duration::from_millis(50)),
        next as fn(&Duration) -> Option<Duration>,
    )
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
    get_script: Script,
    set_script: Script,
    fill_script: Script,
    tomb_script: Script,
    /// Sources of the write scripts, for `EVAL` + `WAIT` pipelines.
    set_src: String,
    tomb_src: String,
    /// Latency of every call (`hc_l2_request_duration_seconds`).
    latency: prometheus_client::metrics::histogram::Histogram,
}

impl std::fmt::Debug for L2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2").field("ns", &self.ns).finish()
    }
}

/// Builds the redis crate's connection info of a single-server target (`Url`, `Parts`).
pub fn connection_info(target: &RedisTarget) -> Result<ConnectionInfo, L2Error> {
    match target {
        RedisTarget::Url { url, password } => {
            let mut info = url
                .as_str()
                .into_connection_info()
                .map_err(|e| L2Error::Config(format!("REDIS_URL: {e}")))?;
            if info.redis.password.is_none() {
                info.redis.password = password.clone();
            }
            Ok(info)
        }
        RedisTarget::Parts {
            host,
            port,
            password,
            db,
            tls,
        } => Ok(ConnectionInfo {
            addr: if *tls {
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            },
            redis: RedisConnectionInfo {
                db: *db,
                password: password.clone(),
                ..Default::default()
            },
        }),
        RedisTarget::Sentinel { .. } | RedisTarget::Cluster { .. } => Err(L2Error::Config(
            "sentinel and cluster targets have no single address".into(),
        )),
    }
}

const GEN_OF: &str = "local g = redis.call('GET', KEYS[1]) or '0' \
                      local k = ARGV[1] .. ':' .. g .. ':' .. ARGV[2] ";

/// Value writes carry a deadline (unix ms, last argument) checked against Redis's own clock: a
/// write whose client gave up (timeout, partition) but whose bytes reach Redis later — when
/// the network heals, TCP delivers what it had queued — must not overwrite newer values.
const NOT_LATE: &str = "local t = redis.call('TIME') \
                        if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
                           > tonumber(ARGV[#ARGV]) then return -1 end ";

/// How late (beyond the call timeout) a value write may reach Redis and still apply: zero.
/// The writer reports failure when the call times out, and a write that failed must not
/// land after that (it could overwrite a newer, acknowledged value and be served past the
/// staleness bound). The check runs on Redis's clock, so node and Redis clocks must agree
/// within a small fraction of the staleness bound (NTP); a Redis clock ahead only refuses
/// (fails) writes, never lets a late one through.
pub const LATE_WRITE_ALLOWANCE: Duration = Duration::ZERO;

impl L2 {
    /// A disconnected L2; [`L2::install`] provides the connection.
    pub fn new(namespace: &str, timeout: Duration) -> L2 {
        let policy = failsafe::failure_policy::consecutive_failures(3, open_periods());
        let set_src =
            format!("{NOT_LATE} {GEN_OF} redis.call('SET', k, ARGV[3], 'PX', ARGV[4]) return 1");
        let tomb_src = format!("{GEN_OF} redis.call('SET', k, ARGV[3], 'PX', ARGV[4]) return 1");
        L2 {
            ns: namespace.to_string(),
            timeout,
            conn: RwLock::new(None),
            cluster: AtomicBool::new(false),
            min_replicas: AtomicU32::new(0),
            breaker: failsafe::Config::new().failure_policy(policy).build(),
            control: failsafe::Config::new()
                .failure_policy(failsafe::failure_policy::consecutive_failures(
                    3,
                    open_periods(),
                ))
                .build(),
            get_script: Script::new(&format!(
                "{GEN_OF} local v = redis.call('GET', k) \
                 if not v then return {{g}} end \
                 return {{g, v, redis.call('PTTL', k)}}"
            )),
            set_script: Script::new(&set_src),
            fill_script: Script::new(&format!(
                "{NOT_LATE} {GEN_OF} if g ~= ARGV[5] then return 0 end \
                 if redis.call('SET', k, ARGV[3], 'PX', ARGV[4], 'NX') then return 1 end \
                 return 0"
            )),
            tomb_script: Script::new(&tomb_src),
            set_src,
            tomb_src,
            latency: crate::node_metrics::l2_histogram(),
        }
    }

    /// `l2_min_replicas`: authoritative writes wait for this many replicas (0: no wait).
    pub fn with_min_replicas(self, n: u32) -> L2 {
        self.min_replicas.store(n, Ordering::Relaxed);
        self
    }

    /// Connects the command connection of the configured topology (bounded by the timeout).
    pub async fn connect(target: &RedisTarget, timeout: Duration) -> Result<L2Conn, L2Error> {
        topology::connect(target, timeout).await
    }

    /// Installs (or removes) the live connection.
    pub fn install(&self, conn: Option<L2Conn>) {
        if let Some(c) = &conn {
            self.cluster.store(c.is_cluster(), Ordering::Relaxed);
        }
        if let Ok(mut g) = self.conn.write() {
            *g = conn;
        }
        self.breaker.reset();
        self.control.reset();
    }

    /// Whether a connection is installed and the breaker lets calls through.
    pub fn available(&self) -> bool {
        self.conn.read().map(|g| g.is_some()).unwrap_or(false) && self.breaker.is_call_permitted()
    }

    pub fn connected(&self) -> bool {
        self.conn.read().map(|g| g.is_some()).unwrap_or(false)
    }

    /// The call latency histogram (shared, not copied).
    pub fn latency_histogram(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.latency.clone()
    }

    fn layout(&self) -> KeyLayout {
        if self.cluster.load(Ordering::Relaxed) {
            KeyLayout::HashTagged
        } else {
            KeyLayout::Plain
        }
    }

    fn gen_key(&self, category: &str) -> String {
        self.layout().gen_key(&self.ns, category)
    }

    fn prefix(&self, category: &str) -> String {
        self.layout().prefix(&self.ns, category)
    }

    fn wait_for(&self) -> u32 {
        self.min_replicas.load(Ordering::Relaxed)
    }

    /// Runs `pipe` (whose keys share one slot) followed by `WAIT n` on the same connection;
    /// returns the replies of `pipe`'s commands, or [`L2Error::NotReplicated`].
    async fn with_wait(&self, mut pipe: redis::Pipeline) -> Result<Vec<redis::Value>, L2Error> {
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

    async fn call<T, F, Fut>(&self, f: F) -> Result<T, L2Error>
    where
        F: FnOnce(L2Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, redis::RedisError>>,
    {
        self.call_with(&self.breaker, f).await
    }

    async fn call_with<T, F, Fut>(&self, breaker: &Breaker, f: F) -> Result<T, L2Error>
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

    /// Reads a key. Tombstones read as `None`.
    pub async fn get(&self, category: &str, key: &str) -> Result<L2Value, L2Error> {
        let (gk, prefix) = (self.gen_key(category), self.prefix(category));
        let script = &self.get_script;
        let reply: Vec<redis::Value> = self
            .call(|mut c| async move {
                script
                    .key(gk)
                    .arg(prefix)
                    .arg(key)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        parse_get(reply)
    }

    /// Runs a write script (`SET … PX`, optionally conditional on the generation) on a tagged
    /// value; returns the script's reply.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        script: &Script,
        waited_src: Option<&str>,
        category: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
        generation: Option<i64>,
        not_after: Option<std::time::SystemTime>,
    ) -> Result<i64, L2Error> {
        let mut payload = Vec::with_capacity(value.len() + 1);
        payload.push(TAG_VALUE);
        payload.extend_from_slice(value);
        let (gk, prefix) = (self.gen_key(category), self.prefix(category));
        let ms = ttl.as_millis().max(1) as u64;
        let own = std::time::SystemTime::now() + self.timeout + LATE_WRITE_ALLOWANCE;
        // The caller's deadline, when earlier, is the one Redis enforces.
        let by_caller = not_after.is_some_and(|d| d < own);
        let deadline = not_after.map_or(own, |d| d.min(own));
        let deadline_ms = deadline
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let reply: i64 = match waited_src {
            Some(src) if self.wait_for() > 0 => {
                let mut pipe = redis::pipe();
                pipe.cmd("EVAL")
                    .arg(src)
                    .arg(1)
                    .arg(gk)
                    .arg(prefix)
                    .arg(key)
                    .arg(payload)
                    .arg(ms);
                if let Some(g) = generation {
                    pipe.arg(g.to_string());
                }
                pipe.arg(deadline_ms);
                let replies = self.with_wait(pipe).await?;
                match replies.first() {
                    Some(v) => redis::from_redis_value(v)?,
                    None => return Err(L2Error::Protocol("empty pipeline reply".into())),
                }
            }
            _ => {
                self.call(|mut c| async move {
                    let mut inv = script.key(gk);
                    inv.arg(prefix).arg(key).arg(payload).arg(ms);
                    if let Some(g) = generation {
                        inv.arg(g.to_string());
                    }
                    inv.arg(deadline_ms).invoke_async(&mut c).await
                })
                .await?
            }
        };
        if reply == -1 {
            if !by_caller {
                // Only seen by the caller when Redis's clock is ahead of ours by more than
                // the allowance (a late delivery is seen by nobody: its caller timed out
                // long ago).
                tracing::warn!(
                    "redis refused a write as late: check clock skew between this node and redis"
                );
            }
            return Err(L2Error::Late);
        }
        Ok(reply)
    }

    /// Authoritative write (a user's `set`). With `not_after`, Redis applies it only up to
    /// that wall-clock time (its own clock), else [`L2Error::Late`]: a write whose caller
    /// gave up never lands afterwards.
    pub async fn set(
        &self,
        category: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
        not_after: Option<std::time::SystemTime>,
    ) -> Result<(), L2Error> {
        let src = Some(self.set_src.as_str());
        self.write(
            &self.set_script,
            src,
            category,
            key,
            value,
            ttl,
            None,
            not_after,
        )
        .await
        .map(|_| ())
    }

    /// Conditional fill after a load: only if the key is absent (no newer value, no
    /// tombstone) and the category generation is still `generation`. Returns whether written.
    pub async fn fill(
        &self,
        category: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
        generation: i64,
    ) -> Result<bool, L2Error> {
        self.write(
            &self.fill_script,
            None,
            category,
            key,
            value,
            ttl,
            Some(generation),
            None,
        )
        .await
        .map(|n| n == 1)
    }

    /// Deletes a key by writing a short tombstone.
    pub async fn delete(&self, category: &str, key: &str) -> Result<(), L2Error> {
        let (gk, prefix) = (self.gen_key(category), self.prefix(category));
        let script = &self.tomb_script;
        let ms = TOMBSTONE_TTL.as_millis() as u64;
        if self.wait_for() > 0 {
            let mut pipe = redis::pipe();
            pipe.cmd("EVAL")
                .arg(&self.tomb_src)
                .arg(1)
                .arg(gk)
                .arg(prefix)
                .arg(key)
                .arg(vec![TAG_TOMBSTONE])
                .arg(ms)
                .ignore();
            self.with_wait(pipe).await?;
            return Ok(());
        }
        let _: i64 = self
            .call(|mut c| async move {
                script
                    .key(gk)
                    .arg(prefix)
                    .arg(key)
                    .arg(vec![TAG_TOMBSTONE])
                    .arg(ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    /// `invalidate("*", category)`: bumps the generation; no keyspace scan.
    pub async fn bump_generation(&self, category: &str) -> Result<i64, L2Error> {
        let gk = self.gen_key(category);
        if self.wait_for() > 0 {
            let mut pipe = redis::pipe();
            pipe.cmd("INCR").arg(gk);
            let replies = self.with_wait(pipe).await?;
            return match replies.first() {
                Some(v) => Ok(redis::from_redis_value(v)?),
                None => Err(L2Error::Protocol("empty pipeline reply".into())),
            };
        }
        self.call(
            |mut c| async move { redis::cmd("INCR").arg(gk).query_async::<i64>(&mut c).await },
        )
        .await
    }

    /// Glob invalidation: SCAN the category's current generation in bounded batches with
    /// the glob's Redis prefilter (a superset, see [`crate::pattern`]), decide each scanned
    /// key with the L1 matcher, and replace the matches by tombstones. Returns the number of
    /// keys invalidated.
    pub async fn invalidate_glob(&self, category: &str, glob: &Glob) -> Result<u64, L2Error> {
        let gk = self.gen_key(category);
        // `INCRBY gen 0`, not `GET`: a write, so a replica (a demoted primary mid-failover)
        // refuses it instead of acknowledging a glob it found nothing for.
        let generation: i64 = self
            .call(|mut c| async move {
                redis::cmd("INCRBY")
                    .arg(gk)
                    .arg(0)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await?;
        let key_prefix = format!("{}:{generation}:", self.prefix(category));
        let match_pattern = format!("{}{}", redis_escape(&key_prefix), glob.redis_match());
        // In a cluster, every primary is scanned (a category's keys share one slot, but a
        // slot being migrated is on two nodes); one server otherwise.
        let nodes: Vec<Option<(String, u16)>> = if self.cluster.load(Ordering::Relaxed) {
            self.call(|mut c| async move { c.primaries().await })
                .await?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        let mut total = 0u64;
        for node in nodes {
            total += self
                .scan_node(node, &match_pattern, &key_prefix, glob)
                .await?;
        }
        if self.wait_for() > 0 {
            // Even a glob that matched nothing is acknowledged only once replicas have this
            // primary's state: a primary without replicas (one about to be superseded in a
            // failover) may simply lack keys the surviving one has.
            let mut pipe = redis::pipe();
            pipe.cmd("INCRBY")
                .arg(self.gen_key(category))
                .arg(0)
                .ignore();
            self.with_wait(pipe).await?;
        }
        Ok(total)
    }

    /// One node's part of [`L2::invalidate_glob`].
    async fn scan_node(
        &self,
        node: Option<(String, u16)>,
        match_pattern: &str,
        key_prefix: &str,
        glob: &Glob,
    ) -> Result<u64, L2Error> {
        let mut cursor: u64 = 0;
        let mut total = 0u64;
        // Bounded: at most this many SCAN round trips per invalidation.
        for _ in 0..100_000 {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(match_pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH);
            let node = node.clone();
            let reply: redis::Value = self
                .call(|mut c| async move { c.on_node(node.as_ref(), &scan).await })
                .await?;
            let (next, scanned): (u64, Vec<Vec<u8>>) = redis::from_redis_value(&reply)?;
            // Keys that are not UTF-8 after our prefix were not written by us.
            let keys: Vec<Vec<u8>> = scanned
                .into_iter()
                .filter(|k| {
                    k.strip_prefix(key_prefix.as_bytes())
                        .and_then(|rest| std::str::from_utf8(rest).ok())
                        .is_some_and(|key| glob.is_match(key))
                })
                .collect();
            if !keys.is_empty() {
                total += keys.len() as u64;
                let ms = TOMBSTONE_TTL.as_millis() as u64;
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("SET")
                        .arg(k)
                        .arg(vec![TAG_TOMBSTONE])
                        .arg("PX")
                        .arg(ms)
                        .ignore();
                }
                if self.wait_for() > 0 {
                    self.with_wait(pipe).await?;
                } else {
                    self.call(|mut c| async move { pipe.query_async::<()>(&mut c).await })
                        .await?;
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// Publishes several payloads, in order, in one pipelined round trip (the bus coalesces
    /// the invalidations queued while the previous batch was in flight); returns how many
    /// subscribers received each. One result for the batch: if Redis did not take all of
    /// them, none counts as sent, so no change is acknowledged on an unsent invalidation.
    /// In a Redis Cluster the commands are `SPUBLISH` (every bus channel shares one hash
    /// tag, so the pipeline goes to one shard; see [`topology`]).
    pub async fn publish_batch(&self, messages: &[(&str, &[u8])]) -> Result<Vec<u64>, L2Error> {
        let owned: Vec<(String, Vec<u8>)> = messages
            .iter()
            .map(|(channel, payload)| (channel.to_string(), payload.to_vec()))
            .collect();
        let n = messages.len();
        let counts: Vec<i64> = self
            .call_with(&self.control, |mut c| async move {
                let command = topology::publish_command(&c);
                let mut pipe = redis::pipe();
                for (channel, payload) in &owned {
                    pipe.cmd(command).arg(channel).arg(payload);
                }
                pipe.query_async::<Vec<i64>>(&mut c).await
            })
            .await?;
        if counts.len() != n {
            return Err(L2Error::Protocol(format!(
                "{} replies to {n} pipelined PUBLISH",
                counts.len()
            )));
        }
        Ok(counts.into_iter().map(|c| c.max(0) as u64).collect())
    }
}

fn parse_get(reply: Vec<redis::Value>) -> Result<L2Value, L2Error> {
    let int = |v: &redis::Value| -> Result<i64, L2Error> {
        match v {
            redis::Value::Int(i) => Ok(*i),
            redis::Value::BulkString(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| L2Error::Protocol("non-numeric generation".into())),
            other => Err(L2Error::Protocol(format!("{other:?}"))),
        }
    };
    let generation = match reply.first() {
        Some(v) => int(v)?,
        None => return Err(L2Error::Protocol("empty reply".into())),
    };
    let (value, ttl) = match (reply.get(1), reply.get(2)) {
        (Some(redis::Value::BulkString(b)), Some(t)) => {
            let pttl = int(t)?;
            let ttl = (pttl > 0).then(|| Duration::from_millis(pttl as u64));
            match b.split_first() {
                Some((&TAG_VALUE, rest)) => (Some(Bytes::copy_from_slice(rest)), ttl),
                // Tombstones and anything we did not write read as a miss.
                _ => (None, None),
            }
        }
        _ => (None, None),
    };
    Ok(L2Value {
        value,
        ttl,
        generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_get_handles_values_tombstones_and_garbage() {
        use redis::Value::*;
        let v = parse_get(vec![
            BulkString(b"3".to_vec()),
            BulkString(vec![TAG_VALUE, b'x']),
            Int(5000),
        ])
        .unwrap();
        assert_eq!(v.generation, 3);
        assert_eq!(v.value.as_deref(), Some(&b"x"[..]));
        assert_eq!(v.ttl, Some(Duration::from_millis(5000)));
        let t = parse_get(vec![Int(0), BulkString(vec![TAG_TOMBSTONE]), Int(10)]).unwrap();
        assert!(t.value.is_none());
        let e = parse_get(vec![Int(0), BulkString(vec![]), Int(10)]).unwrap();
        assert!(e.value.is_none());
        assert!(parse_get(vec![]).is_err());
        assert!(parse_get(vec![Nil]).is_err());
    }

    #[test]
    fn parts_build_tls_and_password() {
        let info = connection_info(&RedisTarget::Parts {
            host: "h".into(),
            port: 1,
            password: Some("p".into()),
            db: 3,
            tls: true,
        })
        .unwrap();
        assert!(matches!(info.addr, ConnectionAddr::TcpTls { .. }));
        assert_eq!(info.redis.db, 3);
        assert_eq!(info.redis.password.as_deref(), Some("p"));
        let info = connection_info(&RedisTarget::Url {
            url: "redis://127.0.0.1:9/1".into(),
            password: Some("q".into()),
        })
        .unwrap();
        assert_eq!(info.redis.password.as_deref(), Some("q"));
    }
}

impl L2 {
    /// Applies an invalidation (`*`, exact key or glob) to one category's L2.
    pub async fn invalidate_pattern(
        &self,
        category: &str,
        pattern: &Pattern,
    ) -> Result<(), L2Error> {
        match pattern {
            Pattern::All => self.bump_generation(category).await.map(|_| ()),
            Pattern::Exact(k) => self.delete(category, k).await,
            Pattern::Glob(g) => self.invalidate_glob(category, g).await.map(|_| ()),
        }
    }
}

/// Changes whose effect on L2 is unknown or missing: a write whose L2 call failed or timed
/// out (it may have landed before its deadline), or, with the `serve_stale_on_outage`
/// opt-in, a change accepted locally while Redis was unreachable. Replayed as invalidations
/// into L2 (and on the bus) as soon as Redis is reachable again.
///
/// Bounded, failing closed: past [`Backlog::MAX`] entries or [`Backlog::MAX_BYTES`] bytes of
/// keys, every category with pending entries is collapsed to "the whole category" (its L2
/// generation is bumped on replay, which invalidates more than needed but forgets nothing).
/// The backlog then holds at most one marker per category.
#[derive(Debug, Default)]
pub struct Backlog {
    entries: Vec<(String, crate::wire::Target)>,
    bytes: usize,
    whole: std::collections::BTreeSet<String>,
    collapses: u64,
    /// Changes handed to a replay ([`Backlog::take`]) and not yet confirmed in L2
    /// ([`Backlog::replay_done`]): the backlog is not empty while a replay runs, so L2 is
    /// not read before the replayed changes are in it.
    in_flight: Vec<(String, crate::wire::Target)>,
}

fn target_len(t: &crate::wire::Target) -> usize {
    match t {
        crate::wire::Target::Key(k) | crate::wire::Target::Glob(k) => k.len(),
        crate::wire::Target::Everything => 0,
    }
}

impl Backlog {
    pub const MAX: usize = 10_000;
    pub const MAX_BYTES: usize = 4 * 1024 * 1024;

    /// Records a change of `target` in `category` that did not (surely) reach L2.
    pub fn record(&mut self, category: &str, target: &crate::wire::Target) {
        if self.whole.contains(category) {
            return;
        }
        if *target == crate::wire::Target::Everything {
            self.whole.insert(category.to_string());
            self.entries.retain(|(c, _)| c != category);
            self.bytes = self
                .entries
                .iter()
                .map(|(c, t)| c.len() + target_len(t))
                .sum();
            return;
        }
        let size = category.len() + target_len(target);
        if self.entries.len() >= Self::MAX || self.bytes + size > Self::MAX_BYTES {
            self.collapse();
            self.whole.insert(category.to_string());
            return;
        }
        self.bytes += size;
        self.entries.push((category.to_string(), target.clone()));
    }

    /// Overflow: every pending key becomes its whole category.
    fn collapse(&mut self) {
        self.collapses += 1;
        for (c, _) in std::mem::take(&mut self.entries) {
            self.whole.insert(c);
        }
        self.bytes = 0;
        tracing::warn!(
            categories = self.whole.len(),
            "L2 backlog full: pending keys collapsed to whole-category invalidations"
        );
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.whole.is_empty() && self.in_flight.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len() + self.whole.len() + self.in_flight.len()
    }

    /// Whether a pending or in-flight change may cover `key` of `category`: L2 may still
    /// hold a value for it that a change removed, so L2 must not be read for it. Keys no
    /// pending change touches read L2 as usual while the backlog drains (a Redis that
    /// refuses writes for a while, e.g. `WAIT` short of replicas after a failover, then
    /// holds back only the keys written meanwhile, not every read of the node). A glob
    /// that does not parse covers everything (fails closed).
    pub fn touches(&self, category: &str, key: &str) -> bool {
        if self.whole.contains(category) {
            return true;
        }
        self.entries
            .iter()
            .chain(self.in_flight.iter())
            .filter(|(c, _)| c == category)
            .any(|(_, t)| match t {
                crate::wire::Target::Key(k) => k == key,
                crate::wire::Target::Everything => true,
                // Only globs need parsing (no allocation per pending key).
                glob => glob.to_pattern().map_or(true, |p| p.matches(key)),
            })
    }

    /// The replay of what [`Backlog::take`] returned is over (applied, or what was not
    /// applied was recorded again).
    pub fn replay_done(&mut self) {
        self.in_flight.clear();
    }

    /// How many times the backlog overflowed and collapsed to whole categories.
    pub fn collapses(&self) -> u64 {
        self.collapses
    }

    /// Everything recorded; whole categories come as [`crate::wire::Target::Everything`].
    pub fn take(&mut self) -> Vec<(String, crate::wire::Target)> {
        let mut out: Vec<(String, crate::wire::Target)> = std::mem::take(&mut self.whole)
            .into_iter()
            .map(|c| (c, crate::wire::Target::Everything))
            .collect();
        out.extend(std::mem::take(&mut self.entries));
        self.bytes = 0;
        self.in_flight.clone_from(&out);
        out
    }
}

#[cfg(test)]
mod backlog_tests {
    use super::Backlog;
    use crate::wire::Target;

    #[test]
    fn touches_only_the_keys_a_pending_change_covers() {
        let mut b = Backlog::default();
        b.record("roles", &Target::Key("r1".into()));
        b.record("menus", &Target::Glob("m:[ab]*".into()));
        b.record("general", &Target::Glob("[".into()));
        assert!(b.touches("roles", "r1"));
        assert!(!b.touches("roles", "r2"), "another key of the category");
        assert!(
            !b.touches("menus", "r1"),
            "the same key in another category"
        );
        assert!(b.touches("menus", "m:b1"));
        assert!(!b.touches("menus", "m:c1"));
        assert!(
            b.touches("general", "anything"),
            "a glob that does not parse"
        );
        // In flight (taken by a replay, not confirmed): still touched.
        let _ = b.take();
        assert!(b.touches("roles", "r1"));
        assert!(!b.touches("roles", "r2"));
        b.replay_done();
        assert!(!b.touches("roles", "r1"));
        b.record("roles", &Target::Everything);
        assert!(
            b.touches("roles", "r2"),
            "a whole category covers every key"
        );
        assert!(!b.touches("menus", "m:a"));
    }

    #[test]
    fn records_keys_and_degrades_to_whole_categories() {
        let mut b = Backlog::default();
        assert!(b.is_empty());
        b.record("roles", &Target::Key("k1".into()));
        b.record("menus", &Target::Glob("m:*".into()));
        b.record("menus", &Target::Everything);
        b.record("menus", &Target::Key("m2".into()));
        let mut got = b.take();
        assert!(
            !b.is_empty(),
            "a replay in flight keeps the backlog non-empty"
        );
        b.replay_done();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("menus".to_string(), Target::Everything),
                ("roles".to_string(), Target::Key("k1".into()))
            ]
        );
        assert!(b.is_empty());
        for i in 0..Backlog::MAX + 5 {
            b.record("general", &Target::Key(format!("k{i}")));
        }
        assert!(b.len() <= Backlog::MAX + 1);
        assert!(b
            .take()
            .contains(&("general".to_string(), Target::Everything)));
    }

    #[test]
    fn overflow_collapses_every_pending_category_and_forgets_none() {
        let mut b = Backlog::default();
        b.record("roles", &Target::Key("r1".into()));
        b.record("menus", &Target::Key("m1".into()));
        // Spread over many categories: the bound holds whoever overflows it.
        for i in 0..3 * Backlog::MAX {
            b.record(&format!("c{}", i % 7), &Target::Key(format!("k{i}")));
            assert!(b.len() <= Backlog::MAX + 9, "len {}", b.len());
        }
        assert!(b.collapses() >= 1);
        let got = b.take();
        for c in ["roles", "menus", "c0", "c1", "c2", "c3", "c4", "c5", "c6"] {
            assert!(
                got.contains(&(c.to_string(), Target::Everything))
                    || got.iter().any(|(gc, _)| gc == c),
                "{c} was dropped"
            );
        }
        assert!(got.contains(&("roles".to_string(), Target::Everything)));
        // The byte bound: few huge keys collapse too.
        let mut b = Backlog::default();
        let huge = "x".repeat(1024 * 1024);
        for _ in 0..5 {
            b.record("general", &Target::Key(huge.clone()));
        }
        assert_eq!(b.take(), vec![("general".to_string(), Target::Everything)]);
    }
}

//! The Lua scripts of L2 and their loading. Every read and write is one script, so the
//! category generation lookup and the data access are atomic and take one round trip.
//!
//! The script text is part of the wire: Redis caches scripts by the SHA1 of their text
//! (`EVALSHA`), and nodes of different versions share one Redis. The test below pins the
//! hashes, so an edit of the text shows up as a failing test, not as a silent change.

use redis::Script;

const GEN_OF: &str = "local g = redis.call('GET', KEYS[1]) or '0' \
                      local k = ARGV[1] .. ':' .. g .. ':' .. ARGV[2] ";

/// Value writes carry a deadline (unix ms, last argument) checked against Redis's own clock: a
/// write whose client gave up (timeout, partition) but whose bytes reach Redis later — when
/// the network heals, TCP delivers what it had queued — must not overwrite newer values.
const NOT_LATE: &str = "local t = redis.call('TIME') \
                        if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
                           > tonumber(ARGV[#ARGV]) then return -1 end ";

/// Warm-up's hot-key ranking. KEYS: the sorted set, the decay marker. ARGV: the decay period
/// (ms), how many members to keep, the set's lifetime (ms), then pairs (hits, key). When the
/// marker has expired (at most once per period, whichever node comes first), every score is
/// halved first and members below 1 dropped; then the hits are added, the lowest ranks
/// beyond the limit dropped and the lifetime renewed. Returns the set's size.
const HOT_RECORD: &str = "local z = KEYS[1] \
    if redis.call('SET', KEYS[2], '1', 'PX', ARGV[1], 'NX') then \
      local all = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES') \
      for i = 1, #all, 2 do \
        local s = tonumber(all[i + 1]) / 2 \
        if s < 1 then redis.call('ZREM', z, all[i]) else redis.call('ZADD', z, s, all[i]) end \
      end \
    end \
    for i = 4, #ARGV, 2 do redis.call('ZINCRBY', z, ARGV[i], ARGV[i + 1]) end \
    redis.call('ZREMRANGEBYRANK', z, 0, -(tonumber(ARGV[2]) + 1)) \
    redis.call('PEXPIRE', z, ARGV[3]) \
    return redis.call('ZCARD', z)";
/// The body of `set_tagged` (after `NOT_LATE` and `GEN_OF`): the write, then one set per tag
/// of the value's header (`[3][len: 2 bytes][,a,b,][value]`), whose TTL is raised to the
/// value's when lower.
const SET_TAGGED: &str = "redis.call('SET', k, ARGV[3], 'PX', ARGV[4]) \
    local p = ARGV[3] local ms = tonumber(ARGV[4]) \
    local h = string.sub(p, 4, 3 + string.byte(p, 2) * 256 + string.byte(p, 3)) \
    for t in string.gmatch(h, '[^,]+') do \
      local tk = ARGV[1] .. ':tag:' .. t \
      redis.call('SADD', tk, ARGV[2]) \
      if redis.call('PTTL', tk) < ms then redis.call('PEXPIRE', tk, ms) end \
    end return 1";

/// Tag invalidation of one category (KEYS[1] the generation; ARGV the prefix, the tag, the
/// tombstone and its TTL): every key of the tag's set whose current value still carries
/// the tag becomes a tombstone; the set goes (`DEL`: a write, so a replica refuses it).
const INV_TAG: &str = "local g = redis.call('GET', KEYS[1]) or '0' \
    local tk = ARGV[1] .. ':tag:' .. ARGV[2] \
    local needle = ',' .. ARGV[2] .. ',' local n = 0 \
    for _, key in ipairs(redis.call('SMEMBERS', tk)) do \
      local k = ARGV[1] .. ':' .. g .. ':' .. key \
      local v = redis.call('GET', k) \
      if v and string.len(v) >= 3 and string.byte(v, 1) == 3 then \
        local h = string.sub(v, 4, 3 + string.byte(v, 2) * 256 + string.byte(v, 3)) \
        if string.find(h, needle, 1, true) then \
          redis.call('SET', k, ARGV[3], 'PX', ARGV[4]) n = n + 1 \
        end \
      end \
    end redis.call('DEL', tk) return n";

/// The body of `fill` (after `NOT_LATE` and `GEN_OF`). ARGV: prefix, key, payload, ms, the
/// generation and the glob count the load read (the count lives beside the generation,
/// `KEYS[1] .. ':globs'`), the tombstone it read (`''`: the key was absent), the deadline. A
/// glob invalidation bumps the count before it scans, so a load that read the category before
/// it cannot fill a key the scan did not find (one absent at the time).
const FILL: &str = "if g ~= ARGV[5] then return 0 end \
    if (redis.call('GET', KEYS[1] .. ':globs') or '0') ~= ARGV[6] then return 0 end \
    local cur = redis.call('GET', k) \
    if ARGV[7] == '' then \
      if cur then return 0 end \
    elseif cur ~= ARGV[7] then return 0 end \
    redis.call('SET', k, ARGV[3], 'PX', ARGV[4]) return 1";

/// A value write and the invalidation announcing it, in one script (one round trip per
/// write; see `super::bundle`). KEYS[1] the generation; ARGV: prefix, key, payload, ms, the
/// deadline (unix ms, Redis's clock), the bus channel, the sealed bus message. The write is
/// `set`'s (refused past the deadline: `-1`); the `PUBLISH` goes out whatever the write did,
/// because the message already carries its sequence number (a number never published is a
/// gap, and makes every receiver flush). Returns `{written (1 or -1), receivers}`.
const SET_PUBLISH: &str = "local t = redis.call('TIME') local r = -1 \
    if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) <= tonumber(ARGV[5]) then \
      local g = redis.call('GET', KEYS[1]) or '0' \
      redis.call('SET', ARGV[1] .. ':' .. g .. ':' .. ARGV[2], ARGV[3], 'PX', ARGV[4]) r = 1 \
    end \
    return {r, redis.call('PUBLISH', ARGV[6], ARGV[7])}";

/// The loaded scripts of one [`super::L2`].
pub(super) struct Scripts {
    /// Read: `{generation}` or `{generation, tagged value, pttl}`.
    pub(super) get: Script,
    /// Authoritative write (`SET … PX`), refused as late past its deadline.
    pub(super) set: Script,
    /// Conditional fill after a load: `SET … PX` only if the generation and the category's
    /// glob count are unchanged and the key holds nothing, or exactly the tombstone the
    /// load read (see [`FILL`]).
    pub(super) fill: Script,
    /// Delete tombstone (`SET … PX`, no deadline).
    pub(super) tomb: Script,
    /// Refresh-ahead's write: `SET … PX` only if the generation is unchanged and the key
    /// still holds the expected tagged value (or, expecting `''`, nothing at all).
    pub(super) replace: Script,
    /// Releases a refresh lock: `DEL` only while it still holds the caller's token.
    pub(super) unlock: Script,
    /// Warm-up: adds hit counts to a category's hot-key ranking (see [`HOT_RECORD`]).
    pub(super) hot: Script,
    /// [`Self::set`] of a tagged value: also adds the key to each tag's set (the tags are
    /// read from the value's header, see `super::tags`).
    pub(super) set_tagged: Script,
    /// Tag invalidation of one category: tombstones the listed keys still carrying the tag,
    /// deletes the tag's set.
    pub(super) inv_tag: Script,
    /// [`Self::set`] and the `PUBLISH` of its invalidation (see [`SET_PUBLISH`]).
    pub(super) set_publish: Script,
    /// Source of `set_publish`, loaded when Redis lost its script cache (`NOSCRIPT`).
    pub(super) set_publish_src: &'static str,
    /// Source of `set_tagged`, for `EVAL` + `WAIT` pipelines.
    pub(super) set_tagged_src: String,
    /// Source of `inv_tag`, for `EVAL` + `WAIT` pipelines.
    pub(super) inv_tag_src: String,
    /// Source of `set`, for `EVAL` + `WAIT` pipelines.
    pub(super) set_src: String,
    /// Source of `tomb`, for `EVAL` + `WAIT` pipelines.
    pub(super) tomb_src: String,
}

impl Scripts {
    /// Builds every script (hashing its text; nothing is sent to Redis yet).
    pub(super) fn new() -> Scripts {
        let set_src =
            format!("{NOT_LATE} {GEN_OF} redis.call('SET', k, ARGV[3], 'PX', ARGV[4]) return 1");
        let tomb_src = format!("{GEN_OF} redis.call('SET', k, ARGV[3], 'PX', ARGV[4]) return 1");
        let set_tagged_src = format!("{NOT_LATE} {GEN_OF} {SET_TAGGED}");
        let inv_tag_src = INV_TAG.to_string();
        Scripts {
            set_tagged: Script::new(&set_tagged_src),
            inv_tag: Script::new(&inv_tag_src),
            set_tagged_src,
            inv_tag_src,
            get: Script::new(&format!(
                "{GEN_OF} local v = redis.call('GET', k) \
                 if not v then return {{g}} end \
                 return {{g, v, redis.call('PTTL', k)}}"
            )),
            set: Script::new(&set_src),
            fill: Script::new(&format!("{NOT_LATE} {GEN_OF} {FILL}")),
            tomb: Script::new(&tomb_src),
            replace: Script::new(&format!(
                "{NOT_LATE} {GEN_OF} if g ~= ARGV[5] then return 0 end \
                 local cur = redis.call('GET', k) \
                 if ARGV[6] == '' then \
                   if cur then return 0 end \
                 elseif cur ~= ARGV[6] then return 0 end \
                 redis.call('SET', k, ARGV[3], 'PX', ARGV[4]) return 1"
            )),
            unlock: Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                 return redis.call('DEL', KEYS[1]) end return 0",
            ),
            hot: Script::new(HOT_RECORD),
            set_publish: Script::new(SET_PUBLISH),
            set_publish_src: SET_PUBLISH,
            set_src,
            tomb_src,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_text_is_unchanged() {
        let s = Scripts::new();
        assert_eq!(s.get.get_hash(), "91f421c0db59e147e527a80ac5831d1a1f9fe30f");
        assert_eq!(s.set.get_hash(), "b57926f60f1875ac683d2ca228c10d603f1946e7");
        // The fill also checks the glob count and may replace the tombstone its load read
        // (was c26877c2…, `SET NX` under the generation).
        assert_eq!(
            s.fill.get_hash(),
            "c16c56585acb7ca2bfb53481fd8e43c482a48ab4"
        );
        assert_eq!(
            s.tomb.get_hash(),
            "2b5408684df6942c7a305ea66e53b161bf257916"
        );
        assert_eq!(
            s.replace.get_hash(),
            "2a096abd124b2d3d427b9b56039d320b31f4b947"
        );
        assert_eq!(
            s.unlock.get_hash(),
            "6fbe84d1140fd2047394924af9d845b83c070bec"
        );
        assert_eq!(s.hot.get_hash(), "10ae12ddac182502f1d6f4ab04c7885a0321192e");
        // Tags (issue #26), added: the hashes above are unchanged.
        assert_eq!(
            s.set_tagged.get_hash(),
            "d7de97743319ffed5e9c980b424121581d48b792"
        );
        assert_eq!(
            s.inv_tag.get_hash(),
            "2b1312f141575b12d559b2f5cd20b6c102432c67"
        );
        assert_eq!(
            Script::new(&s.set_tagged_src).get_hash(),
            s.set_tagged.get_hash()
        );
        assert_eq!(Script::new(&s.inv_tag_src).get_hash(), s.inv_tag.get_hash());
        assert_eq!(Script::new(&s.set_src).get_hash(), s.set.get_hash());
        assert_eq!(Script::new(&s.tomb_src).get_hash(), s.tomb.get_hash());
        // One round trip per write (issue #25), added: the hashes above are unchanged.
        assert_eq!(
            s.set_publish.get_hash(),
            "462ffbb1da4bb2e86cac4f4e7bebfb58dc508f63"
        );
        assert_eq!(
            Script::new(s.set_publish_src).get_hash(),
            s.set_publish.get_hash()
        );
    }
}

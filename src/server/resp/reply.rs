//! Replies, encoded in the protocol version the connection negotiated (RESP2 by default,
//! RESP3 after `HELLO 3`). Encoding is redis-protocol's; this type only says what to send,
//! so command code never depends on the version.

use bytes::{Bytes, BytesMut};
use redis_protocol::bytes_utils::Str;
use redis_protocol::resp2::types::BytesFrame as Frame2;
use redis_protocol::resp3::types::{BytesFrame as Frame3, FrameMap};

use crate::error::CacheError;

/// What a command answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+text`
    Simple(&'static str),
    /// `-CODE message` (the text includes the code).
    Error(String),
    /// `:n`
    Int(i64),
    /// `$len` then the bytes.
    Bulk(Bytes),
    /// Nil: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// `*n` then the elements.
    Array(Vec<Reply>),
    /// A map in RESP3, a flat key/value array in RESP2.
    Map(Vec<(Reply, Reply)>),
}

impl Reply {
    /// `+OK`
    pub const OK: Reply = Reply::Simple("OK");

    /// `-ERR message`.
    pub fn err(message: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {message}"))
    }

    /// A bulk string of UTF-8 text.
    pub fn bulk(s: impl Into<String>) -> Reply {
        Reply::Bulk(Bytes::from(s.into()))
    }

    /// The wrong-arity error of redis-server.
    pub fn arity(cmd: &str) -> Reply {
        Reply::err(format!(
            "wrong number of arguments for '{}' command",
            cmd.to_ascii_lowercase()
        ))
    }

    /// Appends the reply to `out`, in RESP3 when `resp3`.
    pub fn encode(self, resp3: bool, out: &mut BytesMut) {
        // Encoding a frame this module built cannot fail: the buffer grows as needed.
        let res = if resp3 {
            redis_protocol::resp3::encode::complete::extend_encode(out, &self.into_resp3(), false)
        } else {
            redis_protocol::resp2::encode::extend_encode(out, &self.into_resp2(), false)
        };
        if let Err(e) = res {
            tracing::error!(error = %e, "RESP reply encoding failed");
            out.extend_from_slice(b"-ERR reply encoding failed\r\n");
        }
    }

    fn into_resp2(self) -> Frame2 {
        match self {
            Reply::Simple(s) => Frame2::SimpleString(Bytes::from_static(s.as_bytes())),
            Reply::Error(e) => Frame2::Error(Str::from(one_line(e))),
            Reply::Int(i) => Frame2::Integer(i),
            Reply::Bulk(b) => Frame2::BulkString(b),
            Reply::Null => Frame2::Null,
            Reply::Array(v) => Frame2::Array(v.into_iter().map(Reply::into_resp2).collect()),
            Reply::Map(kv) => Frame2::Array(
                kv.into_iter()
                    .flat_map(|(k, v)| [k.into_resp2(), v.into_resp2()])
                    .collect(),
            ),
        }
    }

    fn into_resp3(self) -> Frame3 {
        match self {
            Reply::Simple(s) => Frame3::SimpleString {
                data: Bytes::from_static(s.as_bytes()),
                attributes: None,
            },
            Reply::Error(e) => Frame3::SimpleError {
                data: Str::from(one_line(e)),
                attributes: None,
            },
            Reply::Int(i) => Frame3::Number {
                data: i,
                attributes: None,
            },
            Reply::Bulk(b) => Frame3::BlobString {
                data: b,
                attributes: None,
            },
            Reply::Null => Frame3::Null,
            Reply::Array(v) => Frame3::Array {
                data: v.into_iter().map(Reply::into_resp3).collect(),
                attributes: None,
            },
            Reply::Map(kv) => {
                let mut data = FrameMap::with_capacity(kv.len());
                for (k, v) in kv {
                    data.insert(k.into_resp3(), v.into_resp3());
                }
                Frame3::Map {
                    data,
                    attributes: None,
                }
            }
        }
    }
}

/// Simple strings and errors cannot carry CR or LF.
fn one_line(s: String) -> String {
    if s.contains(['\r', '\n']) {
        s.replace(['\r', '\n'], " ")
    } else {
        s
    }
}

impl From<CacheError> for Reply {
    /// The facade's errors, with the message HTTP carries in its JSON body.
    fn from(e: CacheError) -> Reply {
        Reply::err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: Reply, resp3: bool) -> Vec<u8> {
        let mut b = BytesMut::new();
        r.encode(resp3, &mut b);
        b.to_vec()
    }

    #[test]
    fn nil_and_maps_follow_the_protocol_version() {
        assert_eq!(enc(Reply::Null, false), b"$-1\r\n");
        assert_eq!(enc(Reply::Null, true), b"_\r\n");
        let m = Reply::Map(vec![(Reply::bulk("proto"), Reply::Int(3))]);
        assert_eq!(enc(m.clone(), false), b"*2\r\n$5\r\nproto\r\n:3\r\n");
        assert_eq!(enc(m, true), b"%1\r\n$5\r\nproto\r\n:3\r\n");
        assert_eq!(
            enc(Reply::err("bad\r\nthing"), false),
            b"-ERR bad  thing\r\n"
        );
        assert_eq!(enc(Reply::OK, true), b"+OK\r\n");
    }
}

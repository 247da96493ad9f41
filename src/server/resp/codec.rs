//! Request framing: turns the bytes a Redis client sends into argument lists.
//!
//! Clients send a command as a RESP array of bulk strings (`*2\r\n$3\r\nGET\r\n$3\r\nk/a\r\n`)
//! or, from a terminal, as an inline line (`PING\r\n`). Nothing else is a valid request, so
//! this decoder accepts exactly that grammar instead of a general RESP frame parser (which
//! would accept nested aggregates, recurse on them, and trust declared lengths). Every length
//! is checked against the limits before a byte is buffered for it: a client that declares a
//! huge bulk or array, or sends garbage, gets a protocol error and is disconnected; the
//! connection's buffer never grows past `max_request` bytes.
//!
//! Arguments are zero-copy slices of the read buffer; values that enter L1 are copied to an
//! exact-size allocation there (see [`crate::l1::L1Category::entry`]).

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Most arguments one command may carry (Redis's own limit).
pub const MAX_ARGS: usize = 1024 * 1024;
/// Longest inline command or length line.
pub const MAX_LINE: usize = 64 * 1024;
/// Longest `*<n>` / `$<n>` header: sign + 19 digits.
const MAX_LEN_DIGITS: usize = 20;

/// A request the decoder refuses. The connection answers `-ERR Protocol error: ...` and
/// closes, like redis-server.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A `*` line whose count is not a number in range.
    #[error("Protocol error: invalid multibulk length")]
    MultibulkLength,
    /// A `$` line whose length is not a number in range.
    #[error("Protocol error: invalid bulk length")]
    BulkLength,
    /// The arguments of one command add up to more than the request limit.
    #[error("Protocol error: request of more than {0} bytes")]
    RequestTooLarge(usize),
    /// An array element that is not a bulk string.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// An inline command line longer than the limit.
    #[error("Protocol error: too big inline request")]
    InlineTooLong,
    /// A bulk string not followed by `\r\n`.
    #[error("Protocol error: bulk string not followed by CRLF")]
    MissingCrlf,
    /// The connection failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// Decodes requests, bounded by `max_bulk` bytes per argument and `max_request` bytes per
/// command (sum of its arguments).
#[derive(Clone, Copy, Debug)]
pub struct RequestDecoder {
    max_bulk: usize,
    max_request: usize,
}

impl RequestDecoder {
    /// A decoder with these limits (`max_request` is at least `max_bulk`).
    pub fn new(max_bulk: usize, max_request: usize) -> RequestDecoder {
        RequestDecoder {
            max_bulk,
            max_request: max_request.max(max_bulk),
        }
    }

    /// Scans one array request without consuming it: the argument ranges and the total
    /// length, or `None` when more bytes are needed.
    #[allow(clippy::type_complexity)]
    fn scan_array(
        &self,
        buf: &[u8],
    ) -> Result<Result<(Vec<(usize, usize)>, usize), usize>, FrameError> {
        let Some((n, mut pos)) = read_len(buf, 1, FrameError::MultibulkLength)? else {
            return Ok(Err(0));
        };
        if n <= 0 {
            return Ok(Ok((Vec::new(), pos)));
        }
        let n = usize::try_from(n).map_err(|_| FrameError::MultibulkLength)?;
        if n > MAX_ARGS {
            return Err(FrameError::MultibulkLength);
        }
        let mut ranges = Vec::with_capacity(n.min(64));
        let mut total = 0usize;
        for _ in 0..n {
            let Some(&kind) = buf.get(pos) else {
                return Ok(Err(0));
            };
            if kind != b'$' {
                return Err(FrameError::ExpectedBulk(char::from(kind)));
            }
            let Some((len, start)) = read_len(buf, pos + 1, FrameError::BulkLength)? else {
                return Ok(Err(0));
            };
            let len = usize::try_from(len).map_err(|_| FrameError::BulkLength)?;
            if len > self.max_bulk {
                return Err(FrameError::BulkLength);
            }
            total += len;
            if total > self.max_request {
                return Err(FrameError::RequestTooLarge(self.max_request));
            }
            let end = start + len;
            if buf.len() < end + 2 {
                // Tell the caller how much this argument still needs, to reserve it once.
                return Ok(Err(end + 2));
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(FrameError::MissingCrlf);
            }
            ranges.push((start, end));
            pos = end + 2;
        }
        Ok(Ok((ranges, pos)))
    }

    fn decode_inline(&self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, FrameError> {
        let Some(nl) = src.iter().position(|&b| b == b'\n') else {
            if src.len() > MAX_LINE {
                return Err(FrameError::InlineTooLong);
            }
            return Ok(None);
        };
        if nl > MAX_LINE {
            return Err(FrameError::InlineTooLong);
        }
        let line = src.split_to(nl + 1).freeze();
        let mut args = Vec::new();
        let mut start = None;
        for (i, b) in line.iter().enumerate() {
            let space = b.is_ascii_whitespace();
            match (start, space) {
                (None, false) => start = Some(i),
                (Some(s), true) => {
                    args.push(line.slice(s..i));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            args.push(line.slice(s..));
        }
        Ok(Some(args))
    }
}

/// Reads `<int>\r\n` at `from`. `None` when the line is not complete yet.
fn read_len(buf: &[u8], from: usize, err: FrameError) -> Result<Option<(i64, usize)>, FrameError> {
    let rest = buf.get(from..).unwrap_or_default();
    let Some(cr) = rest
        .iter()
        .take(MAX_LEN_DIGITS + 1)
        .position(|&b| b == b'\r')
    else {
        return if rest.len() > MAX_LEN_DIGITS {
            Err(err)
        } else {
            Ok(None)
        };
    };
    let Some(&lf) = rest.get(cr + 1) else {
        return Ok(None);
    };
    if lf != b'\n' {
        return Err(err);
    }
    let n = std::str::from_utf8(&rest[..cr])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(err)?;
    Ok(Some((n, from + cr + 2)))
}

impl Decoder for RequestDecoder {
    /// The command's arguments; empty for an empty inline line or `*0`, which get no reply.
    type Item = Vec<Bytes>;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, FrameError> {
        if src.is_empty() {
            return Ok(None);
        }
        if src[0] != b'*' {
            return self.decode_inline(src);
        }
        match self.scan_array(src)? {
            Ok((ranges, len)) => {
                let frame = src.split_to(len).freeze();
                Ok(Some(
                    ranges.into_iter().map(|(s, e)| frame.slice(s..e)).collect(),
                ))
            }
            Err(needed) => {
                if needed > src.len() {
                    src.reserve(needed - src.len());
                }
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec() -> RequestDecoder {
        RequestDecoder::new(1024, 4096)
    }

    fn all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, FrameError> {
        let mut d = dec();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(args) = d.decode(&mut buf)? {
            out.push(args);
        }
        Ok(out)
    }

    #[test]
    fn arrays_and_inline_pipelined() {
        let got = all(b"*2\r\n$3\r\nGET\r\n$3\r\nk/a\r\nPING  hi\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(
            got,
            vec![
                vec![Bytes::from("GET"), Bytes::from("k/a")],
                vec![Bytes::from("PING"), Bytes::from("hi")],
                vec![Bytes::from("PING")],
            ]
        );
    }

    #[test]
    fn partial_input_waits() {
        let full = b"*2\r\n$3\r\nSET\r\n$5\r\nhello\r\n";
        for cut in 0..full.len() {
            let mut d = dec();
            let mut buf = BytesMut::from(&full[..cut]);
            assert!(d.decode(&mut buf).unwrap().is_none(), "cut at {cut}");
            buf.extend_from_slice(&full[cut..]);
            assert_eq!(d.decode(&mut buf).unwrap().unwrap().len(), 2);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn limits_are_enforced_before_buffering() {
        assert!(matches!(
            all(b"*1\r\n$999999999999\r\n"),
            Err(FrameError::BulkLength)
        ));
        assert!(matches!(
            all(b"*99999999999\r\n"),
            Err(FrameError::MultibulkLength)
        ));
        assert!(matches!(
            all(b"*5\r\n$1000\r\n"),
            Ok(v) if v.is_empty()
        ));
        // Five 1000-byte arguments exceed the 4096-byte request bound.
        let mut req = b"*5\r\n".to_vec();
        for _ in 0..5 {
            req.extend_from_slice(b"$1000\r\n");
            req.extend_from_slice(&[b'x'; 1000]);
            req.extend_from_slice(b"\r\n");
        }
        assert!(matches!(all(&req), Err(FrameError::RequestTooLarge(4096))));
        assert!(matches!(
            all(&[b'A'; MAX_LINE + 2]),
            Err(FrameError::InlineTooLong)
        ));
        assert!(matches!(
            all(b"*1\r\n$99999999999999999999999\r\n"),
            Err(FrameError::BulkLength)
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"*1\r\n*1\r\n$1\r\nx\r\n"[..],
            b"*1\r\n:5\r\n",
            b"*x\r\n",
            b"*1\r\n$-5\r\n",
            b"*1\r\n$3\r\nabcXY",
            b"*1\n$1\r\nx\r\n",
        ] {
            assert!(all(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_nor_overgrow(input in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut d = dec();
            let mut buf = BytesMut::from(&input[..]);
            while let Ok(Some(_)) = d.decode(&mut buf) {}
            prop_assert!(buf.capacity() <= 4096 + 1024 + MAX_LINE);
        }

        #[test]
        fn encoded_commands_round_trip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6)) {
            let mut wire = format!("*{}\r\n", args.len()).into_bytes();
            for a in &args {
                wire.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                wire.extend_from_slice(a);
                wire.extend_from_slice(b"\r\n");
            }
            let got = all(&wire).unwrap();
            prop_assert_eq!(got.len(), 1);
            let got: Vec<Vec<u8>> = got[0].iter().map(|b| b.to_vec()).collect();
            prop_assert_eq!(got, args);
        }
    }
}

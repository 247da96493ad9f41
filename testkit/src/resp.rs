//! A raw RESP client over `std::net::TcpStream`: no extra crates, and it can send arbitrary
//! bytes (garbage-injection tests).

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// A decoded RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The reply as UTF-8 text, for simple strings and bulk strings.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// Encode one command as a RESP array of bulk strings.
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Read one RESP reply from a buffered stream.
pub fn read_reply<R: BufRead>(r: &mut R) -> std::io::Result<Resp> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("short RESP line: {:?}", String::from_utf8_lossy(&line)),
        ));
    }
    let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    match line[0] {
        b'+' => Ok(Resp::Simple(body)),
        b'-' => Ok(Resp::Error(body)),
        b':' => body.parse().map(Resp::Int).map_err(|_| bad("bad integer")),
        b'$' => {
            let n: i64 = body.parse().map_err(|_| bad("bad bulk length"))?;
            if n < 0 {
                return Ok(Resp::Bulk(None));
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(n as usize);
            Ok(Resp::Bulk(Some(buf)))
        }
        b'*' => {
            let n: i64 = body.parse().map_err(|_| bad("bad array length"))?;
            if n < 0 {
                return Ok(Resp::Array(None));
            }
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(read_reply(r)?);
            }
            Ok(Resp::Array(Some(items)))
        }
        _ => Err(bad("unknown RESP type byte")),
    }
}

/// A raw RESP connection (already authenticated if the server has a password).
pub struct RespConn {
    reader: BufReader<TcpStream>,
}

impl RespConn {
    pub fn connect(port: u16, password: Option<&str>, timeout: Duration) -> std::io::Result<Self> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut conn = RespConn {
            reader: BufReader::new(stream),
        };
        if let Some(pw) = password {
            match conn.command(&[b"AUTH", pw.as_bytes()])? {
                Resp::Simple(_) => {}
                other => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        format!("AUTH failed: {other:?}"),
                    ))
                }
            }
        }
        Ok(conn)
    }

    /// Send a command and read its reply.
    pub fn command(&mut self, args: &[&[u8]]) -> std::io::Result<Resp> {
        self.send(args)?;
        self.read()
    }

    /// Send a command without reading a reply (e.g. SUBSCRIBE, then `read`).
    pub fn send(&mut self, args: &[&[u8]]) -> std::io::Result<()> {
        let s = self.reader.get_mut();
        s.write_all(&encode_command(args))?;
        s.flush()
    }

    /// Read the next reply (or pushed pub/sub message).
    pub fn read(&mut self) -> std::io::Result<Resp> {
        read_reply(&mut self.reader)
    }

    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> std::io::Result<()> {
        self.reader.get_ref().set_read_timeout(t)
    }
}

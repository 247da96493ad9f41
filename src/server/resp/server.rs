//! Connection and server commands: `PING`, `ECHO`, `HELLO`, `AUTH`, `CLIENT`, `SELECT`,
//! `INFO`, `COMMAND` — what redis-cli, redis-benchmark and client libraries (redis-py) send
//! around the key commands.

use bytes::Bytes;
use subtle::ConstantTimeEq;

use super::reply::Reply;
use super::session::Ctx;

/// `(name, arity, flags, first key, last key, step)` as `COMMAND` reports them.
type CommandSpec = (&'static str, i64, &'static [&'static str], i64, i64, i64);

const COMMANDS: &[CommandSpec] = &[
    ("get", 2, &["readonly", "fast"], 1, 1, 1),
    ("set", -3, &["write", "denyoom"], 1, 1, 1),
    ("del", -2, &["write"], 1, -1, 1),
    ("unlink", -2, &["write", "fast"], 1, -1, 1),
    ("mget", -2, &["readonly", "fast"], 1, -1, 1),
    ("exists", -2, &["readonly", "fast"], 1, -1, 1),
    ("ping", -1, &["fast", "stale"], 0, 0, 0),
    ("echo", 2, &["fast", "stale"], 0, 0, 0),
    (
        "hello",
        -1,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
    ),
    (
        "auth",
        -2,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
    ),
    ("client", -2, &["noscript", "loading", "stale"], 0, 0, 0),
    ("select", 2, &["loading", "stale", "fast"], 0, 0, 0),
    ("info", -1, &["loading", "stale"], 0, 0, 0),
    ("command", -1, &["loading", "stale"], 0, 0, 0),
    (
        "quit",
        -1,
        &["loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
    ),
];

/// Runs a command that does not touch the cache's data.
pub(crate) fn execute(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    match name.as_str() {
        "ping" => match args.len() {
            1 => Reply::Simple("PONG"),
            2 => Reply::Bulk(args[1].clone()),
            _ => Reply::arity("ping"),
        },
        "echo" if args.len() == 2 => Reply::Bulk(args[1].clone()),
        "echo" => Reply::arity("echo"),
        "hello" => hello(ctx, args),
        "auth" => match args {
            [_, pass] => auth(ctx, b"default", pass),
            [_, user, pass] => auth(ctx, user, pass),
            _ => Reply::arity("auth"),
        },
        "client" => client(ctx, args),
        "select" => match args.get(1).map(|a| a.as_ref()) {
            Some(b"0") if args.len() == 2 => Reply::OK,
            Some(_) if args.len() == 2 => Reply::err("DB index is out of range"),
            _ => Reply::arity("select"),
        },
        "info" => info(ctx),
        "command" => command(args),
        _ => Reply::err(format!(
            "unknown command '{}', with args beginning with: {}",
            name.chars().take(64).collect::<String>(),
            args[1..]
                .iter()
                .take(3)
                .map(|a| format!("'{}' ", String::from_utf8_lossy(&a[..a.len().min(64)])))
                .collect::<String>()
        )),
    }
}

/// Checks the API token (constant-time). The only user is `default`, as in a Redis
/// configured with `requirepass`.
fn auth(ctx: &mut Ctx<'_>, user: &[u8], pass: &[u8]) -> Reply {
    let Some(token) = &ctx.cache.config().api_token else {
        return Reply::err(
            "AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        );
    };
    let user_ok = user == b"default";
    let pass_ok: bool = token.as_bytes().ct_eq(pass).into();
    if user_ok && pass_ok {
        ctx.session.authed = true;
        Reply::OK
    } else {
        Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".to_string())
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`: switches to RESP2 or RESP3 and
/// answers the server's description as a map.
fn hello(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut resp3 = ctx.session.resp3;
    let mut rest = &args[1..];
    if let Some(v) = rest.first() {
        match v.as_ref() {
            b"2" => resp3 = false,
            b"3" => resp3 = true,
            _ => {
                if std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .is_none()
                {
                    return Reply::err("Protocol version is not an integer or out of range");
                }
                return Reply::Error("NOPROTO unsupported protocol version".to_string());
            }
        }
        rest = &rest[1..];
    }
    let mut name = None;
    while let Some(opt) = rest.first() {
        if opt.eq_ignore_ascii_case(b"AUTH") && rest.len() >= 3 {
            let r = auth(ctx, &rest[1], &rest[2]);
            if r != Reply::OK {
                return r;
            }
            rest = &rest[3..];
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && rest.len() >= 2 {
            name = Some(rest[1].clone());
            rest = &rest[2..];
        } else {
            return Reply::err(format!(
                "Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(opt)
            ));
        }
    }
    ctx.session.resp3 = resp3;
    if name.is_some() {
        ctx.session.name = name;
    }
    Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("hybrid-cache")),
        (
            Reply::bulk("version"),
            Reply::bulk(env!("CARGO_PKG_VERSION")),
        ),
        (Reply::bulk("proto"), Reply::Int(if resp3 { 3 } else { 2 })),
        (Reply::bulk("id"), Reply::Int(ctx.session.id as i64)),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (Reply::bulk("role"), Reply::bulk("master")),
        (Reply::bulk("modules"), Reply::Array(Vec::new())),
    ])
}

/// `CLIENT SETNAME|GETNAME|ID|SETINFO|INFO`.
fn client(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let Some(sub) = args.get(1) else {
        return Reply::arity("client");
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match (sub.as_str(), args.len()) {
        ("setname", 3) => {
            if args[2].iter().any(|b| *b <= b' ' || *b > b'~') {
                return Reply::err(
                    "Client names cannot contain spaces, newlines or special characters.",
                );
            }
            ctx.session.name = (!args[2].is_empty()).then(|| args[2].clone());
            Reply::OK
        }
        ("getname", 2) => ctx
            .session
            .name
            .clone()
            .map(Reply::Bulk)
            .unwrap_or(Reply::Null),
        ("id", 2) => Reply::Int(ctx.session.id as i64),
        ("setinfo", 4) => Reply::OK,
        ("info", 2) => Reply::bulk(format!(
            "id={} name={} resp={}\n",
            ctx.session.id,
            ctx.session
                .name
                .as_ref()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default(),
            if ctx.session.resp3 { 3 } else { 2 }
        )),
        ("setname" | "getname" | "id" | "setinfo" | "info", _) => Reply::err(format!(
            "wrong number of arguments for 'client|{sub}' command"
        )),
        _ => Reply::err(format!(
            "unknown subcommand '{}'. Try CLIENT HELP.",
            sub.chars().take(64).collect::<String>()
        )),
    }
}

/// `INFO`: the server section clients look at, plus this node's identity and categories.
fn info(ctx: &Ctx<'_>) -> Reply {
    let cfg = ctx.cache.config();
    let mut s = String::from("# Server\r\n");
    // The Redis command set this front end implements is that of Redis 7 (HELLO, RESP3).
    s.push_str("redis_version:7.0.0\r\nredis_mode:standalone\r\n");
    s.push_str(&format!(
        "hybrid_cache_version:{}\r\nnode_id:{}\r\nl2:{}\r\n",
        env!("CARGO_PKG_VERSION"),
        cfg.node_id,
        if ctx.cache.l2_enabled() {
            "redis"
        } else {
            "none"
        }
    ));
    s.push_str("\r\n# Categories\r\n");
    for (name, c) in &cfg.categories {
        s.push_str(&format!(
            "category_{name}:ttl_secs={},max_entries={}\r\n",
            c.ttl_secs, c.max_entries
        ));
    }
    Reply::bulk(s)
}

fn spec_reply(c: &CommandSpec) -> Reply {
    let (name, arity, flags, first, last, step) = *c;
    Reply::Array(vec![
        Reply::bulk(name),
        Reply::Int(arity),
        Reply::Array(flags.iter().map(|f| Reply::Simple(f)).collect()),
        Reply::Int(first),
        Reply::Int(last),
        Reply::Int(step),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

/// `COMMAND`, `COMMAND COUNT|LIST|INFO name...|DOCS`.
fn command(args: &[Bytes]) -> Reply {
    let find = |n: &Bytes| {
        COMMANDS
            .iter()
            .find(|c| n.eq_ignore_ascii_case(c.0.as_bytes()))
    };
    let Some(sub) = args.get(1) else {
        return Reply::Array(COMMANDS.iter().map(spec_reply).collect());
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match sub.as_str() {
        "count" => Reply::Int(COMMANDS.len() as i64),
        "list" => Reply::Array(COMMANDS.iter().map(|c| Reply::bulk(c.0)).collect()),
        "info" => Reply::Array(
            args[2..]
                .iter()
                .map(|n| find(n).map(spec_reply).unwrap_or(Reply::Null))
                .collect(),
        ),
        // No documentation to serve: an empty map makes redis-cli fall back to its own.
        "docs" => Reply::Map(Vec::new()),
        _ => Reply::err(format!(
            "unknown subcommand '{}'. Try COMMAND HELP.",
            sub.chars().take(64).collect::<String>()
        )),
    }
}

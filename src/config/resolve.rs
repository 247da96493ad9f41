//! The order of the layers: defaults, then the file, then the environment, then the flags;
//! then the addresses are parsed and the whole is validated.
//!
//! Why its own file: precedence is the one rule every layer shares, and it reads best in
//! one short function ([`Config::resolve`]) that calls one function per layer.

use std::collections::HashSet;
use std::path::PathBuf;

use super::env::Env;
use super::error::{invalid, ConfigError};
use super::file::{FileConfig, NodeEntry};
use super::flags::Flags;
use super::settings::Config;
use super::validate::{check_host_port, parse_addr};

impl Config {
    /// Builds the configuration from flags, the process environment, the config file and
    /// defaults, in that order of precedence.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        Config::load_with(flags, &|name| std::env::var(name).ok())
    }

    /// Like [`Config::load`], with an explicit environment (for tests).
    pub fn load_with(
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let path = flags.config.clone().or_else(|| {
            env("HC_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let file = match &path {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        Config::resolve(flags, env, file)
    }

    /// Resolves layers given an already-parsed file.
    pub fn resolve(
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
        file: FileConfig,
    ) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        // Node identity first: it selects the `[[nodes]]` entry.
        let entry = select_node(&mut c, flags, env, &file)?;
        let mut p = super::file::apply(&mut c, file, entry)?;
        super::env::apply(&mut c, &mut p, env)?;
        super::flags::apply(&mut p, flags);
        p.finish(&mut c)?;
        c.validate()?;
        Ok(c)
    }
}

/// Sets the node id (flag > `HC_NODE_ID` > file), returns its `[[nodes]]` entry, and checks
/// every entry (unique ids, parseable addresses).
fn select_node(
    c: &mut Config,
    flags: &Flags,
    env: Env,
    file: &FileConfig,
) -> Result<Option<NodeEntry>, ConfigError> {
    let node_id = flags
        .node_id
        .clone()
        .or_else(|| env("HC_NODE_ID").filter(|v| !v.is_empty()))
        .or(file.node_id.clone());
    let entry = match &node_id {
        Some(id) if !file.nodes.is_empty() => Some(
            file.nodes
                .iter()
                .find(|n| &n.id == id)
                .cloned()
                .ok_or_else(|| {
                    invalid(
                        "node_id",
                        format!("`{id}` has no [[nodes]] entry in the file"),
                    )
                })?,
        ),
        None if !file.nodes.is_empty() => {
            return Err(invalid(
                "node_id",
                "the file lists [[nodes]]; choose one with --node-id or HC_NODE_ID",
            ))
        }
        _ => None,
    };
    if let Some(id) = node_id {
        c.node_id = id;
    }
    check_node_entries(&file.nodes)?;
    Ok(entry)
}

/// Every `[[nodes]]` entry has a unique id, an `ip:port` HTTP address and a `host:port`
/// gossip address.
fn check_node_entries(nodes: &[NodeEntry]) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, n) in nodes.iter().enumerate() {
        if !seen.insert(n.id.clone()) {
            return Err(invalid(
                &format!("nodes[{i}].id"),
                format!("duplicate id `{}`", n.id),
            ));
        }
        parse_addr(&format!("nodes[{i}].http"), &n.http)?;
        check_host_port(&format!("nodes[{i}].gossip"), &n.gossip)?;
    }
    Ok(())
}

//! The member table: what this node knows about every other node (identity, state, when it
//! last heard from it), rebuilt from foca lazily and versioned so that readers copy it only
//! when it moved.

use std::{collections::BTreeMap, time::Instant};

use foca::State;

use super::super::{identity::NodeIdentity, types::MemberState};

/// What this node knows about another node.
#[derive(Clone, Debug)]
pub(crate) struct PeerEntry {
    pub(crate) identity: NodeIdentity,
    pub(crate) state: MemberState,
    pub(crate) last_seen: Instant,
}

/// A table row: the entry, and the last rebuild that found it in foca.
struct Row {
    entry: PeerEntry,
    pass: u64,
}

/// Every other node foca knows, by node id.
#[derive(Default)]
pub(super) struct MemberTable {
    /// Rebuilt from foca lazily ([`MemberTable::refresh`]): a rebuild is O(members), and a
    /// simulation of thousands of nodes cannot afford one per packet.
    rows: BTreeMap<String, Row>,
    dirty: bool,
    /// Bumped whenever a rebuild changes the table's members, identities or states (not on
    /// `last_seen` alone): readers copy the table only when it moved.
    version: u64,
    /// Rebuild counter: rows not marked by the latest rebuild were forgotten by foca.
    pass: u64,
}

impl MemberTable {
    /// foca's state moved: the next read rebuilds.
    pub(super) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Heard from `src` now (only if the row is that very incarnation).
    pub(super) fn touch(&mut self, src: &NodeIdentity, now: Instant) {
        if let Some(r) = self.rows.get_mut(&src.node_id) {
            if r.entry.identity == *src {
                r.entry.last_seen = now;
            }
        }
    }

    /// The entries, sorted by node id.
    pub(super) fn entries(&self) -> impl Iterator<Item = &PeerEntry> {
        self.rows.values().map(|r| &r.entry)
    }

    /// The entry of `node_id`.
    pub(super) fn get(&self, node_id: &str) -> Option<&PeerEntry> {
        self.rows.get(node_id).map(|r| &r.entry)
    }

    /// See `Membership::peers_version`.
    pub(super) fn version(&self) -> u64 {
        self.version
    }

    /// Brings the table in line with foca's `members` (every member but `me`, in any state).
    /// Runs after every packet and timer at a node, so it allocates only for members it has
    /// not seen before.
    pub(super) fn refresh<'a>(
        &mut self,
        me: &str,
        members: impl Iterator<Item = &'a foca::Member<NodeIdentity>>,
        now: Instant,
    ) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.pass = self.pass.wrapping_add(1);
        let pass = self.pass;
        let mut changed = false;
        for m in members {
            let id = m.id();
            if id.node_id == me {
                continue;
            }
            let state = match m.state() {
                State::Alive => MemberState::Alive,
                State::Suspect => MemberState::Suspect,
                State::Down => MemberState::Dead,
            };
            match self.rows.get_mut(id.node_id.as_str()) {
                // An older incarnation foca still remembers next to the current one.
                Some(r) if r.entry.identity.bump > id.bump => r.pass = pass,
                Some(r) => {
                    r.pass = pass;
                    if r.entry.identity != *id {
                        r.entry.identity = id.clone();
                        r.entry.last_seen = now;
                        changed = true;
                    }
                    if r.entry.state != state {
                        r.entry.state = state;
                        changed = true;
                    }
                }
                None => {
                    self.rows.insert(
                        id.node_id.clone(),
                        Row {
                            entry: PeerEntry {
                                identity: id.clone(),
                                state,
                                last_seen: now,
                            },
                            pass,
                        },
                    );
                    changed = true;
                }
            }
        }
        // Members foca forgot (dead longer than `dead_forget`) leave the table too.
        let before = self.rows.len();
        self.rows.retain(|_, r| r.pass == pass);
        if changed || self.rows.len() != before {
            self.version = self.version.wrapping_add(1);
        }
    }
}

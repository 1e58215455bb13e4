//! What one batch of commands produced: [`Outgoing`], filled by the actor's parts while the
//! batch is handled and held back until its updates are durable (see `commit`).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use yrs::ClientID;

use crate::command::{Origin, Reply};
use crate::outbox::{CloseReason, ConnId};
use crate::protocol::IncomingUpdate;

/// Updates collected in order until something needs the document to hold them (a join, a
/// read, any other message), then applied together in one transaction; each with its authors
/// (several for a batch merged on another node; none when not known).
pub(super) type Pending = VecDeque<(IncomingUpdate, Origin, Authors)>;

/// Who wrote an update, for the history.
pub(super) type Authors = Vec<Arc<str>>;

/// Everything a batch produced.
#[derive(Default)]
pub(super) struct Outgoing {
    /// Frames for one session each, in order (add with [`Outgoing::reply`]).
    pub direct: Vec<(ConnId, Bytes)>,
    /// Frames and bytes of `direct` per session, so a question is refused before its answer
    /// is computed when the answers already pending would not fit the session's queue.
    pub direct_pending: HashMap<ConnId, (usize, usize)>,
    /// Stateless frames for every session but their sender's.
    pub stateless: Vec<(ConnId, Bytes)>,
    /// Awareness frames for every session, as received (or as encoded for a removal).
    pub awareness_frames: Vec<Bytes>,
    /// The awareness clients those frames changed (presence merges several frames into one).
    pub awareness_changed: Vec<ClientID>,
    /// Accepted updates from this node's sessions and the API: stored, then broadcast.
    pub updates: Vec<Bytes>,
    /// Total bytes of `updates`.
    pub update_bytes: u64,
    /// Sessions whose updates are in `updates` (they have them already).
    pub update_sources: HashSet<ConnId>,
    /// Updates from other nodes: broadcast, neither stored nor published.
    pub remote_updates: Vec<Bytes>,
    /// Every applied update (local and remote) with its authors: recorded in the history once
    /// the batch is durable.
    pub written: Vec<(Authors, Bytes)>,
    /// The authors of `updates` (told to the other nodes with them).
    pub local_authors: BTreeSet<Arc<str>>,
    /// Frames for the other nodes (presence, answers to their queries).
    pub publish: Vec<Bytes>,
    /// API callers to answer once the updates are durable.
    pub api_replies: Vec<Reply>,
    /// Reads to answer once the updates they saw are durable.
    pub read_replies: Vec<Reply>,
    /// Sessions to close after sending, with the reason.
    pub closes: Vec<(ConnId, CloseReason)>,
    /// The fan-out may have missed messages: re-read the store after this batch.
    pub resync: bool,
    /// yrs panicked on or rejected an update: the in-memory document is untrustworthy, and
    /// nothing of this batch may be stored or sent.
    pub poisoned: bool,
}

impl Outgoing {
    /// Queues an awareness frame for every session; `changed` are the clients it changed.
    pub fn relay_awareness(&mut self, frame: Bytes, changed: impl IntoIterator<Item = ClientID>) {
        self.awareness_frames.push(frame);
        self.awareness_changed.extend(changed);
    }

    /// Queues a frame for one session.
    pub fn reply(&mut self, conn: ConnId, frame: Bytes) {
        let pending = self.direct_pending.entry(conn).or_default();
        pending.0 += 1;
        pending.1 += frame.len();
        self.direct.push((conn, frame));
    }

    /// Frames and bytes already queued for `conn` in this batch.
    pub fn pending_for(&self, conn: ConnId) -> (usize, usize) {
        self.direct_pending.get(&conn).copied().unwrap_or_default()
    }

    /// Whether this batch closes `conn`.
    pub fn closes(&self, conn: ConnId) -> bool {
        self.closes.iter().any(|(closed, _)| *closed == conn)
    }

    /// Whether there is nothing to store (so nothing to wait for before sending).
    pub fn has_updates(&self) -> bool {
        !self.updates.is_empty()
    }
}

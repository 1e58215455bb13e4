//! Presence: the document's awareness states, who owns each awareness client id (the local
//! session or the node that introduced it), and the relay of changes, several merged into one
//! frame.
//!
//! A session may set and remove only the client ids it introduced (or that another session of
//! the same user introduced: a client reconnecting keeps its id); entries for anyone else's
//! ids are dropped from what it sends. One state is bounded in bytes and a session in the
//! number of ids it owns; a session over either bound is closed. So no client can impersonate,
//! remove or drown out another's presence, and a newcomer's greeting stays small.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use yrs::sync::awareness::{Awareness, AwarenessUpdate};
use yrs::{ClientID, Doc};

use super::batch::Outgoing;
use crate::config::DocConfig;
use crate::hooks::Hooks;
use crate::name::DocName;
use crate::outbox::{CloseReason, ConnId, SessionInfo};
use crate::protocol;
use crate::remote::NodeId;

/// Where an awareness update came from; also who owns a client id.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Session(ConnId),
    Node(NodeId),
}

/// The document's presence.
pub(super) struct Presence {
    name: DocName,
    hooks: Hooks,
    config: Arc<DocConfig>,
    /// The states. Its document is a placeholder: awareness never reads document content, so
    /// presence does not share the document (which is rebuilt and replaced independently).
    awareness: Awareness,
    /// Who introduced each client id.
    owners: HashMap<ClientID, Source>,
    /// The client ids each local session owns; removed when it leaves.
    by_session: HashMap<ConnId, HashSet<ClientID>>,
    /// The client ids announced through other nodes, by node.
    by_node: HashMap<NodeId, HashSet<ClientID>>,
    /// Who each local session is (a user may take over its own ids from an older session).
    users: HashMap<ConnId, Arc<str>>,
    /// Whether local changes are published to other nodes.
    shared: bool,
    /// Every state as one frame, until presence changes (`None`: not encoded yet).
    everyone: Option<Option<Bytes>>,
}

impl Presence {
    pub fn new(name: DocName, hooks: Hooks, config: Arc<DocConfig>, shared: bool) -> Self {
        Presence {
            name,
            hooks,
            config,
            awareness: Awareness::new(Doc::new()),
            owners: HashMap::new(),
            by_session: HashMap::new(),
            by_node: HashMap::new(),
            users: HashMap::new(),
            shared,
            everyone: None,
        }
    }

    /// The name a session's client announces in its awareness state (`user.name`), trimmed
    /// to 64 characters.
    pub fn user_name(&self, conn: ConnId) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct User {
            name: String,
        }
        #[derive(serde::Deserialize)]
        struct State {
            user: User,
        }
        let ids = self.by_session.get(&conn)?;
        ids.iter().find_map(|id| {
            let state: State = self.awareness.state(*id)?;
            let name = state.user.name.trim();
            (!name.is_empty()).then(|| name.chars().take(64).collect())
        })
    }

    /// A session joined (who it is decides which ids it may take over).
    pub fn joined(&mut self, session: &SessionInfo) {
        self.users.insert(session.conn, session.user.clone());
    }

    /// Every state, for a newcomer or a query (`None` if nobody is present). Encoded once until
    /// presence changes, so repeated queries cost nothing.
    pub fn everyone(&mut self) -> Option<Bytes> {
        if let Some(cached) = &self.everyone {
            return cached.clone();
        }
        let frame = match self.awareness.update() {
            Ok(update) if !update.clients.is_empty() => Some(protocol::encode_awareness(&update)),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(doc = %self.name, %error, "could not encode awareness");
                None
            }
        };
        self.everyone = Some(frame.clone());
        frame
    }

    /// Whether `source` may set or remove client `id`.
    fn may_change(&self, source: Source, id: ClientID) -> bool {
        match (self.owners.get(&id), source) {
            (None, _) => true,
            (Some(owner), source) if *owner == source => true,
            // The same user reconnecting (a new session, the old one not yet gone).
            (Some(Source::Session(owner)), Source::Session(conn)) => {
                self.users.contains_key(owner) && self.users.get(owner) == self.users.get(&conn)
            }
            // Other nodes enforce this for their own sessions.
            (Some(_), Source::Node(_)) => true,
            (Some(Source::Node(_)), Source::Session(_)) => false,
        }
    }

    /// Applies an awareness update and relays it (to every session, the sender included:
    /// y-websocket clients count it as a sign of life, as the reference server does).
    pub fn apply(
        &mut self,
        source: Source,
        update: AwarenessUpdate,
        frame: Bytes,
        out: &mut Outgoing,
    ) {
        let (update, frame) = match source {
            Source::Session(conn) => match self.check(conn, update, frame) {
                Ok(Some(checked)) => checked,
                Ok(None) => return,
                Err(reason) => {
                    tracing::warn!(doc = %self.name, %conn, %reason, "awareness update refused");
                    out.closes.push((conn, CloseReason::Refused(reason)));
                    return;
                }
            },
            Source::Node(_) => (update, frame),
        };
        match self.awareness.apply_update_summary(update) {
            Ok(Some(summary)) => {
                self.everyone = None;
                for id in summary.added.iter().chain(&summary.updated) {
                    self.take_ownership(source, *id, true);
                }
                for id in &summary.removed {
                    self.take_ownership(source, *id, false);
                }
                if matches!(source, Source::Session(_)) && self.shared {
                    out.publish.push(frame.clone());
                }
                out.relay_awareness(frame, summary.all_changes());
            }
            Ok(None) => {}
            Err(error) => match source {
                Source::Session(conn) => {
                    tracing::warn!(doc = %self.name, %conn, %error, "awareness update rejected");
                    out.closes
                        .push((conn, CloseReason::BadMessage(error.to_string())));
                }
                Source::Node(node) => {
                    tracing::warn!(doc = %self.name, %node, %error,
                        "awareness update from another node rejected");
                }
            },
        }
    }

    /// What of a session's update may be applied: its own ids' entries (re-encoded if others'
    /// were dropped; `None` if nothing is left). `Err` if it breaks a bound.
    fn check(
        &self,
        conn: ConnId,
        mut update: AwarenessUpdate,
        frame: Bytes,
    ) -> Result<Option<(AwarenessUpdate, Bytes)>, String> {
        let max_bytes = self.config.max_awareness_bytes;
        if update.clients.values().any(|e| e.json.len() > max_bytes) {
            return Err(format!("awareness state over {max_bytes} bytes"));
        }
        let before = update.clients.len();
        update
            .clients
            .retain(|id, _| self.may_change(Source::Session(conn), *id));
        let dropped = before - update.clients.len();
        if dropped > 0 {
            tracing::debug!(doc = %self.name, %conn, dropped,
                "dropped awareness entries for client ids this session does not own");
        }
        let owned = self.by_session.get(&conn);
        let owned_now = owned.map_or(0, HashSet::len);
        let added = update
            .clients
            .iter()
            .filter(|(id, e)| e.json.as_ref() != "null" && owned.is_none_or(|o| !o.contains(*id)))
            .count();
        let max_clients = self.config.max_awareness_clients;
        if owned_now + added > max_clients {
            return Err(format!(
                "more than {max_clients} awareness clients on one connection"
            ));
        }
        if update.clients.is_empty() {
            return Ok(None);
        }
        let frame = if dropped > 0 {
            protocol::encode_awareness(&update)
        } else {
            frame
        };
        Ok(Some((update, frame)))
    }

    /// Records that `source` now owns (`present`) or no longer owns client `id`.
    fn take_ownership(&mut self, source: Source, id: ClientID, present: bool) {
        if let Some(previous) = self.owners.remove(&id) {
            match previous {
                Source::Session(conn) => {
                    if let Some(ids) = self.by_session.get_mut(&conn) {
                        ids.remove(&id);
                    }
                }
                Source::Node(node) => {
                    if let Some(ids) = self.by_node.get_mut(&node) {
                        ids.remove(&id);
                    }
                }
            }
        }
        if !present {
            return;
        }
        self.owners.insert(id, source);
        match source {
            Source::Session(conn) => self.by_session.entry(conn).or_default().insert(id),
            Source::Node(node) => self.by_node.entry(node).or_default().insert(id),
        };
    }

    /// A node just loaded the document: tell it who is here (through the fan-out).
    pub fn answer_node_query(&self, out: &mut Outgoing) {
        let local: Vec<ClientID> = self.by_session.values().flatten().copied().collect();
        if local.is_empty() {
            return;
        }
        match self.awareness.update_with_clients(local) {
            Ok(update) => out.publish.push(protocol::encode_awareness(&update)),
            Err(error) => tracing::warn!(doc = %self.name, %error, "could not encode awareness"),
        }
    }

    /// A session left: the states of the ids it owns go, and everyone (other nodes too) is told.
    pub fn session_left(&mut self, conn: ConnId, out: &mut Outgoing) {
        self.users.remove(&conn);
        let Some(gone) = self.by_session.remove(&conn) else {
            return;
        };
        let gone: Vec<ClientID> = gone.into_iter().collect();
        if let Some(frame) = self.remove_states(&gone) {
            if self.shared {
                out.publish.push(frame.clone());
            }
            out.relay_awareness(frame, gone);
        }
    }

    /// Another node left: its clients' states go (local sessions are told; nobody else needs to
    /// be, every node notices by itself).
    pub fn node_gone(&mut self, node: NodeId, out: &mut Outgoing) {
        let Some(gone) = self.by_node.remove(&node) else {
            return;
        };
        let gone: Vec<ClientID> = gone.into_iter().collect();
        if let Some(frame) = self.remove_states(&gone) {
            out.relay_awareness(frame, gone);
        }
    }

    /// Removes states (and their owners) and encodes the removal, if there was anything.
    fn remove_states(&mut self, gone: &[ClientID]) -> Option<Bytes> {
        if gone.is_empty() {
            return None;
        }
        self.everyone = None;
        for id in gone {
            self.owners.remove(id);
            self.awareness.remove_state(*id);
        }
        match self.awareness.update_with_clients(gone.iter().copied()) {
            Ok(update) => Some(protocol::encode_awareness(&update)),
            Err(error) => {
                tracing::warn!(doc = %self.name, %error, "could not encode removal");
                None
            }
        }
    }

    /// Turns the batch's awareness frames into what every session gets: one frame as
    /// received; several as one frame with the current states of every client they changed (a
    /// burst of cursor moves costs each session one frame, and only the latest position of each
    /// cursor is sent). Should that encoding fail, the frames as received.
    pub fn merge_relays(&self, out: &mut Outgoing) {
        if out.awareness_frames.len() < 2 {
            return;
        }
        let mut changed = std::mem::take(&mut out.awareness_changed);
        changed.sort_unstable();
        changed.dedup();
        match self.awareness.update_with_clients(changed) {
            Ok(update) => {
                let merged = out.awareness_frames.len();
                self.hooks
                    .emit(&self.name, |h| h.awareness_merged(&self.name, merged));
                out.awareness_frames = vec![protocol::encode_awareness(&update)];
            }
            Err(error) => {
                tracing::warn!(doc = %self.name, %error, "could not merge awareness relays");
            }
        }
    }
}

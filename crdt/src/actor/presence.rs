//! Presence: the document's awareness states, who announced which awareness client (a local
//! session or another node), and the relay of changes, several merged into one frame.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use yrs::sync::awareness::{Awareness, AwarenessUpdate};
use yrs::{ClientID, Doc};

use super::batch::Outgoing;
use crate::hooks::Hooks;
use crate::name::DocName;
use crate::outbox::{CloseReason, ConnId};
use crate::protocol;
use crate::remote::NodeId;

/// Where an awareness update came from.
#[derive(Clone, Copy)]
pub(super) enum Source {
    Session(ConnId),
    Node(NodeId),
}

/// The document's presence.
pub(super) struct Presence {
    name: DocName,
    hooks: Hooks,
    /// The states. Its document is a placeholder: awareness never reads document content, so
    /// presence does not share the document (which is rebuilt and replaced independently).
    awareness: Awareness,
    /// Awareness client ids each local session announced; removed when it leaves.
    by_session: HashMap<ConnId, HashSet<ClientID>>,
    /// Awareness client ids announced through other nodes, by node.
    by_node: HashMap<NodeId, HashSet<ClientID>>,
    /// Whether local changes are published to other nodes.
    shared: bool,
}

impl Presence {
    pub fn new(name: DocName, hooks: Hooks, shared: bool) -> Self {
        Presence {
            name,
            hooks,
            awareness: Awareness::new(Doc::new()),
            by_session: HashMap::new(),
            by_node: HashMap::new(),
            shared,
        }
    }

    /// Every state, for a newcomer (`None` if nobody is present).
    pub fn everyone(&self) -> Option<Bytes> {
        match self.awareness.update() {
            Ok(update) if !update.clients.is_empty() => Some(protocol::encode_awareness(&update)),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(doc = %self.name, %error, "could not encode awareness");
                None
            }
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
        let announced: Vec<(ClientID, bool)> = update
            .clients
            .iter()
            .map(|(id, entry)| (*id, entry.json.as_ref() != "null"))
            .collect();
        match self.awareness.apply_update_summary(update) {
            Ok(Some(summary)) => {
                let clients = match source {
                    Source::Session(conn) => self.by_session.entry(conn).or_default(),
                    Source::Node(node) => self.by_node.entry(node).or_default(),
                };
                for (id, present) in announced {
                    if present {
                        clients.insert(id);
                    } else {
                        clients.remove(&id);
                    }
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

    /// A session left: its clients' states go, and everyone (other nodes too) is told.
    pub fn session_left(&mut self, conn: ConnId, out: &mut Outgoing) {
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

    /// Removes states and encodes the removal, if there was anything to remove.
    fn remove_states(&mut self, gone: &[ClientID]) -> Option<Bytes> {
        if gone.is_empty() {
            return None;
        }
        for id in gone {
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

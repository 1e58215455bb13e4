//! The document's place in a cluster: [`Cluster`] subscribes to the fan-out before the document
//! loads, publishes what this node's sessions changed once it is durable (only a [`Sealed`]
//! batch can be published), tells the other nodes about a deletion, and decodes what they say
//! into what it asks of the document ([`Received`]).

use std::sync::Arc;

use bytes::Bytes;
use yrs::sync::awareness::AwarenessUpdate;

use super::commit::Sealed;
use crate::fanout::{Fanout, FanoutError};
use crate::inbox::RemoteInbox;
use crate::name::DocName;
use crate::protocol::{self, ClientMessage, IncomingUpdate};
use crate::remote::{NodeId, RemoteEvent, RemoteMessage};

/// What another node's event asks of the document.
pub(super) enum Received {
    /// Apply this update (stored by its node already: not stored or published again), written
    /// by these authors.
    Update(IncomingUpdate, Vec<Arc<str>>),
    /// A client of that node changed its presence.
    Awareness {
        from: NodeId,
        update: AwarenessUpdate,
        frame: Bytes,
    },
    /// That node just loaded the document and asks who is here.
    PresenceQuery,
    /// That node left the cluster.
    NodeGone(NodeId),
    /// Messages may have been lost: re-read the store.
    Resync,
    /// That node deleted the document.
    Deleted(NodeId),
    /// Nothing to do (logged).
    Nothing,
}

/// This document's link to the other nodes (inert on a single node).
pub(super) struct Cluster {
    name: DocName,
    generation: u64,
    fanout: Arc<dyn Fanout>,
    inbox: RemoteInbox,
}

impl Cluster {
    pub fn new(
        name: DocName,
        generation: u64,
        fanout: Arc<dyn Fanout>,
        inbox: RemoteInbox,
    ) -> Self {
        Cluster {
            name,
            generation,
            fanout,
            inbox,
        }
    }

    /// Whether other nodes share the document (and its store).
    pub fn is_shared(&self) -> bool {
        self.fanout.is_shared()
    }

    /// Starts receiving other nodes' messages. Called before loading: whatever another node
    /// publishes from then on reaches the inbox, and whatever it published before is in the
    /// store about to be read.
    pub async fn subscribe(&self) -> Result<(), FanoutError> {
        if !self.is_shared() {
            return Ok(());
        }
        self.fanout
            .subscribe(&self.name, self.generation, self.inbox.clone())
            .await
    }

    /// Asks the nodes that have the document loaded for their clients' presence.
    pub fn query_presence(&self) {
        if self.is_shared() {
            self.fanout.publish(
                &self.name,
                RemoteMessage::Protocol(protocol::encode_query_awareness()),
            );
        }
    }

    /// Publishes a durable batch: its presence frames and its own updates.
    pub fn publish(&self, sealed: &Sealed) {
        if !self.is_shared() {
            return;
        }
        for frame in sealed.publish().iter().cloned() {
            self.fanout
                .publish(&self.name, RemoteMessage::Protocol(frame));
        }
        if let Some(update) = sealed.local_update() {
            let message = RemoteMessage::Update {
                frame: protocol::encode_update(update),
                authors: sealed.authors().map(|a| a.to_string()).collect(),
            };
            self.fanout.publish(&self.name, message);
        }
    }

    /// Tells the other nodes the document was deleted.
    pub fn publish_deleted(&self) {
        if self.is_shared() {
            self.fanout.publish(&self.name, RemoteMessage::Deleted);
        }
    }

    /// Decodes what another node said (every decode guarded, as for a client's messages).
    pub fn receive(&self, event: RemoteEvent) -> Received {
        let (from, frame) = match event {
            RemoteEvent::NodeGone(node) => return Received::NodeGone(node),
            RemoteEvent::Resync => return Received::Resync,
            RemoteEvent::Message {
                from,
                message: RemoteMessage::Deleted,
            } => return Received::Deleted(from),
            RemoteEvent::Message {
                from,
                message: RemoteMessage::Protocol(frame),
            } => (from, (frame, Vec::new())),
            RemoteEvent::Message {
                from,
                message: RemoteMessage::Update { frame, authors },
            } => (from, (frame, authors)),
        };
        let (frame, authors) = frame;
        match protocol::decode_client_message(frame) {
            Ok(ClientMessage::Update(update)) => {
                let authors = authors.iter().map(|a| Arc::from(a.as_str())).collect();
                Received::Update(update, authors)
            }
            Ok(ClientMessage::Awareness { update, frame }) => Received::Awareness {
                from,
                update,
                frame,
            },
            Ok(ClientMessage::QueryAwareness) => Received::PresenceQuery,
            Ok(ClientMessage::SyncStep1(_) | ClientMessage::Auth | ClientMessage::Stateless(_)) => {
                tracing::debug!(doc = %self.name, node = %from, "ignoring a message from another node");
                Received::Nothing
            }
            Err(error) => {
                tracing::warn!(doc = %self.name, node = %from, %error,
                    "ignoring a malformed message from another node");
                Received::Nothing
            }
        }
    }

    /// Stops receiving (a newer actor's subscription is kept).
    pub fn unsubscribe(&self) {
        self.fanout.unsubscribe(&self.name, self.generation);
    }
}

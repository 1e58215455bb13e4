//! Fan-out between Weft nodes: the [`Fanout`] trait, the single-node [`LocalFanout`] and the
//! cluster implementation over Redis Streams ([`RedisFanout`]).
//!
//! A document actor subscribes before it loads the document, publishes what its own clients
//! change once it is durable, and receives what other nodes' clients changed as
//! [`DocCommand::Remote`] in its mailbox. On a single node everything happens inside the actor,
//! so [`LocalFanout`] does nothing.

mod redis_streams;

pub use redis_streams::{RedisFanout, RedisFanoutConfig};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::command::DocCommand;
use crate::name::DocName;

/// Identifies one running Weft process in a cluster.
pub type NodeId = Uuid;

/// What one node tells the others about a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteMessage {
    /// A y-protocols message: an update (already durable in the shared store), an awareness
    /// update, or a query for awareness states (sent by a node that just loaded the document).
    Protocol(Bytes),
    /// The document was deleted: close its sessions and unload it.
    Deleted,
}

/// Errors from a fan-out implementation.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// Redis reported an error or could not be reached.
    #[error("redis: {0}")]
    Redis(String),
}

/// Relays document changes between the nodes of a cluster.
#[async_trait]
pub trait Fanout: Send + Sync + 'static {
    /// Whether other nodes exist at all; when false the actor skips publishing.
    fn is_shared(&self) -> bool;

    /// This node's id (messages carry it, so a node never applies its own).
    fn node_id(&self) -> NodeId;

    /// Starts relaying other nodes' messages about `name` to `mailbox`. Everything published
    /// after this returns reaches the mailbox, so a caller that subscribes first and then loads
    /// the document from the shared store misses nothing.
    async fn subscribe(
        &self,
        name: &DocName,
        generation: u64,
        mailbox: mpsc::WeakSender<DocCommand>,
    ) -> Result<(), FanoutError>;

    /// Stops relaying to the actor of `generation` (a newer actor's subscription is kept).
    fn unsubscribe(&self, name: &DocName, generation: u64);

    /// Publishes a message to the other nodes. Never waits; failures are logged and counted.
    fn publish(&self, name: &DocName, message: RemoteMessage);

    /// Tells the other nodes this node is leaving, so they drop its clients' presence now.
    async fn leave(&self);
}

/// Single-node fan-out: there is nobody to tell.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFanout {
    node: NodeId,
}

impl LocalFanout {
    /// A fan-out for a server that is its own cluster.
    pub fn new() -> Self {
        LocalFanout {
            node: Uuid::new_v4(),
        }
    }
}

#[async_trait]
impl Fanout for LocalFanout {
    fn is_shared(&self) -> bool {
        false
    }

    fn node_id(&self) -> NodeId {
        self.node
    }

    async fn subscribe(
        &self,
        _name: &DocName,
        _generation: u64,
        _mailbox: mpsc::WeakSender<DocCommand>,
    ) -> Result<(), FanoutError> {
        Ok(())
    }

    fn unsubscribe(&self, _name: &DocName, _generation: u64) {}

    fn publish(&self, _name: &DocName, _message: RemoteMessage) {}

    async fn leave(&self) {}
}

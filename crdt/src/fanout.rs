//! Relaying documents between the nodes of a cluster: the [`Fanout`] trait a cluster backend
//! implements (`backends/redis` is one) and the single-node [`LocalFanout`].
//!
//! A document actor subscribes before it loads the document, publishes what its own clients
//! change once it is durable, and receives what other nodes' clients changed through the
//! [`RemoteInbox`] it subscribed with.

use async_trait::async_trait;

pub use crate::inbox::{Delivered, RemoteInbox};
use crate::name::DocName;
pub use crate::remote::{NodeId, RemoteEvent, RemoteMessage};

/// Errors from a fan-out backend.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// The backend could not be reached or refused.
    #[error("cluster fan-out unavailable: {0}")]
    Unavailable(String),
}

/// Relays document changes between the nodes of a cluster.
#[async_trait]
pub trait Fanout: Send + Sync + 'static {
    /// Whether other nodes exist at all; when false the actor skips publishing.
    fn is_shared(&self) -> bool;

    /// Starts handing other nodes' messages about `name` to `inbox`. Everything published after
    /// this returns reaches the inbox, so a caller that subscribes first and then loads the
    /// document from the shared store misses nothing.
    async fn subscribe(
        &self,
        name: &DocName,
        generation: u64,
        inbox: RemoteInbox,
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
pub struct LocalFanout;

#[async_trait]
impl Fanout for LocalFanout {
    fn is_shared(&self) -> bool {
        false
    }

    async fn subscribe(
        &self,
        _name: &DocName,
        _generation: u64,
        _inbox: RemoteInbox,
    ) -> Result<(), FanoutError> {
        Ok(())
    }

    fn unsubscribe(&self, _name: &DocName, _generation: u64) {}

    fn publish(&self, _name: &DocName, _message: RemoteMessage) {}

    async fn leave(&self) {}
}

//! What the nodes of a cluster tell one another about a document: [`RemoteMessage`] on the
//! wire between nodes, and [`RemoteEvent`], what a cluster backend hands a document.

use bytes::Bytes;
use uuid::Uuid;

/// Identifies one running Weft process in a cluster.
pub type NodeId = Uuid;

/// What one node tells the others about a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteMessage {
    /// A y-protocols message: an update (already durable in the shared store), an awareness
    /// update, or a query for awareness states (sent by a node that just loaded the document).
    Protocol(Bytes),
    /// An update frame (already durable in the shared store) and who wrote it, for the
    /// history of the nodes that apply it.
    Update {
        /// The y-protocols update frame.
        frame: Bytes,
        /// The authors of the updates it merges.
        authors: Vec<String>,
    },
    /// The document was deleted: close its sessions and unload it.
    Deleted,
}

/// What a cluster backend hands a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteEvent {
    /// Another node said something about this document.
    Message {
        /// The node it came from.
        from: NodeId,
        /// What it said.
        message: RemoteMessage,
    },
    /// Another node left the cluster: forget its clients' presence.
    NodeGone(NodeId),
    /// Messages may have been missed (the backend lost its connection): re-read the store.
    Resync,
}

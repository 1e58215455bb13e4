//! What flows between sessions and a document actor: commands in, frames out.

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::fanout::{NodeId, RemoteMessage};
use crate::protocol::ClientMessage;
use crate::store::StoreError;

/// Identifies one client connection (a WebSocket session) for its whole life.
pub type ConnId = Uuid;

/// A command in a document actor's mailbox.
pub enum DocCommand {
    /// A session joins: the actor queues SyncStep1 and the awareness states on `outbound`.
    Join {
        /// The joining connection.
        conn: ConnId,
        /// The session's bounded outgoing queue.
        outbound: mpsc::Sender<Outbound>,
        /// Whether the session may change the document.
        can_write: bool,
        /// Answered once the session is registered.
        reply: oneshot::Sender<Result<(), DocError>>,
    },
    /// A decoded message from a joined session.
    Message {
        /// The sending connection.
        conn: ConnId,
        /// The message.
        message: ClientMessage,
    },
    /// A session left; its awareness states are removed and the others told.
    Leave {
        /// The leaving connection.
        conn: ConnId,
    },
    /// Apply an update from outside any session (HTTP API); answered once durable and broadcast.
    ApplyUpdate {
        /// The update, lib0 v1 encoded; the actor decodes it.
        update: Bytes,
        /// Answered after the update is stored and broadcast.
        reply: oneshot::Sender<Result<(), DocError>>,
    },
    /// Read the document (HTTP API): the closure runs inside the actor with a read view.
    Read {
        /// Runs against the document; must be quick.
        read: Box<dyn FnOnce(&yrs::Doc) + Send>,
        /// Answered after `read` ran.
        reply: oneshot::Sender<Result<(), DocError>>,
    },
    /// Delete the document from the store, close every session and stop. The actor keeps the
    /// registry entry until the deletion is done, so no other actor can load the old state.
    Delete {
        /// Answered with whether anything was stored, once the actor has stopped.
        reply: oneshot::Sender<Result<bool, DocError>>,
    },
    /// A message from another node of the cluster about this document.
    Remote {
        /// The node it came from.
        from: NodeId,
        /// What it said.
        message: RemoteMessage,
    },
    /// Another node left the cluster: forget its clients' presence.
    NodeGone {
        /// The node that left.
        node: NodeId,
    },
    /// The fan-out may have missed messages: re-read the shared store and merge it in.
    Resync,
    /// Server shutdown: close every session and stop.
    Shutdown {
        /// Answered when the actor has stopped.
        reply: oneshot::Sender<Result<(), DocError>>,
    },
}

/// What a document actor hands a session to write.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// One complete y-protocols message: write it as one binary frame.
    Frame(Bytes),
    /// Close the connection for this reason.
    Close(CloseReason),
}

/// Why the document side closes a session. The server maps these to WebSocket close codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent something invalid.
    BadMessage(String),
    /// The client sent more than a limit allows.
    Refused(String),
    /// The document could not be loaded or stored; the client should retry later.
    Unavailable(String),
    /// The document was deleted.
    Deleted,
    /// The server is shutting down.
    ShuttingDown,
}

/// Errors a document operation can end with.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// The actor was unloading; the registry retries with a fresh actor.
    #[error("document is unloading")]
    Unloaded,
    /// The store failed.
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    /// The document is unavailable (failed to load, or stopped after an error).
    #[error("document unavailable: {0}")]
    Unavailable(String),
    /// The update was rejected (malformed, or over a limit).
    #[error("update refused: {0}")]
    Refused(String),
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
}

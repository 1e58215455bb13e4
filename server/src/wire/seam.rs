//! The wire-protocol seam: what a protocol must do for a connection to serve it.

use bytes::Bytes;
use weft_crdt::protocol::ClientMessage;
use weft_crdt::{CloseReason, DocName};

/// What one binary WebSocket message from the client amounts to.
#[derive(Debug)]
pub enum Incoming {
    /// A message for a document session open on this connection.
    Message {
        /// The document it is for.
        doc: DocName,
        /// The decoded, validated message.
        message: ClientMessage,
    },
}

/// Why a client's message could not be accepted: the connection closes with code 1007.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

/// What a document session ending means for the connection.
#[derive(Debug)]
pub enum SessionEnd {
    /// The whole connection ends (for this reason).
    Connection,
    /// Only that document's session ends; this frame (if any) tells the client.
    Session(Option<Bytes>),
}

/// One way of carrying y-protocols messages on a WebSocket (see the module comment of
/// `wire`). Called from the connection's poll function: every method returns at once.
pub trait WireProtocol: Send + 'static {
    /// A short name for logs and metrics (`y-websocket`).
    fn name(&self) -> &'static str;

    /// Decodes one complete binary message from the client.
    fn decode(&mut self, message: Bytes) -> Result<Incoming, WireError>;

    /// Frames `message`, which `doc` queued for this connection, for the socket.
    fn frame(&self, doc: &DocName, message: Bytes) -> Bytes;

    /// What it means for the connection that `doc`'s session ended for `reason`.
    fn session_ended(&self, doc: &DocName, reason: &CloseReason) -> SessionEnd;
}

//! The wire-protocol seam: what a protocol must do for a connection to serve it.
//!
//! A connection serves document sessions by *address*: the name its protocol gives a session
//! in its frames. For y-websocket the address is the document name from the URL; a Hocuspocus
//! provider names each document in every message (optionally with a session suffix, so one
//! socket may hold the same document twice).

use std::sync::Arc;

use bytes::Bytes;
use weft_crdt::protocol::ClientMessage;
use weft_crdt::{CloseReason, DocName};

/// What one binary WebSocket message from the client amounts to.
#[derive(Debug)]
pub enum Incoming {
    /// A message for the session at `address`.
    Message {
        /// The session it is for.
        address: Arc<str>,
        /// The decoded, validated message.
        message: ClientMessage,
    },
    /// The client asks to open document `doc` at `address`, with this token (Hocuspocus Auth).
    Open {
        /// Where the session will be.
        address: Arc<str>,
        /// The document.
        doc: DocName,
        /// The token the client sent (`None`: none).
        token: Option<String>,
    },
    /// The client asked to open `address`, which cannot be a document (a bad name): refused.
    Refuse {
        /// The address.
        address: Arc<str>,
        /// Why.
        reason: String,
    },
    /// The client closes the session at `address`; the connection's others go on.
    Close {
        /// The session.
        address: Arc<str>,
    },
    /// Nothing for a document (a keep-alive).
    Nothing,
}

/// One message framed for the socket: a small prefix of the protocol's own, then a body that
/// shares the document's frame (never copied per client: one large update broadcast to many
/// slow clients is held once).
#[derive(Debug, Clone)]
pub struct Framed {
    /// The protocol's bytes before the body (may be empty).
    pub prefix: Bytes,
    /// The rest, usually the document's frame itself.
    pub body: Bytes,
}

impl Framed {
    /// The message's whole length.
    pub fn len(&self) -> usize {
        self.prefix.len() + self.body.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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

    /// Frames `message`, which the document queued for the session at `address`, for the
    /// socket; `None`: this protocol has no such message (it is not sent).
    fn frame(&self, address: &str, message: Bytes) -> Option<Framed>;

    /// What it means for the connection that the session at `address` ended for `reason`.
    fn session_ended(&self, address: &str, reason: &CloseReason) -> SessionEnd;

    /// The frame telling the client that the session at `address` is open (and whether
    /// read-only), if the protocol has one.
    fn opened(&self, _address: &str, _read_only: bool) -> Option<Bytes> {
        None
    }

    /// The frame telling the client that opening `address` was refused, if the protocol has
    /// one (without one, a refusal ends the connection).
    fn denied(&self, _address: &str, _reason: &str) -> Option<Bytes> {
        None
    }

    /// Whether the client is told when each of its updates is durable.
    fn durable_acks(&self) -> bool {
        false
    }
}

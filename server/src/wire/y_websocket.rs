//! y-websocket: one document per socket (named by the URL path), each binary frame exactly one
//! y-protocols message, as the reference server and the `y-websocket` client speak it.

use std::sync::Arc;

use bytes::Bytes;
use weft_crdt::protocol::{decode_client_message, MSG_DURABLE, MSG_STATELESS};
use weft_crdt::{CloseReason, DocName};

use super::seam::{Framed, Incoming, SessionEnd, WireError, WireProtocol};

/// The y-websocket protocol for a connection to `doc`.
pub struct YWebsocket {
    address: Arc<str>,
}

impl YWebsocket {
    /// The protocol of a connection to `doc`.
    pub fn new(doc: &DocName) -> Self {
        YWebsocket {
            address: Arc::from(doc.as_str()),
        }
    }
}

impl WireProtocol for YWebsocket {
    fn name(&self) -> &'static str {
        "y-websocket"
    }

    fn decode(&mut self, message: Bytes) -> Result<Incoming, WireError> {
        let message = decode_client_message(message).map_err(|e| WireError(e.to_string()))?;
        Ok(Incoming::Message {
            address: self.address.clone(),
            message,
        })
    }

    fn frame(&self, _address: &str, message: Bytes) -> Option<Framed> {
        // Weft's own notices have no y-websocket form (and a stock client would log them as
        // unknown messages).
        match message.first() {
            Some(&MSG_DURABLE | &MSG_STATELESS) => None,
            _ => Some(Framed {
                prefix: Bytes::new(),
                body: message,
            }),
        }
    }

    fn session_ended(&self, _address: &str, _reason: &CloseReason) -> SessionEnd {
        // The socket is the session.
        SessionEnd::Connection
    }
}

//! y-websocket: one document per socket (named by the URL path), each binary frame exactly one
//! y-protocols message, as the reference server and the `y-websocket` client speak it.

use bytes::Bytes;
use weft_crdt::protocol::decode_client_message;
use weft_crdt::{CloseReason, DocName};

use super::seam::{Incoming, SessionEnd, WireError, WireProtocol};

/// The y-websocket protocol for a connection to `doc`.
pub struct YWebsocket {
    doc: DocName,
}

impl YWebsocket {
    /// The protocol of a connection to `doc`.
    pub fn new(doc: DocName) -> Self {
        YWebsocket { doc }
    }
}

impl WireProtocol for YWebsocket {
    fn name(&self) -> &'static str {
        "y-websocket"
    }

    fn decode(&mut self, message: Bytes) -> Result<Incoming, WireError> {
        let message = decode_client_message(message).map_err(|e| WireError(e.to_string()))?;
        Ok(Incoming::Message {
            doc: self.doc.clone(),
            message,
        })
    }

    fn frame(&self, _doc: &DocName, message: Bytes) -> Bytes {
        message
    }

    fn session_ended(&self, _doc: &DocName, _reason: &CloseReason) -> SessionEnd {
        // The socket is the session.
        SessionEnd::Connection
    }
}

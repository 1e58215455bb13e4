//! Wire protocols: how y-protocols messages travel on a WebSocket.
//!
//! The document engine speaks y-protocols messages (sync, awareness); a wire protocol frames
//! them on the socket and says which document each belongs to. [`WireProtocol`] is the seam;
//! [`YWebsocket`] (one document per socket, the message as the whole frame) is the first
//! implementation. A protocol that carries several documents on one socket (Hocuspocus) is one
//! more file here: its frames name their document, and the connection (`ws::connection`)
//! already serves any number of document sessions.

mod seam;
mod y_websocket;

pub use seam::{Incoming, SessionEnd, WireError, WireProtocol};
pub use y_websocket::YWebsocket;

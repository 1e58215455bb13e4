//! Wire protocols: how y-protocols messages travel on a WebSocket.
//!
//! The document engine speaks y-protocols messages (sync, awareness); a wire protocol frames
//! them on the socket and says which document session each belongs to. [`WireProtocol`] is the
//! seam; [`YWebsocket`] (one document per socket, the message as the whole frame) and
//! [`Hocuspocus`] (any number of documents per socket, each message addressed, with per-document
//! auth, durable acknowledgements and stateless messages) implement it. The connection
//! (`ws::connection`) serves any number of document sessions for either.

mod hocuspocus;
mod seam;
mod y_websocket;

pub use hocuspocus::Hocuspocus;
pub use seam::{Framed, Incoming, SessionEnd, WireError, WireProtocol};
pub use y_websocket::YWebsocket;

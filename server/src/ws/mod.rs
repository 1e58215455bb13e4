//! WebSocket connections: the checks before the upgrade ([`upgrade`]), the connection that
//! serves one socket and the document sessions on it ([`connection`]; opening and closing
//! sessions inside it for multi-document protocols in `connection/open.rs`), one session on it
//! (`slot`), and how it ends ([`close`]); `expiry` ends it when its token expires, `frame`
//! reads frame headers early. What travels on the socket is a wire protocol's business
//! (`crate::wire`).

pub mod close;
pub mod connection;
mod expiry;
mod frame;
mod slot;
pub mod upgrade;

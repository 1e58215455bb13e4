//! WebSocket connections: the checks before the upgrade ([`upgrade`]), the connection that
//! serves one socket and the document sessions on it ([`connection`]), and how it ends
//! ([`close`]). What travels on the socket is a wire protocol's business (`crate::wire`).

pub mod close;
pub mod connection;
pub mod upgrade;

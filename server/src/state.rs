//! What every request handler and session shares.

use tokio::sync::watch;
use weft_crdt::Registry;

use crate::config::ServerConfig;

/// Shared application state, handed to handlers as `web::Data<AppState>`.
pub struct AppState {
    /// The running configuration.
    pub config: ServerConfig,
    /// Loaded documents.
    pub registry: Registry,
    /// Flips to `true` when the server shuts down; sessions close with 1001.
    pub shutdown: watch::Receiver<bool>,
}

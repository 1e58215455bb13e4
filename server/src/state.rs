//! What every request handler and session shares.

use std::sync::Arc;

use tokio::sync::watch;
use weft_crdt::Registry;

use crate::auth::Authenticator;
use crate::config::ServerConfig;
use crate::limits::ConnectionLimits;
use crate::origin::{AllowedHosts, AllowedOrigins};
use crate::readiness::Readiness;

/// Shared application state, handed to handlers as `web::Data<AppState>`.
pub struct AppState {
    /// The running configuration.
    pub config: ServerConfig,
    /// Loaded documents.
    pub registry: Registry,
    /// Token verification; `None` when auth is off.
    pub auth: Option<Authenticator>,
    /// Connection caps and the penalty box.
    pub limits: Arc<ConnectionLimits>,
    /// Origins browsers may use the server from besides its own.
    pub origins: AllowedOrigins,
    /// With auth off, the names requests may give the server (DNS rebinding); `None` with
    /// auth on.
    pub hosts: Option<AllowedHosts>,
    /// The byte budget of large messages and bodies in flight.
    pub inflight: Arc<crate::inflight::InflightBytes>,
    /// The last readiness answer (`/readyz` checks the store at most once a second).
    pub readiness: Readiness,
    /// History work that takes CPU (rebuilding, comparing, restoring versions): a few at a
    /// time, so a flood of such requests cannot take every core from editing.
    pub history_work: Arc<tokio::sync::Semaphore>,
    /// Held by the restore in progress (restores are rare; one at a time keeps each one's
    /// `before` version the state it replaced).
    pub restoring: tokio::sync::Mutex<()>,
    /// Flips to `true` when the server starts shutting down (`/readyz` then answers 503).
    pub shutdown: watch::Receiver<bool>,
}

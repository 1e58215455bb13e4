//! Weft's network front end: the actix-web application, WebSocket connections and the wire
//! protocols they speak, the HTTP API, auth and configuration. The document engine is
//! `weft-crdt`; stores and the cluster fan-out are the crates under `backends/`.
//!
//! # Layout
//! - [`config`]: flags, environment variables, config file and defaults.
//! - [`startup`]: [`Application`], which opens the store (sled, or PostgreSQL with the
//!   `postgres` feature), joins the cluster (`redis` feature), binds, serves and shuts down.
//!   A new store backend is wired in here (`open_store`).
//! - [`ws`]: WebSocket connections: the checks before the upgrade, the connection that serves a
//!   socket and every document session on it, how it ends.
//! - [`wire`]: the wire-protocol seam ([`wire::WireProtocol`]) and its implementations,
//!   y-websocket and Hocuspocus (`/hocuspocus`, routed in `ws::upgrade`). A third protocol is a
//!   new file there plus its path in `ws::upgrade`.
//! - [`admin`]: tools for a stopped server's store: `weft fsck`, `migrate`, `export`, `import`.
//! - [`auth`]: JWT verification and issuing, per-document permissions.
//! - [`api`]: the HTTP document API under `/api`; [`versions`]: its version-history part
//!   (list, name, read, compare, restore).
//! - [`limits`]: connection caps (total, per document, address and user), the per-connection
//!   message rate, the penalty box for addresses sending invalid messages.
//! - [`origin`]: which web pages may use the server (`--allowed-origins`), and by which names
//!   (`--allowed-hosts`, DNS rebinding).
//! - [`inflight`]: one byte budget for every large message and body in flight at once.
//! - [`webhook`]: debounced change notifications, a document hook.
//! - [`metrics`]: the Prometheus recorder, `GET /metrics`, and the hook that counts documents.
//! - [`memory`]: returning freed memory to the OS after documents unload.
//! - [`routes`]: plain HTTP routes (health checks, 404); [`readiness`]: the store check behind
//!   `/readyz`, at most once a second.
//! - [`web`]: the embedded browser editor.
//! - [`error`]: HTTP error mapping.
//! - [`state`]: what handlers share.
//! - [`telemetry`]: logging setup.
//!
//! New document hooks implement `weft_crdt::DocHooks` and are added to the registry's
//! [`weft_crdt::Hooks`] in `startup`.

pub mod admin;
pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod inflight;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod origin;
pub mod readiness;
pub mod routes;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod versions;
pub mod web;
pub mod webhook;
pub mod wire;
pub mod ws;

pub use config::ServerConfig;
pub use startup::Application;

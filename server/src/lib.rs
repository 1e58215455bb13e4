//! Weft's network front end: the actix-web application, WebSocket sessions and configuration.
//!
//! # Layout
//! - [`config`]: flags, environment variables, config file and defaults.
//! - [`auth`]: JWT verification and issuing, per-document permissions.
//! - [`api`]: the HTTP document API under `/api`.
//! - [`limits`]: connection caps and the per-connection message rate.
//! - [`webhook`]: debounced change notifications.
//! - [`memory`]: returning freed memory to the OS after documents unload.
//! - [`metrics`]: the Prometheus recorder and `GET /metrics`.
//! - [`startup`]: [`Application`], which binds, serves and shuts down.
//! - [`session`]: the WebSocket upgrade: checks, joining the document.
//! - [`connection`]: one WebSocket connection, served by its response body.
//! - [`routes`]: plain HTTP routes (health checks, 404).
//! - [`web`]: the embedded browser editor.
//! - [`error`]: HTTP error mapping.
//! - [`state`]: what handlers share.
//! - [`telemetry`]: logging setup.

pub mod api;
pub mod auth;
pub mod config;
pub mod connection;
pub mod error;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod routes;
pub mod session;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod web;
pub mod webhook;

pub use config::ServerConfig;
pub use startup::Application;

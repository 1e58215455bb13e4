//! Weft's network front end: the actix-web application, WebSocket sessions and configuration.
//!
//! # Layout
//! - [`config`]: flags, environment variables and defaults.
//! - [`startup`]: [`Application`], which binds, serves and shuts down.
//! - [`session`]: the WebSocket upgrade and the per-connection loop.
//! - [`routes`]: plain HTTP routes (health checks, 404).
//! - [`web`]: the embedded browser editor.
//! - [`error`]: HTTP error mapping.
//! - [`state`]: what handlers share.
//! - [`telemetry`]: logging setup.

pub mod config;
pub mod error;
pub mod routes;
pub mod session;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod web;

pub use config::ServerConfig;
pub use startup::Application;

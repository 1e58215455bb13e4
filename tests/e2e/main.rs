//! End-to-end tests of the Weft server over real WebSocket connections and a real sled
//! directory. One test binary; each module covers one area.

mod api;
mod auth;
mod bad_input;
mod cluster;
mod config;
mod corruption;
mod crash;
mod helpers;
mod history;
mod history_trust;
mod hostile;
mod http;
mod load_smoke;
mod persistence;
mod process;
mod security_access;
mod security_data;
mod security_memory;
mod soak;
mod sync;
mod tools;

//! Weft's document core: everything about Yjs documents, nothing about HTTP.
//!
//! # Layout
//! - [`name`]: the validated document name used everywhere.
//! - [`protocol`]: the y-websocket wire protocol (decode client frames, encode server frames),
//!   a strict layer over yrs's `sync` codec.
//! - [`command`]: what sessions send a document actor and what it sends back.
//! - `actor` (private): the document actor, sole owner of a `yrs::Doc` and its `Awareness`;
//!   batches updates, persists them (group commit) before broadcasting one merged frame.
//! - [`registry`]: name -> actor, loading each document once and unloading idle ones.
//! - [`recovery`]: rebuilding documents from stored records; damaged records; store checks.
//! - [`store`]: the [`store::DocStore`] trait and the sled implementation.
//! - [`config`]: compaction thresholds, idle timeout, queue sizes.

mod actor;
pub mod command;
pub mod config;
pub mod name;
pub mod protocol;
pub mod recovery;
pub mod registry;
pub mod store;

pub use command::{CloseReason, ConnId, DocError, Outbound};
pub use config::DocConfig;
pub use name::DocName;
pub use registry::{DocHandle, Registry};
pub use store::{DocStore, SledStore};

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
//! - [`mailbox`]: a session's poll-based sender into its document's mailbox.
//! - [`recovery`]: rebuilding documents from stored records; damaged records; store checks.
//! - [`store`]: the [`store::DocStore`] trait and its sled (default), PostgreSQL (cluster) and
//!   in-memory implementations.
//! - [`fanout`]: the [`fanout::Fanout`] trait relaying changes between the nodes of a cluster:
//!   a no-op for a single node, Redis Streams for a cluster.
//! - [`config`]: compaction thresholds, idle timeout, queue sizes.

mod actor;
pub mod command;
pub mod config;
pub mod fanout;
pub mod mailbox;
pub mod name;
pub mod protocol;
pub mod recovery;
pub mod registry;
pub mod store;

pub use command::{CloseReason, ConnId, DocError, Outbound};
pub use config::DocConfig;
pub use mailbox::{DocStopped, SessionMailbox};
pub use name::DocName;
pub use registry::{DocHandle, Registry, RegistryOptions};
pub use store::{DocStore, SledStore};

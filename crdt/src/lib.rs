//! Weft's document engine: everything about Yjs documents, nothing about HTTP, and no storage
//! or cluster backend (those are crates of their own, under `backends/`).
//!
//! # Layout
//! - [`name`]: the validated document name used everywhere.
//! - [`protocol`]: the y-protocols sync and awareness messages (decode what a client sends,
//!   encode what the server sends), a strict layer over yrs's codec. How messages are framed on
//!   a socket (y-websocket, Hocuspocus) is the server's business (`server/src/wire/`).
//! - [`session`]: what a session sends its document: [`Session`], with backpressure.
//! - [`outbox`]: what a document sends a session: the [`SessionQueue`] / [`Outbox`] pair,
//!   bounded in frames and bytes, and why a session ended ([`CloseReason`]).
//! - [`registry`]: name -> running actor, loading each document once, unloading idle ones.
//! - `actor` (private): the document actor, sole owner of a `yrs::Doc`, split into parts that
//!   own their state: restore, the durable document and its log, the durable-before-send rule
//!   (`actor/commit.rs`), delivery, presence, cluster.
//! - `command` (private): what an actor's mailbox carries.
//! - [`hooks`]: [`DocHooks`], what a document reports (load/unload, join/leave, durable
//!   change, compaction, delivery figures); webhooks and metrics are implementations. A new
//!   hook is a new method there (with an empty default) and a call in the actor part that sees
//!   the event.
//! - [`store`]: the storage contract ([`DocStore`]: append, load, compact, create, exists,
//!   delete, list), the in-memory store and the conformance suite every backend runs. A new
//!   backend (S3, say) is a crate under `backends/` implementing [`DocStore`] in one file.
//! - [`fanout`]: the [`fanout::Fanout`] trait a cluster backend implements and the single-node
//!   [`fanout::LocalFanout`]; `remote`: what nodes tell one another; `inbox`: the narrow
//!   [`fanout::RemoteInbox`] a backend delivers into (all re-exported from [`fanout`]).
//! - [`history`]: version history read back from the store: the list, one version rebuilt,
//!   what changed between two versions and who changed it, the edit that restores a version
//!   (the actor part that keeps versions is `actor/history.rs`).
//! - [`recovery`]: rebuilding documents from stored records (damaged ones left out), catching a
//!   live document up with its store, checking a whole store (`weft fsck`).
//! - [`config`]: compaction thresholds, idle unload, mailbox and batch sizes, pacing.
//! - [`error`]: what a document operation can end with ([`DocError`]).

mod actor;
mod command;
pub mod config;
pub mod error;
pub mod fanout;
pub mod history;
pub mod hooks;
mod inbox;
pub mod name;
pub mod outbox;
pub mod protocol;
pub mod recovery;
pub mod registry;
mod remote;
pub mod session;
pub mod store;

pub use config::DocConfig;
pub use error::DocError;
pub use hooks::{DocHooks, Hooks};
pub use name::DocName;
pub use outbox::{
    session_queue, CloseReason, ConnId, Outbox, QueueLimits, SessionInfo, SessionQueue,
};
pub use registry::{Registry, RegistryOptions};
pub use session::{DocStopped, Session};
pub use store::{DocStore, MemoryStore};

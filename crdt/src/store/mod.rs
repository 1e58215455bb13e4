//! Durable storage of documents: the [`DocStore`] trait and its implementations.
//!
//! A stored document is a snapshot (one v1 update holding the whole state at some point) plus a
//! log of the v1 updates applied after it, each with a sequence number. Appends are durable when
//! they return (the document actor broadcasts only after that); compaction replaces the snapshot
//! and deletes the log entries it covers in one atomic step.

mod memory;
mod postgres;
mod sled_store;

pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use sled_store::SledStore;

use async_trait::async_trait;
use bytes::Bytes;

use crate::name::DocName;

/// One update in a document's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Position in the document's log; strictly increasing.
    pub seq: u64,
    /// The update, lib0 v1 encoded, exactly as it was applied.
    pub update: Bytes,
}

/// Everything stored for one document.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredDoc {
    /// The latest snapshot, if the document was ever compacted.
    pub snapshot: Option<Bytes>,
    /// Updates after the snapshot, in sequence order.
    pub log: Vec<LogEntry>,
    /// The sequence number the next append must use.
    pub next_seq: u64,
}

impl StoredDoc {
    /// Whether nothing at all is stored.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.log.is_empty()
    }

    /// Total bytes of the log entries.
    pub fn log_bytes(&self) -> u64 {
        self.log.iter().map(|e| e.update.len() as u64).sum()
    }
}

/// What [`DocStore::list`] reports about one document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DocInfo {
    /// The document's name.
    pub name: String,
    /// Bytes stored (snapshot plus log).
    pub size_bytes: u64,
    /// Last write, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

/// Errors from a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The sled database reported an error.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// PostgreSQL (or its connection pool) reported an error.
    #[error("postgres: {0}")]
    Postgres(String),
    /// A stored record has a layout this version cannot read.
    #[error("corrupt record for document {doc}: {reason}")]
    Corrupt {
        /// The document whose record is damaged.
        doc: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store's writer has stopped (the store is shutting down or failed).
    #[error("store writer is not running")]
    WriterGone,
    /// A blocking storage task failed to run to completion.
    #[error("storage task failed: {0}")]
    Task(String),
}

/// Durable storage for documents. Implementations must be safe to share between actors; each
/// document is only ever written by its own actor, one call at a time.
#[async_trait]
pub trait DocStore: Send + Sync + 'static {
    /// Reads a document's snapshot and log. A document never written loads as empty.
    async fn load(&self, name: &DocName) -> Result<StoredDoc, StoreError>;

    /// Appends `updates` with sequence numbers `first_seq..`; durable (flushed) on return.
    /// A store shared by several nodes ([`PostgresStore`]) orders the log itself and ignores
    /// `first_seq`.
    async fn append(
        &self,
        name: &DocName,
        first_seq: u64,
        updates: Vec<Bytes>,
    ) -> Result<(), StoreError>;

    /// Atomically stores `snapshot` and deletes every log entry with `seq < next_seq`.
    /// A store shared by several nodes instead folds `snapshot` together with every entry it
    /// holds (some may come from nodes this one has not heard from yet) and deletes exactly
    /// those entries, so nothing is ever dropped.
    async fn compact(
        &self,
        name: &DocName,
        snapshot: Vec<u8>,
        next_seq: u64,
    ) -> Result<(), StoreError>;

    /// Creates an empty document record; returns false if the document already exists.
    async fn create(&self, name: &DocName) -> Result<bool, StoreError>;

    /// Whether anything is stored for the document.
    async fn exists(&self, name: &DocName) -> Result<bool, StoreError>;

    /// Removes a document and its whole log; returns whether it existed.
    async fn delete(&self, name: &DocName) -> Result<bool, StoreError>;

    /// Lists every stored document.
    async fn list(&self) -> Result<Vec<DocInfo>, StoreError>;

    /// Flushes everything written so far to disk.
    async fn flush(&self) -> Result<(), StoreError>;
}

//! The storage contract: what a document store keeps, and the [`DocStore`] trait.
//!
//! A stored document is a snapshot (one Yjs v1 update holding the state up to some log
//! position) plus a log of the records appended after it, each at a position. Positions belong
//! to one document, start at 0 and are given by the store in the order the appends commit, so
//! a load always sees a prefix of the log: a record at a lower position is never committed after
//! one at a higher position has been read. That one rule is what lets several nodes share a
//! store: a node that compacts up to the end of what it loaded cannot drop a record it has not
//! seen. Records are opaque to the store: it never decodes them.
//!
//! Deleting leaves a tombstone: a deleted document stays deleted (no append, no load) until it
//! is created again, so a client that still holds it cannot quietly write it back.
//!
//! A document's history is a second, independent list: versions, each under a sequence number
//! the document engine chooses, each an opaque `meta` (small: read to list versions) and `data`
//! (read only to rebuild a version). Compaction never touches them; deleting the document
//! removes them with it. Two nodes keeping a version at once cannot both have the same number:
//! [`DocStore::add_version`] refuses a number that is taken.

use async_trait::async_trait;
use bytes::Bytes;

use crate::name::DocName;

/// A position in one document's log.
pub type LogPos = u64;

/// One record of a document's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its position.
    pub pos: LogPos,
    /// The record (a lib0 v1 Yjs update), exactly as appended.
    pub update: Bytes,
}

/// Everything stored for one document.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredDoc {
    /// The latest snapshot, if the document was ever compacted.
    pub snapshot: Option<Bytes>,
    /// The records after the snapshot, in position order.
    pub log: Vec<LogEntry>,
    /// The position the next append will get; everything below it is in `snapshot` or `log`.
    pub next_pos: LogPos,
}

impl StoredDoc {
    /// Whether nothing at all is stored.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.log.is_empty()
    }

    /// Total bytes of the log records.
    pub fn log_bytes(&self) -> u64 {
        self.log.iter().map(|e| e.update.len() as u64).sum()
    }

    /// Total bytes stored: snapshot plus log.
    pub fn size_bytes(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.len() as u64) + self.log_bytes()
    }
}

/// What [`DocStore::list`] reports about one document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DocInfo {
    /// The document's name.
    pub name: String,
    /// Bytes stored (snapshot plus log).
    pub size_bytes: u64,
    /// Last write, in milliseconds since the Unix epoch (0 if the backend does not track it).
    pub updated_at_ms: u64,
}

/// A sequence number of a document's version (see the module comment).
pub type VersionSeq = u64;

/// One version of a document as the store keeps it; both parts are opaque to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    /// Its number, unique within the document.
    pub seq: VersionSeq,
    /// What listing needs (time, label, authors...), small.
    pub meta: Bytes,
    /// What rebuilding the version needs, read only for that.
    pub data: Bytes,
}

/// Whether a document exists, as [`DocStore::status`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocStatus {
    /// Never created or written (or deleted before tombstones existed).
    Absent,
    /// Created or written, and not deleted since.
    Exists,
    /// Deleted; nothing can be written until it is created again.
    Deleted,
}

/// Why a store operation failed, whatever the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or is shutting down; trying again later may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data is unreadable.
    #[error("corrupt record for document {doc}: {reason}")]
    Corrupt {
        /// The document whose data is damaged.
        doc: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The document was deleted: create it again first.
    #[error("document {0} was deleted")]
    Deleted(String),
    /// Any other failure of the backend.
    #[error("store error: {0}")]
    Other(String),
}

/// Durable storage for documents. Shared by every document actor of a process (and, for a
/// shared backend, by every node of a cluster); each document is written by one actor per
/// node, one call at a time.
#[async_trait]
pub trait DocStore: Send + Sync + 'static {
    /// Everything stored for `doc`. A document never written loads as empty; a deleted one
    /// fails with [`StoreError::Deleted`].
    async fn load(&self, doc: &DocName) -> Result<StoredDoc, StoreError>;

    /// Appends `records`, in order and atomically, at the document's next positions (see the
    /// module comment) and returns the position after the last of them. Durable on return: a
    /// crash after it returns loses none of them. A deleted document refuses
    /// ([`StoreError::Deleted`]).
    async fn append(&self, doc: &DocName, records: Vec<Bytes>) -> Result<LogPos, StoreError>;

    /// Replaces the snapshot with `snapshot`, which holds every record below `upto`, and deletes
    /// those records, atomically. A call whose `upto` is not beyond the stored snapshot's changes
    /// nothing (another node compacted further already). A deleted document refuses.
    async fn compact(&self, doc: &DocName, snapshot: Bytes, upto: LogPos)
        -> Result<(), StoreError>;

    /// Records an empty document, or brings a deleted one back (empty); false (and nothing
    /// changes) if it exists already.
    async fn create(&self, doc: &DocName) -> Result<bool, StoreError>;

    /// Whether the document exists, was deleted, or neither.
    async fn status(&self, doc: &DocName) -> Result<DocStatus, StoreError>;

    /// Removes everything stored for the document, its versions included, and leaves a
    /// tombstone; whether anything existed.
    async fn delete(&self, doc: &DocName) -> Result<bool, StoreError>;

    /// Every document that exists, in name order.
    async fn list(&self) -> Result<Vec<DocInfo>, StoreError>;

    /// Every document that is deleted (has a tombstone), in name order: what a copy of the
    /// store must carry so that nothing deleted comes back (`weft migrate`, `export`).
    async fn deleted(&self) -> Result<Vec<String>, StoreError>;

    /// Keeps a version under `record.seq`, durably on return, unless that number is taken
    /// (`false`, nothing changes: another node kept a version there first). A deleted document
    /// refuses ([`StoreError::Deleted`]).
    async fn add_version(&self, doc: &DocName, record: VersionRecord) -> Result<bool, StoreError>;

    /// Every version's number and `meta`, in number order (empty for a document without any,
    /// or a deleted one).
    async fn versions(&self, doc: &DocName) -> Result<Vec<(VersionSeq, Bytes)>, StoreError>;

    /// The `data` of the versions numbered `from..=to` that exist, in number order.
    async fn version_data(
        &self,
        doc: &DocName,
        from: VersionSeq,
        to: VersionSeq,
    ) -> Result<Vec<(VersionSeq, Bytes)>, StoreError>;

    /// Removes the versions numbered in `drop` and stores `put` (replacing a version of the
    /// same number), atomically: a reader sees all of it or none. How retention folds old
    /// versions into a newer one. A deleted document refuses.
    async fn rewrite_versions(
        &self,
        doc: &DocName,
        drop: &[VersionSeq],
        put: Vec<VersionRecord>,
    ) -> Result<(), StoreError>;

    /// Whether the store works right now (for readiness checks).
    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

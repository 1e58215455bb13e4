//! Tunables of the document layer: compaction thresholds, idle unload, mailbox and batch sizes,
//! pacing. (A session's outgoing queue is sized by whoever creates it, see `session`.)

use std::time::Duration;

use crate::history::HistoryConfig;

/// How documents are kept in memory and in the store.
#[derive(Debug, Clone)]
pub struct DocConfig {
    /// Compact the log into a snapshot once it holds this many updates.
    pub compact_after_updates: u64,
    /// ... or once the log holds this many bytes.
    pub compact_after_bytes: u64,
    /// Unload a document this long after its last client left.
    pub idle_unload: Duration,
    /// Commands a document's mailbox holds before senders wait (backpressure on clients).
    pub mailbox: usize,
    /// Most commands handled as one batch (one store write, one merged broadcast).
    pub max_batch: usize,
    /// Updates that would grow a document's stored size (snapshot plus log) past this many
    /// bytes are refused.
    pub max_doc_bytes: u64,
    /// Longest an actor holds a batch back while its sessions are still writing earlier
    /// frames, so that updates arriving meanwhile share one frame (zero: never).
    pub coalesce_max: Duration,
    /// Broadcasts (updates, awareness) of a document with many sessions are at least this much
    /// per session apart (about what writing a frame to one session costs), so a busy document
    /// sends fewer, larger frames; an update arriving later than that goes out at once (zero:
    /// off).
    pub broadcast_pace: Duration,
    /// Largest awareness state (its JSON) one client may set, in bytes.
    pub max_awareness_bytes: usize,
    /// Most awareness client ids one session may own at once.
    pub max_awareness_clients: usize,
    /// How versions are kept (see [`crate::history`]).
    pub history: HistoryConfig,
}

impl Default for DocConfig {
    fn default() -> Self {
        DocConfig {
            compact_after_updates: 1000,
            compact_after_bytes: 4 * 1024 * 1024,
            idle_unload: Duration::from_secs(30),
            mailbox: 4096,
            max_batch: 1024,
            max_doc_bytes: 256 * 1024 * 1024,
            coalesce_max: Duration::from_millis(5),
            broadcast_pace: Duration::from_micros(15),
            max_awareness_bytes: 64 * 1024,
            max_awareness_clients: 16,
            history: HistoryConfig::default(),
        }
    }
}

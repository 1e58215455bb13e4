//! Document hooks: what a document tells the world about itself, for webhooks, metrics and
//! whatever an embedding application wants to hear.
//!
//! Hooks are called from inside the document actor, synchronously, and must return at once:
//! the actor never awaits a hook, so a hook that has work to do (an HTTP call, a database
//! write) hands it to a task of its own. A hook that panics is caught and logged; the document
//! carries on. Every method has an empty default, so an implementation names only what it needs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::name::DocName;
use crate::outbox::{ConnId, SessionInfo};
use crate::store::LogPos;

/// A durable change to a document: one batch of updates, stored as one record.
#[derive(Debug)]
pub struct Change<'a> {
    /// The stored record: the batch's updates merged into one Yjs v1 update (when yrs could
    /// not merge them, the first of several records; `records` says how many).
    pub update: &'a [u8],
    /// Updates in the batch.
    pub updates: usize,
    /// Records the batch was stored as (normally 1).
    pub records: usize,
    /// The log position after the batch.
    pub position: LogPos,
    /// Sessions whose updates are in the batch.
    pub sessions: &'a [ConnId],
    /// Whether the HTTP API contributed updates.
    pub from_api: bool,
    /// How long the durable write took.
    pub persist_time: Duration,
}

/// What a document reports; every method defaults to doing nothing.
pub trait DocHooks: Send + Sync + 'static {
    /// The document's actor started (it is loading the document).
    fn loaded(&self, _doc: &DocName) {}
    /// The document's actor stopped (unloaded, deleted, failed or shut down).
    fn unloaded(&self, _doc: &DocName) {}
    /// A session joined.
    fn joined(&self, _doc: &DocName, _session: &SessionInfo) {}
    /// A session left (or was closed).
    fn left(&self, _doc: &DocName, _session: &SessionInfo) {}
    /// A batch of updates is durable (and is about to be broadcast).
    fn changed(&self, _doc: &DocName, _change: &Change<'_>) {}
    /// The log was compacted into a snapshot of `snapshot_bytes`.
    fn compacted(&self, _doc: &DocName, _snapshot_bytes: u64) {}
    /// An update frame was queued for `receivers` sessions.
    fn broadcast(&self, _doc: &DocName, _receivers: usize) {}
    /// `merged` awareness messages were relayed as one frame.
    fn awareness_merged(&self, _doc: &DocName, _merged: usize) {}
    /// A session was closed because its outgoing queue was full.
    fn slow_client(&self, _doc: &DocName, _conn: ConnId) {}
}

/// Every hook of a registry, called in the order they were added.
#[derive(Clone, Default)]
pub struct Hooks {
    hooks: Vec<Arc<dyn DocHooks>>,
}

impl Hooks {
    /// No hooks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a hook (called after the ones added before it).
    pub fn with(mut self, hook: Arc<dyn DocHooks>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Calls `event` on every hook; a hook that panics is logged and skipped.
    pub(crate) fn emit(&self, doc: &DocName, event: impl Fn(&dyn DocHooks)) {
        for hook in &self.hooks {
            if catch_unwind(AssertUnwindSafe(|| event(hook.as_ref()))).is_err() {
                tracing::error!(doc = %doc, "a document hook panicked; ignored");
            }
        }
    }
}

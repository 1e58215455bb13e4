//! Loading a document without keeping its first clients waiting for the decode.
//!
//! A client asking with an empty state vector (a fresh browser tab) is answered straight from
//! the stored records (SyncStep2 = the one stored record as read, or all records merged), and
//! the document is decoded and rebuilt in memory right after, when the grace period ends or as
//! soon as a command needs the document. A record that turns out damaged then is skipped, and
//! the clients answered from the records are closed so that they reconnect and get the rebuilt
//! state. [`Restore`] keeps the records and those clients until then, and does the rebuild.

use std::panic::catch_unwind;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::batch::Outgoing;
use super::durable::DurableDoc;
use super::merge::merge_in_rounds;
use crate::command::{DocCommand, SessionMessage};
use crate::outbox::{CloseReason, ConnId};
use crate::protocol;
use crate::recovery::{self, Damage, Rebuilt};
use crate::store::StoredDoc;

/// How long a freshly loaded document waits before it rebuilds the in-memory document when
/// nothing needs it: for its first client's SyncStep1, then for that client's answer to be
/// written (the rebuild would compete with the write for the CPU).
pub(super) const RESTORE_GRACE: Duration = Duration::from_millis(5);

/// Stored records not yet applied to the document, and who was answered meanwhile.
#[derive(Default)]
pub(super) struct Restore {
    unrestored: Option<StoredDoc>,
    /// Sessions that joined before the document was rebuilt: they get the server's SyncStep1
    /// once it is.
    awaiting_step1: Vec<ConnId>,
    /// Sessions answered straight from the stored records (closed if those turn out damaged).
    answered_from_store: Vec<ConnId>,
    /// When the document is rebuilt if nothing needs it sooner.
    deadline: Option<tokio::time::Instant>,
}

impl Restore {
    /// Takes freshly loaded records. Returns the frame answering an empty state vector, when it
    /// can be made without rebuilding the document (`None`: rebuild now).
    pub fn begin(&mut self, stored: StoredDoc) -> Option<Bytes> {
        if stored.is_empty() {
            return None;
        }
        // The whole state in one SyncStep2: clients treat it as "synced".
        let records: Vec<&Bytes> = stored
            .snapshot
            .iter()
            .chain(stored.log.iter().map(|e| &e.update))
            .collect();
        let full_state = match records.as_slice() {
            // Exactly the bytes a new client needs, sent before they are decoded (decoding a
            // large document takes longer than reading and sending it).
            [one] => Some(protocol::encode_sync_step2(one)),
            // Merging decodes every record: one that is damaged fails it, and the document is
            // rebuilt (skipping that record) before anyone is answered.
            many => match catch_unwind(|| merge_in_rounds(many)) {
                Ok(Ok(merged)) => Some(protocol::encode_sync_step2(&merged)),
                _ => None,
            },
        };
        self.unrestored = Some(stored);
        self.deadline = Some(tokio::time::Instant::now() + RESTORE_GRACE);
        full_state
    }

    /// Whether records are waiting to be applied.
    pub fn is_pending(&self) -> bool {
        self.unrestored.is_some()
    }

    /// When to rebuild if nothing needs the document sooner (`None`: nothing to rebuild).
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.deadline.filter(|_| self.is_pending())
    }

    /// Whether `command` needs the document itself (so it must be rebuilt first).
    pub fn needs_document(command: &DocCommand) -> bool {
        match command {
            DocCommand::Join { .. } | DocCommand::Leave { .. } => false,
            DocCommand::Message { message, .. } => match message {
                SessionMessage::SyncStep1(state_vector) => !state_vector.is_empty(),
                SessionMessage::Awareness { .. }
                | SessionMessage::QueryAwareness
                | SessionMessage::Stateless(_) => false,
            },
            _ => true,
        }
    }

    /// A session joined before the rebuild: it gets the server's SyncStep1 after it.
    pub fn await_step1(&mut self, conn: ConnId) {
        self.awaiting_step1.push(conn);
    }

    /// A session was answered from the stored records.
    pub fn answered_from_store(&mut self, conn: ConnId) {
        if self.answered_from_store.is_empty() {
            // The first answer from the records: rebuild once it has been written (or as soon as
            // a command needs the document).
            self.deadline = Some(tokio::time::Instant::now() + RESTORE_GRACE);
        }
        self.answered_from_store.push(conn);
    }

    /// Rebuilds the document from the kept records (damaged ones are left out) into `doc`.
    /// Returns what that produced for the sessions, and the damage: the server's SyncStep1 for
    /// those that joined meanwhile, and, if records were damaged, a close for those answered
    /// from them (they reconnect and get the rebuilt state). `None` if nothing was pending.
    pub fn finish(&mut self, doc: &mut DurableDoc) -> Option<(Outgoing, Vec<Damage>)> {
        let stored = self.unrestored.take()?;
        self.deadline = None;
        let started = Instant::now();
        let Rebuilt {
            doc: rebuilt,
            damage,
        } = recovery::rebuild(&stored);
        doc.install(rebuilt);
        tracing::debug!(doc = %doc.name(), elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "document rebuilt");
        let mut out = Outgoing::default();
        if !damage.is_empty() {
            doc.set_full_state(None);
            for conn in self.answered_from_store.drain(..) {
                out.closes.push((
                    conn,
                    CloseReason::Unavailable("stored data was damaged; reconnect".into()),
                ));
            }
        }
        self.answered_from_store.clear();
        let state_vector = doc.state_vector();
        for conn in self.awaiting_step1.drain(..) {
            out.reply(conn, protocol::encode_sync_step1(&state_vector));
        }
        Some((out, damage))
    }
}

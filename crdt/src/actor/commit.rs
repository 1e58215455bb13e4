//! The rule this whole design rests on: **nothing a batch produced leaves the actor before the
//! batch's updates are durable.**
//!
//! Delivery and the cluster fan-out accept only a [`Sealed`] batch, and the only way to get one
//! is [`commit`]: it merges the batch's updates into one record, appends it to the store and
//! waits for the append (durable on return, by the store contract). A batch without updates has
//! nothing to wait for. A batch whose append fails is handed back unsent: the caller stops the
//! document, whose in-memory state is then ahead of the store and must not be served.

use std::time::Instant;

use bytes::Bytes;

use super::batch::Outgoing;
use super::durable::DurableDoc;
use crate::error::DocError;
use crate::hooks::{Change, Hooks};
use crate::outbox::CloseReason;
use crate::store::StoreError;

/// A batch whose updates are durable: safe to send.
pub(super) struct Sealed {
    out: Outgoing,
    /// The batch's updates as one update (the stored record), if it had any.
    local_update: Option<Bytes>,
}

impl Sealed {
    /// What the batch produced, and its updates as one (stored) update.
    pub fn into_parts(self) -> (Outgoing, Option<Bytes>) {
        (self.out, self.local_update)
    }

    /// The batch's own updates as one update, if it had any.
    pub fn local_update(&self) -> Option<&Bytes> {
        self.local_update.as_ref()
    }

    /// Who wrote the batch's own updates.
    pub fn authors(&self) -> impl Iterator<Item = &std::sync::Arc<str>> {
        self.out.local_authors.iter()
    }

    /// Frames this batch has for the other nodes of a cluster.
    pub fn publish(&self) -> &[Bytes] {
        &self.out.publish
    }
}

/// How a failed append ends the document: why its sessions are closed, and what its callers
/// are told. (Deleted on another node, whose message has not arrived: the document is gone.)
pub(super) fn failed(error: &StoreError) -> (CloseReason, impl Fn() -> DocError + '_) {
    let deleted = matches!(error, StoreError::Deleted(_));
    let reason = match deleted {
        true => CloseReason::Deleted,
        false => CloseReason::Unavailable(format!("storage failed: {error}")),
    };
    let refusal = move || match deleted {
        true => DocError::Deleted,
        false => DocError::Unavailable(format!("storage failed: {error}")),
    };
    (reason, refusal)
}

/// Makes the batch's updates durable (see the module comment).
pub(super) async fn commit(
    doc: &mut DurableDoc,
    hooks: &Hooks,
    out: Outgoing,
) -> Result<Sealed, Box<(StoreError, Outgoing)>> {
    if !out.has_updates() {
        // Nothing to store (only presence, answers, or updates another node stored).
        return Ok(Sealed {
            out,
            local_update: None,
        });
    }
    // The whole batch is one log record: one key to write instead of one per update (the
    // store's cost is per record), and the same bytes the broadcast frame carries.
    let merged = doc.merge_updates(&out.updates);
    let records = match &merged {
        Some(merged) => vec![merged.clone()],
        None => out.updates.clone(),
    };
    let started = Instant::now();
    let position = match doc.append(records.clone()).await {
        Ok(position) => position,
        Err(error) => return Err(Box::new((error, out))),
    };
    let sessions: Vec<_> = out.update_sources.iter().copied().collect();
    let change = Change {
        update: &records[0],
        updates: out.updates.len(),
        records: records.len(),
        position,
        sessions: &sessions,
        from_api: !out.api_replies.is_empty(),
        persist_time: started.elapsed(),
    };
    hooks.emit(doc.name(), |h| h.changed(doc.name(), &change));
    // If yrs could not merge the updates, the state they all produced stands in for them.
    let local_update = merged.unwrap_or_else(|| Bytes::from(doc.encode_diff(&Default::default())));
    Ok(Sealed {
        out,
        local_update: Some(local_update),
    })
}

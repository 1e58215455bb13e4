//! Rebuilding a document from its stored records, and checking a whole store (`weft fsck`).
//!
//! A record that does not decode as a Yjs update (or makes the decoder panic) is reported with
//! the document's name and skipped: one damaged record must not make a document, let alone the
//! server, unusable.

use std::panic::{catch_unwind, AssertUnwindSafe};

use yrs::updates::decoder::Decode;
use yrs::{Doc, Transact, Update};

use crate::name::DocName;
use crate::store::{DocStore, StoreError, StoredDoc};

/// One record that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// `snapshot` or `log entry <seq>`.
    pub record: String,
    /// Why it was skipped.
    pub reason: String,
}

/// Applies a stored document's snapshot and log to `doc`, skipping damaged records.
pub fn rebuild_into(doc: &Doc, stored: &StoredDoc) -> Vec<Damage> {
    let mut damage = Vec::new();
    let mut txn = doc.transact_mut();
    let records = stored
        .snapshot
        .iter()
        .map(|s| ("snapshot".to_string(), s))
        .chain(
            stored
                .log
                .iter()
                .map(|e| (format!("log entry {}", e.seq), &e.update)),
        );
    for (record, bytes) in records {
        let applied = catch_unwind(AssertUnwindSafe(|| {
            Update::decode_v1(bytes)
                .map_err(|e| format!("not a Yjs update: {e}"))
                .and_then(|u| txn.apply_update(u).map_err(|e| format!("rejected: {e}")))
        }));
        let reason = match applied {
            Ok(Ok(())) => continue,
            Ok(Err(reason)) => reason,
            Err(_) => "the decoder panicked".to_string(),
        };
        damage.push(Damage { record, reason });
    }
    damage
}

/// What `fsck` found for one document.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DocReport {
    /// The document.
    pub name: String,
    /// Records that could not be applied (empty when healthy).
    pub damage: Vec<Damage>,
}

/// Loads and rebuilds every stored document; returns a report per document.
pub async fn check_store(store: &dyn DocStore) -> Result<Vec<DocReport>, StoreError> {
    let mut reports = Vec::new();
    for info in store.list().await? {
        let damage = match DocName::new(&info.name) {
            Err(e) => vec![Damage {
                record: "name".into(),
                reason: e.to_string(),
            }],
            Ok(name) => match store.load(&name).await {
                Ok(stored) => rebuild_into(&Doc::new(), &stored),
                Err(e) => vec![Damage {
                    record: "load".into(),
                    reason: e.to_string(),
                }],
            },
        };
        reports.push(DocReport {
            name: info.name,
            damage,
        });
    }
    Ok(reports)
}

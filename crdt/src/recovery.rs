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
    let (records, mut damage) = decode_records(stored);
    damage.extend(apply_records(doc, records));
    damage
}

/// A stored record, decoded and ready to apply.
pub struct DecodedRecord {
    /// `snapshot` or `log entry <seq>`.
    pub record: String,
    /// The decoded update.
    pub update: Update,
}

/// Decodes a stored document's snapshot and log (in order), setting aside the records that do
/// not decode.
pub fn decode_records(stored: &StoredDoc) -> (Vec<DecodedRecord>, Vec<Damage>) {
    let mut decoded = Vec::with_capacity(stored.log.len() + 1);
    let mut damage = Vec::new();
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
        match catch_unwind(AssertUnwindSafe(|| Update::decode_v1(bytes))) {
            Ok(Ok(update)) => decoded.push(DecodedRecord { record, update }),
            Ok(Err(e)) => damage.push(Damage {
                record,
                reason: format!("not a Yjs update: {e}"),
            }),
            Err(_) => damage.push(Damage {
                record,
                reason: "the decoder panicked".to_string(),
            }),
        }
    }
    (decoded, damage)
}

/// Applies decoded records to `doc` in one transaction, setting aside the ones yrs rejects.
pub fn apply_records(doc: &Doc, records: Vec<DecodedRecord>) -> Vec<Damage> {
    let mut damage = Vec::new();
    let mut txn = doc.transact_mut();
    for DecodedRecord { record, update } in records {
        let reason = match catch_unwind(AssertUnwindSafe(|| txn.apply_update(update))) {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => format!("rejected: {e}"),
            Err(_) => "applying it panicked".to_string(),
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

//! Rebuilding documents from stored records, catching a live document up with its store, and
//! checking a whole store (`weft fsck`).
//!
//! A record that does not decode as a Yjs update, that yrs rejects, or that makes yrs panic is
//! reported with the document's name and left out: one damaged record must not make a document,
//! let alone the server, unusable. yrs can reject an update after integrating part of it, so a
//! rejected record is never left in a document: the document is rebuilt without it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

use crate::name::DocName;
use crate::store::{DocStore, StoreError, StoredDoc};

/// One record that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// `snapshot` or `log entry <position>`.
    pub record: String,
    /// Why it was left out.
    pub reason: String,
}

/// A document rebuilt from its records.
pub struct Rebuilt {
    /// The document, holding every record that applies.
    pub doc: Doc,
    /// The records left out.
    pub damage: Vec<Damage>,
}

/// Builds a fresh document from a stored document's snapshot and log, leaving damaged records
/// out (see the module comment).
pub fn rebuild(stored: &StoredDoc) -> Rebuilt {
    let records: Vec<(String, &[u8])> = stored
        .snapshot
        .iter()
        .map(|s| ("snapshot".to_string(), &s[..]))
        .chain(
            stored
                .log
                .iter()
                .map(|e| (format!("log entry {}", e.pos), &e.update[..])),
        )
        .collect();
    let mut damage = Vec::new();
    let mut good: Vec<(&str, &[u8])> = Vec::with_capacity(records.len());
    let mut decoded = Vec::with_capacity(records.len());
    for (record, bytes) in &records {
        match decode(bytes) {
            Ok(update) => {
                good.push((record, bytes));
                decoded.push(update);
            }
            Err(reason) => damage.push(Damage {
                record: record.clone(),
                reason,
            }),
        }
    }
    // Usually every record applies: all of them in one transaction, decoded once.
    let doc = Doc::new();
    let applied = catch_unwind(AssertUnwindSafe(|| {
        let mut txn = doc.transact_mut();
        decoded
            .into_iter()
            .all(|update| txn.apply_update(update).is_ok())
    }));
    if matches!(applied, Ok(true)) {
        return Rebuilt { doc, damage };
    }
    // Something was rejected or panicked, possibly half applied: apply them one transaction
    // at a time to find the culprit, then start over without it, until every record left
    // applies cleanly.
    loop {
        let doc = Doc::new();
        let mut culprit = None;
        for (i, (record, bytes)) in good.iter().enumerate() {
            if let Err(reason) = apply_all(&doc, &[(record, bytes)]) {
                culprit = Some((i, reason));
                break;
            }
        }
        match culprit {
            None => return Rebuilt { doc, damage },
            Some((i, reason)) => {
                let (record, _) = good.remove(i);
                damage.push(Damage {
                    record: record.to_string(),
                    reason,
                });
            }
        }
    }
}

fn decode(bytes: &[u8]) -> Result<Update, String> {
    match catch_unwind(AssertUnwindSafe(|| Update::decode_v1(bytes))) {
        Ok(Ok(update)) => Ok(update),
        Ok(Err(e)) => Err(format!("not a Yjs update: {e}")),
        Err(_) => Err("the decoder panicked".to_string()),
    }
}

/// Applies `records` to `doc` in one transaction; the reason of the first failure (the
/// transaction's commit included, which can panic too).
fn apply_all(doc: &Doc, records: &[(&str, &[u8])]) -> Result<(), String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut txn = doc.transact_mut();
        for (_, bytes) in records {
            let update = decode(bytes)?;
            txn.apply_update(update)
                .map_err(|e| format!("rejected: {e}"))?;
        }
        Ok(())
    }));
    match outcome {
        Ok(result) => result,
        Err(_) => Err("applying it panicked".to_string()),
    }
}

/// What `stored` holds beyond `live` (a state vector), as one update to apply to the live
/// document: the stored records are rebuilt into a scratch document (damaged ones left out)
/// and encoded against `live`, so a damaged record never touches the live document. The update
/// carries the stored document's whole delete set (a deletion does not show in a state
/// vector); the damage found.
pub fn beyond(live: &StateVector, stored: &StoredDoc) -> (Vec<u8>, Vec<Damage>) {
    let Rebuilt { doc, damage } = rebuild(stored);
    let encoded = catch_unwind(AssertUnwindSafe(|| {
        doc.transact().encode_state_as_update_v1(live)
    }))
    .unwrap_or_else(|_| {
        // yrs cannot always encode pending updates (see `actor::durable`): the integrated part.
        doc.transact().encode_diff_v1(live)
    });
    (encoded, damage)
}

/// Whether the document state `a` (a Yjs v1 update) holds everything `b` holds: applying `b`
/// to a document built from `a` changes nothing. `false` if either does not decode or apply.
pub fn covers(a: &[u8], b: &[u8]) -> bool {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let doc = Doc::new();
        doc.transact_mut()
            .apply_update(Update::decode_v1(a).ok()?)
            .ok()?;
        let mut txn = doc.transact_mut();
        txn.apply_update(Update::decode_v1(b).ok()?).ok()?;
        Some(txn.insert_set().is_empty() && txn.delete_set().is_empty())
    }));
    matches!(outcome, Ok(Some(true)))
}

/// Whether two document states hold the same content (each covers the other).
pub fn same_state(a: &[u8], b: &[u8]) -> bool {
    covers(a, b) && covers(b, a)
}

/// Logs stored records that were left out because they do not decode or apply.
pub fn log_damage(doc: &DocName, damage: &[Damage]) {
    for damage in damage {
        tracing::error!(doc = %doc, record = %damage.record, reason = %damage.reason,
            "stored record is damaged; skipped (run `weft fsck` to list damaged documents)");
    }
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
                Ok(stored) => rebuild(&stored).damage,
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

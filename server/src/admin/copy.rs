//! One document's whole state out of a store and into another, verified, with its version
//! history; and a deletion (tombstone) carried over, so that a copied store never brings a
//! deleted document back.

use bytes::Bytes;
use weft_crdt::recovery::{self, Damage, Rebuilt};
use weft_crdt::store::StoreError;
use weft_crdt::{DocName, DocStore};
use yrs::{ReadTxn, StateVector, Transact};

/// Why a document could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// What was written does not read back as what was read.
    #[error("document {0}: the copy does not hold the same content")]
    Mismatch(String),
    /// The destination has content and merging was not asked for.
    #[error("document {0} already has content in the destination (pass --merge to merge)")]
    Exists(String),
}

/// A document's whole state, as one Yjs v1 update.
pub struct DocState {
    /// The state (an empty document encodes as two zero bytes).
    pub state: Vec<u8>,
    /// Whether the document is empty (created, nothing written).
    pub empty: bool,
    /// Stored records left out because they are damaged.
    pub damage: Vec<Damage>,
}

/// Reads and rebuilds a document (damaged records are left out and reported).
pub async fn read(store: &dyn DocStore, name: &DocName) -> Result<DocState, StoreError> {
    let stored = store.load(name).await?;
    let Rebuilt { doc, damage } = recovery::rebuild(&stored);
    let state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    // Nothing stored, or nothing but the snapshot of an empty document (two zero bytes).
    let empty = stored.log.is_empty() && stored.snapshot.as_ref().is_none_or(|s| s.len() <= 2);
    Ok(DocState {
        state,
        empty,
        damage,
    })
}

/// Whether the destination holds content for `name` already.
pub async fn has_content(store: &dyn DocStore, name: &DocName) -> Result<bool, StoreError> {
    Ok(!store.load(name).await?.is_empty())
}

/// Refuses (`Exists`) if any of `names` already has content in `store`: without `--merge`,
/// a copy writes nothing over existing content (checked before anything is written).
pub async fn refuse_existing<'a>(
    store: &dyn DocStore,
    names: impl IntoIterator<Item = &'a DocName>,
) -> Result<(), CopyError> {
    for name in names {
        if has_content(store, name).await? {
            return Err(CopyError::Exists(name.to_string()));
        }
    }
    Ok(())
}

/// Writes `state` as document `name` (created empty, or one record compacted into a snapshot),
/// then reads it back and checks it holds everything `state` holds.
pub async fn write(
    store: &dyn DocStore,
    name: &DocName,
    state: &DocState,
) -> Result<(), CopyError> {
    if state.empty {
        store.create(name).await?;
    } else {
        let record = Bytes::from(state.state.clone());
        let upto = store.append(name, vec![record.clone()]).await?;
        let merged = read(store, name).await?;
        store.compact(name, Bytes::from(merged.state), upto).await?;
    }
    let back = read(store, name).await?;
    let exists = store.status(name).await? == weft_crdt::store::DocStatus::Exists;
    if !exists || !recovery::covers(&back.state, &state.state) {
        return Err(CopyError::Mismatch(name.to_string()));
    }
    Ok(())
}

/// Copies every version of `name` from `from` into `to` (each under its number; a number the
/// destination already has, which only `--merge` can meet, keeps the destination's), then
/// checks each reads back as it was read. Returns how many were copied.
pub async fn copy_versions(
    from: &dyn DocStore,
    to: &dyn DocStore,
    name: &DocName,
) -> Result<usize, CopyError> {
    let metas = from.versions(name).await?;
    let Some(last) = metas.last().map(|(seq, _)| *seq) else {
        return Ok(0);
    };
    let data: std::collections::HashMap<u64, Bytes> = from
        .version_data(name, 0, last)
        .await?
        .into_iter()
        .collect();
    let mut copied = Vec::new();
    for (seq, meta) in metas {
        let Some(data) = data.get(&seq).cloned() else {
            continue; // Rewritten by retention while being read: not part of the source now.
        };
        let record = weft_crdt::store::VersionRecord { seq, meta, data };
        if to.add_version(name, record.clone()).await? {
            copied.push(record);
        }
    }
    let back: std::collections::HashMap<u64, Bytes> =
        to.versions(name).await?.into_iter().collect();
    let back_data: std::collections::HashMap<u64, Bytes> =
        to.version_data(name, 0, last).await?.into_iter().collect();
    for record in &copied {
        if back.get(&record.seq) != Some(&record.meta)
            || back_data.get(&record.seq) != Some(&record.data)
        {
            return Err(CopyError::Mismatch(format!(
                "{name} (version {})",
                record.seq
            )));
        }
    }
    Ok(copied.len())
}

/// What carrying a deletion into a store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The destination now holds a tombstone for the document.
    Deleted,
    /// The destination had content under that name and merging was asked for: kept.
    Kept,
}

/// The names deleted in `store` that are valid document names (others are skipped, warned).
pub async fn tombstones(store: &dyn DocStore) -> Result<Vec<DocName>, StoreError> {
    Ok(store
        .deleted()
        .await?
        .into_iter()
        .filter_map(|name| match DocName::new(&name) {
            Ok(name) => Some(name),
            Err(error) => {
                tracing::warn!(doc = ?name, %error, "skipping a tombstone with an invalid name");
                None
            }
        })
        .collect())
}

/// Carries the deletion of `name` into `store`: a tombstone, unless the destination has content
/// under that name and `merge` is set (then its content is kept).
pub async fn write_deletion(
    store: &dyn DocStore,
    name: &DocName,
    merge: bool,
) -> Result<Deletion, CopyError> {
    if has_content(store, name).await? {
        if merge {
            return Ok(Deletion::Kept);
        }
        return Err(CopyError::Exists(name.to_string()));
    }
    store.delete(name).await?;
    if store.status(name).await? != weft_crdt::store::DocStatus::Deleted {
        return Err(CopyError::Mismatch(name.to_string()));
    }
    Ok(Deletion::Deleted)
}

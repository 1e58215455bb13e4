//! Reading history: the list of a document's versions, and one version rebuilt (as one Yjs
//! update, or as a `yrs::Doc`) from its chain, the versions since the nearest full one.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use yrs::updates::decoder::Decode;
use yrs::{Doc, Options, Transact, Update};

use super::record::{VersionData, VersionMeta};
use crate::name::DocName;
use crate::store::{DocStore, StoreError, VersionSeq};

/// Why a version could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// No version has that number.
    #[error("no such version")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored history is damaged, or yrs could not rebuild it.
    #[error("version history unreadable: {0}")]
    Unreadable(String),
}

/// Every version of `doc`, in number order (oldest first).
pub async fn list(store: &dyn DocStore, doc: &DocName) -> Result<Vec<VersionMeta>, HistoryError> {
    store
        .versions(doc)
        .await?
        .into_iter()
        .map(|(seq, meta)| VersionMeta::decode(seq, &meta).map_err(HistoryError::Unreadable))
        .collect()
}

/// The versions `version` is rebuilt from, oldest first: from the nearest full version at or
/// before it (or the first version) up to it, each with its data.
pub async fn chain(
    store: &dyn DocStore,
    doc: &DocName,
    metas: &[VersionMeta],
    version: VersionSeq,
) -> Result<Vec<(VersionMeta, VersionData)>, HistoryError> {
    let upto: Vec<&VersionMeta> = metas.iter().filter(|m| m.seq <= version).collect();
    if upto.last().map(|m| m.seq) != Some(version) {
        return Err(HistoryError::NotFound);
    }
    let start = upto
        .iter()
        .rev()
        .find(|m| m.full)
        .or(upto.first())
        .map_or(version, |m| m.seq);
    let data = store.version_data(doc, start, version).await?;
    let mut chain = Vec::with_capacity(data.len());
    for (seq, bytes) in data {
        let Some(meta) = metas.iter().find(|m| m.seq == seq) else {
            continue; // Added since the list was read: not part of this chain.
        };
        let data = VersionData::decode(&bytes)
            .map_err(|e| HistoryError::Unreadable(format!("version {seq}: {e}")))?;
        chain.push((meta.clone(), data));
    }
    if chain.first().map(|(m, _)| m.seq) != Some(start) {
        // Retention rewrote the chain while it was read: the caller may retry.
        return Err(HistoryError::Unreadable(
            "the version's chain changed while it was read".into(),
        ));
    }
    Ok(chain)
}

/// Every update of a chain merged into one (the state at its last version), lib0 v2.
pub fn merge_chain(chain: &[(VersionMeta, VersionData)]) -> Result<Bytes, HistoryError> {
    let updates: Vec<&[u8]> = chain
        .iter()
        .flat_map(|(_, data)| data.updates().map(|u| u.as_ref()))
        .collect();
    let merged = catch_unwind(AssertUnwindSafe(|| yrs::merge_updates_v2(updates)));
    match merged {
        Ok(Ok(merged)) => Ok(Bytes::from(merged)),
        Ok(Err(error)) => Err(HistoryError::Unreadable(format!("merge: {error}"))),
        Err(_) => Err(HistoryError::Unreadable(
            "merging the chain panicked".into(),
        )),
    }
}

/// Version `version` of `doc` and its state, as one Yjs (lib0 v1) update.
pub async fn version_update(
    store: &dyn DocStore,
    doc: &DocName,
    version: VersionSeq,
) -> Result<(VersionMeta, Bytes), HistoryError> {
    let metas = list(store, doc).await?;
    let chain = chain(store, doc, &metas, version).await?;
    let state = merge_chain(&chain)?;
    let state = super::record::v2_to_v1(&state).map_err(HistoryError::Unreadable)?;
    let meta = chain
        .last()
        .map(|(meta, _)| meta.clone())
        .ok_or(HistoryError::NotFound)?;
    Ok((meta, state))
}

/// A document holding `update` (lib0 v1; deleted content kept when `keep_deleted`, as a diff
/// needs).
pub fn version_doc(update: &[u8], keep_deleted: bool) -> Result<Doc, HistoryError> {
    let doc = Doc::with_options(Options {
        skip_gc: keep_deleted,
        ..Options::default()
    });
    apply(&doc, update)?;
    Ok(doc)
}

/// Applies `update` (lib0 v1) to `doc`, every yrs call guarded.
pub(super) fn apply(doc: &Doc, update: &[u8]) -> Result<(), HistoryError> {
    apply_decoded(doc, || Update::decode_v1(update))
}

/// Applies `update` (lib0 v2) to `doc`, every yrs call guarded.
pub(super) fn apply_v2(doc: &Doc, update: &[u8]) -> Result<(), HistoryError> {
    apply_decoded(doc, || Update::decode_v2(update))
}

fn apply_decoded(
    doc: &Doc,
    decode: impl FnOnce() -> Result<Update, yrs::encoding::read::Error>,
) -> Result<(), HistoryError> {
    let applied = catch_unwind(AssertUnwindSafe(|| {
        let update = decode().map_err(|e| e.to_string())?;
        doc.transact_mut()
            .apply_update(update)
            .map_err(|e| e.to_string())
    }));
    match applied {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(HistoryError::Unreadable(error)),
        Err(_) => Err(HistoryError::Unreadable("yrs panicked".into())),
    }
}

//! How the sled store lays documents out: the trees, the keys and the values, and reading them.
//!
//! Three trees:
//! - `docs`: key `u16 BE name length | name | tag`, where tag `0` is the snapshot (value:
//!   `format byte | upto u64 BE | v1 update`, `upto` being the log position the snapshot covers
//!   up to) and tag `1 | position u64 BE` is a log record (value: the v1 update); tag
//!   `2 | seq u64 BE` is a version's `meta` and tag `3 | seq u64 BE` its `data` (apart, so that
//!   listing versions reads no `data`; see `versions`). The length prefix means no name's keys
//!   can fall inside another's range.
//! - `meta`: key = name, value = `updated_at_ms u64 BE | size_bytes u64 BE`, for listing.
//! - `tombstones`: key = name of a deleted document, value = `deleted_at_ms u64 BE`.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use weft_crdt::store::{DocStatus, LogEntry, LogPos, StoreError, StoredDoc, VersionSeq};
use weft_crdt::DocName;

const TAG_SNAPSHOT: u8 = 0;
const TAG_LOG: u8 = 1;
const TAG_VERSION_META: u8 = 2;
const TAG_VERSION_DATA: u8 = 3;
pub(crate) const SNAPSHOT_FORMAT: u8 = 1;

/// The store's trees.
#[derive(Clone)]
pub(crate) struct Trees {
    pub docs: sled::Tree,
    pub meta: sled::Tree,
    pub tombstones: sled::Tree,
}

/// A sled error as the store contract names it.
pub(crate) fn sled_error(error: sled::Error) -> StoreError {
    match error {
        sled::Error::Io(e) => StoreError::Unavailable(format!("sled: {e}")),
        sled::Error::Corruption { .. } => StoreError::Corrupt {
            doc: String::new(),
            reason: format!("sled: {error}"),
        },
        other => StoreError::Other(format!("sled: {other}")),
    }
}

pub(crate) fn doc_prefix(name: &DocName) -> Vec<u8> {
    let bytes = name.as_str().as_bytes();
    let mut key = Vec::with_capacity(bytes.len() + 11);
    // Names are at most 256 bytes (see `name.rs`), so the length always fits.
    key.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    key.extend_from_slice(bytes);
    key
}

pub(crate) fn snapshot_key(name: &DocName) -> Vec<u8> {
    tagged(name, TAG_SNAPSHOT)
}

pub(crate) fn log_prefix(name: &DocName) -> Vec<u8> {
    tagged(name, TAG_LOG)
}

pub(crate) fn log_key(name: &DocName, pos: LogPos) -> Vec<u8> {
    let mut key = log_prefix(name);
    key.extend_from_slice(&pos.to_be_bytes());
    key
}

fn tagged(name: &DocName, tag: u8) -> Vec<u8> {
    let mut key = doc_prefix(name);
    key.push(tag);
    key
}

/// The prefix of every version `meta` key of the document.
pub(crate) fn version_meta_prefix(name: &DocName) -> Vec<u8> {
    tagged(name, TAG_VERSION_META)
}

pub(crate) fn version_meta_key(name: &DocName, seq: VersionSeq) -> Vec<u8> {
    let mut key = version_meta_prefix(name);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The prefix of every version `data` key of the document.
pub(crate) fn version_data_prefix(name: &DocName) -> Vec<u8> {
    tagged(name, TAG_VERSION_DATA)
}

pub(crate) fn version_data_key(name: &DocName, seq: VersionSeq) -> Vec<u8> {
    let mut key = version_data_prefix(name);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The number of a version key under `prefix` (a `meta` or a `data` prefix).
pub(crate) fn version_seq(
    name: &DocName,
    prefix: &[u8],
    key: &[u8],
) -> Result<VersionSeq, StoreError> {
    key.get(prefix.len()..)
        .and_then(read_u64)
        .ok_or_else(|| corrupt(name, "version key is truncated"))
}

fn corrupt(name: &DocName, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        doc: name.to_string(),
        reason: reason.into(),
    }
}

fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn encode_meta(updated_at_ms: u64, size_bytes: u64) -> [u8; 16] {
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&updated_at_ms.to_be_bytes());
    value[8..].copy_from_slice(&size_bytes.to_be_bytes());
    value
}

pub(crate) fn decode_meta(value: &[u8]) -> Option<(u64, u64)> {
    Some((read_u64(value)?, read_u64(value.get(8..)?)?))
}

/// The position of a log key under `prefix`.
pub(crate) fn log_pos(name: &DocName, prefix: &[u8], key: &[u8]) -> Result<LogPos, StoreError> {
    read_u64(&key[prefix.len()..]).ok_or_else(|| corrupt(name, "log key is truncated"))
}

impl Trees {
    /// The snapshot's `upto` and bytes, if there is a snapshot.
    pub fn snapshot(&self, name: &DocName) -> Result<Option<(LogPos, Bytes)>, StoreError> {
        let Some(value) = self.docs.get(snapshot_key(name)).map_err(sled_error)? else {
            return Ok(None);
        };
        if value.first() != Some(&SNAPSHOT_FORMAT) {
            return Err(corrupt(name, "snapshot has an unknown format byte"));
        }
        let upto =
            read_u64(&value[1..]).ok_or_else(|| corrupt(name, "snapshot header is truncated"))?;
        Ok(Some((upto, Bytes::copy_from_slice(&value[9..]))))
    }

    /// The log position the snapshot covers up to, if there is a snapshot (its bytes are not
    /// copied).
    pub fn snapshot_upto(&self, name: &DocName) -> Result<Option<LogPos>, StoreError> {
        let Some(value) = self.docs.get(snapshot_key(name)).map_err(sled_error)? else {
            return Ok(None);
        };
        if value.first() != Some(&SNAPSHOT_FORMAT) {
            return Err(corrupt(name, "snapshot has an unknown format byte"));
        }
        read_u64(&value[1..])
            .map(Some)
            .ok_or_else(|| corrupt(name, "snapshot header is truncated"))
    }

    /// `Deleted` if the document has a tombstone.
    pub fn refuse_deleted(&self, name: &DocName) -> Result<(), StoreError> {
        if self
            .tombstones
            .contains_key(name.as_str())
            .map_err(sled_error)?
        {
            return Err(StoreError::Deleted(name.to_string()));
        }
        Ok(())
    }

    pub fn status(&self, name: &DocName) -> Result<DocStatus, StoreError> {
        if self.refuse_deleted(name).is_err() {
            return Ok(DocStatus::Deleted);
        }
        let exists = self.meta.contains_key(name.as_str()).map_err(sled_error)?
            || self.docs.scan_prefix(doc_prefix(name)).next().is_some();
        Ok(if exists {
            DocStatus::Exists
        } else {
            DocStatus::Absent
        })
    }

    pub fn load(&self, name: &DocName) -> Result<StoredDoc, StoreError> {
        self.refuse_deleted(name)?;
        let mut stored = StoredDoc::default();
        if let Some((upto, snapshot)) = self.snapshot(name)? {
            stored.next_pos = upto;
            stored.snapshot = Some(snapshot);
        }
        let prefix = log_prefix(name);
        for item in self.docs.scan_prefix(&prefix) {
            let (key, value) = item.map_err(sled_error)?;
            let pos = log_pos(name, &prefix, &key)?;
            stored.next_pos = stored.next_pos.max(pos + 1);
            stored.log.push(LogEntry {
                pos,
                update: Bytes::copy_from_slice(&value),
            });
        }
        Ok(stored)
    }
}

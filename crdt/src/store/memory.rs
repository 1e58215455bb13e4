//! An in-memory [`DocStore`], for tests, fuzzing and embedders that persist elsewhere. Nothing
//! survives the process. It is also the contract's smallest complete implementation.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

use super::contract::{
    DocInfo, DocStatus, DocStore, LogEntry, LogPos, StoreError, StoredDoc, VersionRecord,
    VersionSeq,
};
use crate::name::DocName;

/// One document as kept in memory.
#[derive(Default)]
struct Entry {
    stored: StoredDoc,
    /// The position the snapshot covers up to.
    snapshot_upto: LogPos,
    updated_at_ms: u64,
    /// A tombstone: deleted, nothing stored.
    deleted: bool,
    /// Versions by number: (meta, data).
    versions: BTreeMap<VersionSeq, (Bytes, Bytes)>,
}

/// Keeps every document in a map.
#[derive(Default)]
pub struct MemoryStore {
    docs: Mutex<BTreeMap<DocName, Entry>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn docs(&self) -> std::sync::MutexGuard<'_, BTreeMap<DocName, Entry>> {
        self.docs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The live entry of `doc` (created if absent), or `Deleted`.
fn live<'a>(
    docs: &'a mut BTreeMap<DocName, Entry>,
    doc: &DocName,
) -> Result<&'a mut Entry, StoreError> {
    let entry = docs.entry(doc.clone()).or_default();
    if entry.deleted {
        return Err(StoreError::Deleted(doc.to_string()));
    }
    Ok(entry)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[async_trait]
impl DocStore for MemoryStore {
    async fn load(&self, doc: &DocName) -> Result<StoredDoc, StoreError> {
        match self.docs().get(doc) {
            Some(entry) if entry.deleted => Err(StoreError::Deleted(doc.to_string())),
            Some(entry) => Ok(entry.stored.clone()),
            None => Ok(StoredDoc::default()),
        }
    }

    async fn append(&self, doc: &DocName, records: Vec<Bytes>) -> Result<LogPos, StoreError> {
        let mut docs = self.docs();
        let entry = live(&mut docs, doc)?;
        for update in records {
            let pos = entry.stored.next_pos;
            entry.stored.log.push(LogEntry { pos, update });
            entry.stored.next_pos += 1;
        }
        entry.updated_at_ms = now_ms();
        Ok(entry.stored.next_pos)
    }

    async fn compact(
        &self,
        doc: &DocName,
        snapshot: Bytes,
        upto: LogPos,
    ) -> Result<(), StoreError> {
        let mut docs = self.docs();
        let entry = live(&mut docs, doc)?;
        if upto <= entry.snapshot_upto && entry.stored.snapshot.is_some() {
            return Ok(());
        }
        entry.stored.snapshot = Some(snapshot);
        entry.stored.log.retain(|e| e.pos >= upto);
        entry.stored.next_pos = entry.stored.next_pos.max(upto);
        entry.snapshot_upto = upto;
        entry.updated_at_ms = now_ms();
        Ok(())
    }

    async fn create(&self, doc: &DocName) -> Result<bool, StoreError> {
        let mut docs = self.docs();
        if docs.get(doc).is_some_and(|e| !e.deleted) {
            return Ok(false);
        }
        docs.insert(
            doc.clone(),
            Entry {
                updated_at_ms: now_ms(),
                ..Entry::default()
            },
        );
        Ok(true)
    }

    async fn status(&self, doc: &DocName) -> Result<DocStatus, StoreError> {
        Ok(match self.docs().get(doc) {
            None => DocStatus::Absent,
            Some(entry) if entry.deleted => DocStatus::Deleted,
            Some(_) => DocStatus::Exists,
        })
    }

    async fn delete(&self, doc: &DocName) -> Result<bool, StoreError> {
        let tombstone = Entry {
            deleted: true,
            updated_at_ms: now_ms(),
            ..Entry::default()
        };
        let previous = self.docs().insert(doc.clone(), tombstone);
        Ok(previous.is_some_and(|e| !e.deleted))
    }

    async fn list(&self) -> Result<Vec<DocInfo>, StoreError> {
        Ok(self
            .docs()
            .iter()
            .filter(|(_, entry)| !entry.deleted)
            .map(|(name, entry)| DocInfo {
                name: name.to_string(),
                size_bytes: entry.stored.size_bytes(),
                updated_at_ms: entry.updated_at_ms,
            })
            .collect())
    }

    async fn add_version(&self, doc: &DocName, record: VersionRecord) -> Result<bool, StoreError> {
        let mut docs = self.docs();
        let entry = live(&mut docs, doc)?;
        if entry.versions.contains_key(&record.seq) {
            return Ok(false);
        }
        entry
            .versions
            .insert(record.seq, (record.meta, record.data));
        Ok(true)
    }

    async fn versions(&self, doc: &DocName) -> Result<Vec<(VersionSeq, Bytes)>, StoreError> {
        Ok(self.docs().get(doc).map_or_else(Vec::new, |entry| {
            entry
                .versions
                .iter()
                .map(|(seq, (meta, _))| (*seq, meta.clone()))
                .collect()
        }))
    }

    async fn version_data(
        &self,
        doc: &DocName,
        from: VersionSeq,
        to: VersionSeq,
    ) -> Result<Vec<(VersionSeq, Bytes)>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        Ok(self.docs().get(doc).map_or_else(Vec::new, |entry| {
            entry
                .versions
                .range(from..=to)
                .map(|(seq, (_, data))| (*seq, data.clone()))
                .collect()
        }))
    }

    async fn rewrite_versions(
        &self,
        doc: &DocName,
        drop: &[VersionSeq],
        put: Vec<VersionRecord>,
    ) -> Result<(), StoreError> {
        let mut docs = self.docs();
        let entry = live(&mut docs, doc)?;
        for seq in drop {
            entry.versions.remove(seq);
        }
        for record in put {
            entry
                .versions
                .insert(record.seq, (record.meta, record.data));
        }
        Ok(())
    }

    async fn deleted(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .docs()
            .iter()
            .filter(|(_, entry)| entry.deleted)
            .map(|(name, _)| name.to_string())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn meets_the_store_contract() {
        let store: std::sync::Arc<dyn DocStore> = std::sync::Arc::new(MemoryStore::new());
        super::super::conformance::run(|| {
            let store = store.clone();
            async move { store }
        })
        .await;
    }
}

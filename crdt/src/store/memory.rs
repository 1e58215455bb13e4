//! An in-memory [`DocStore`] with the same semantics as the sled store, for tests, fuzzing and
//! embedders that persist elsewhere. Nothing survives the process.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::{DocInfo, DocStore, LogEntry, StoreError, StoredDoc};
use crate::name::DocName;

/// Keeps every document in a map.
#[derive(Default)]
pub struct MemoryStore {
    docs: Mutex<HashMap<DocName, StoredDoc>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn docs(&self) -> std::sync::MutexGuard<'_, HashMap<DocName, StoredDoc>> {
        self.docs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl DocStore for MemoryStore {
    async fn load(&self, name: &DocName) -> Result<StoredDoc, StoreError> {
        Ok(self.docs().get(name).cloned().unwrap_or_default())
    }

    async fn append(
        &self,
        name: &DocName,
        first_seq: u64,
        updates: Vec<Bytes>,
    ) -> Result<(), StoreError> {
        let mut docs = self.docs();
        let doc = docs.entry(name.clone()).or_default();
        for (i, update) in updates.into_iter().enumerate() {
            let seq = first_seq + i as u64;
            doc.log.push(LogEntry { seq, update });
            doc.next_seq = doc.next_seq.max(seq + 1);
        }
        Ok(())
    }

    async fn compact(
        &self,
        name: &DocName,
        snapshot: Vec<u8>,
        next_seq: u64,
    ) -> Result<(), StoreError> {
        let mut docs = self.docs();
        let doc = docs.entry(name.clone()).or_default();
        doc.snapshot = Some(Bytes::from(snapshot));
        doc.log.retain(|e| e.seq >= next_seq);
        doc.next_seq = doc.next_seq.max(next_seq);
        Ok(())
    }

    async fn create(&self, name: &DocName) -> Result<bool, StoreError> {
        let mut docs = self.docs();
        if docs.contains_key(name) {
            return Ok(false);
        }
        docs.insert(name.clone(), StoredDoc::default());
        Ok(true)
    }

    async fn exists(&self, name: &DocName) -> Result<bool, StoreError> {
        Ok(self.docs().contains_key(name))
    }

    async fn delete(&self, name: &DocName) -> Result<bool, StoreError> {
        Ok(self.docs().remove(name).is_some())
    }

    async fn list(&self) -> Result<Vec<DocInfo>, StoreError> {
        Ok(self
            .docs()
            .iter()
            .map(|(name, doc)| DocInfo {
                name: name.to_string(),
                size_bytes: doc.snapshot.as_ref().map_or(0, |s| s.len() as u64) + doc.log_bytes(),
                updated_at_ms: 0,
            })
            .collect())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

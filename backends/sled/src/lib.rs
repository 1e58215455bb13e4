//! Weft's default store: documents in an embedded sled database, with group commit.
//!
//! # Layout
//! - this file: [`SledStore`], implementing `weft_crdt::DocStore` (its conformance suite runs in
//!   `tests/conformance.rs`); reads run on tokio's blocking pool, nothing here blocks an async
//!   task;
//! - `keys`: the trees, keys and values on disk, and reading them;
//! - `writer`: the writer thread every write goes through (group commit, log positions);
//! - `versions`: a document's versions (their keys, reading them, the writer's version writes).

mod keys;
mod versions;
mod writer;

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::oneshot;
use weft_crdt::store::{
    DocInfo, DocStatus, DocStore, LogPos, StoreError, StoredDoc, VersionRecord, VersionSeq,
};
use weft_crdt::DocName;

use keys::{decode_meta, sled_error, Trees};
use writer::{WriteJob, WriteOp, Writer};

/// Default size of sled's page cache.
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// sled-backed document store.
pub struct SledStore {
    trees: Trees,
    writer: std_mpsc::Sender<WriteJob>,
}

impl SledStore {
    /// Opens (or creates) the database in `dir` with the default page cache size.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the database in `dir`; sled keeps up to about `cache_bytes` of pages
    /// in memory.
    pub fn open_with_cache(dir: impl AsRef<Path>, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir.as_ref())
            .cache_capacity(cache_bytes)
            .open()
            .map_err(sled_error)?;
        let trees = Trees {
            docs: db.open_tree("docs").map_err(sled_error)?,
            meta: db.open_tree("meta").map_err(sled_error)?,
            tombstones: db.open_tree("tombstones").map_err(sled_error)?,
        };
        let (writer, jobs) = std_mpsc::channel();
        let worker = Writer {
            db,
            trees: trees.clone(),
            next: std::collections::HashMap::new(),
        };
        thread::Builder::new()
            .name("weft-sled-writer".into())
            .spawn(move || worker.run(jobs))
            .map_err(|e| StoreError::Other(format!("cannot start the writer thread: {e}")))?;
        Ok(SledStore { trees, writer })
    }

    async fn write(&self, op: WriteOp) -> Result<u64, StoreError> {
        let gone = || StoreError::Unavailable("the store's writer has stopped".into());
        let (done, result) = oneshot::channel();
        self.writer
            .send(WriteJob { op, done })
            .map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Trees) -> Result<T, StoreError> + Send + 'static,
    {
        let trees = self.trees.clone();
        tokio::task::spawn_blocking(move || f(&trees))
            .await
            .map_err(|e| StoreError::Other(format!("storage task failed: {e}")))?
    }
}

#[async_trait]
impl DocStore for SledStore {
    async fn load(&self, doc: &DocName) -> Result<StoredDoc, StoreError> {
        let name = doc.clone();
        self.read(move |trees| trees.load(&name)).await
    }

    async fn append(&self, doc: &DocName, records: Vec<Bytes>) -> Result<LogPos, StoreError> {
        self.write(WriteOp::Append {
            name: doc.clone(),
            records,
        })
        .await
    }

    async fn compact(
        &self,
        doc: &DocName,
        snapshot: Bytes,
        upto: LogPos,
    ) -> Result<(), StoreError> {
        self.write(WriteOp::Compact {
            name: doc.clone(),
            snapshot,
            upto,
        })
        .await
        .map(drop)
    }

    async fn create(&self, doc: &DocName) -> Result<bool, StoreError> {
        Ok(self.write(WriteOp::Create { name: doc.clone() }).await? == 1)
    }

    async fn status(&self, doc: &DocName) -> Result<DocStatus, StoreError> {
        let name = doc.clone();
        self.read(move |trees| trees.status(&name)).await
    }

    async fn delete(&self, doc: &DocName) -> Result<bool, StoreError> {
        Ok(self.write(WriteOp::Delete { name: doc.clone() }).await? == 1)
    }

    async fn list(&self) -> Result<Vec<DocInfo>, StoreError> {
        self.read(|trees| {
            let mut out = Vec::new();
            for item in trees.meta.iter() {
                let (key, value) = item.map_err(sled_error)?;
                let name = String::from_utf8_lossy(&key).into_owned();
                let (updated_at_ms, size_bytes) = decode_meta(&value).unwrap_or((0, 0));
                out.push(DocInfo {
                    name,
                    size_bytes,
                    updated_at_ms,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn deleted(&self) -> Result<Vec<String>, StoreError> {
        self.read(|trees| {
            let mut out = Vec::new();
            for item in trees.tombstones.iter() {
                let (key, _) = item.map_err(sled_error)?;
                out.push(String::from_utf8_lossy(&key).into_owned());
            }
            Ok(out)
        })
        .await
    }

    async fn add_version(&self, doc: &DocName, record: VersionRecord) -> Result<bool, StoreError> {
        let added = self
            .write(WriteOp::AddVersion {
                name: doc.clone(),
                record,
            })
            .await?;
        Ok(added == 1)
    }

    async fn versions(&self, doc: &DocName) -> Result<Vec<(VersionSeq, Bytes)>, StoreError> {
        let name = doc.clone();
        self.read(move |trees| trees.versions(&name)).await
    }

    async fn version_data(
        &self,
        doc: &DocName,
        from: VersionSeq,
        to: VersionSeq,
    ) -> Result<Vec<(VersionSeq, Bytes)>, StoreError> {
        let name = doc.clone();
        self.read(move |trees| trees.version_data(&name, from, to))
            .await
    }

    async fn rewrite_versions(
        &self,
        doc: &DocName,
        drop: &[VersionSeq],
        put: Vec<VersionRecord>,
    ) -> Result<(), StoreError> {
        self.write(WriteOp::RewriteVersions {
            name: doc.clone(),
            drop: drop.to_vec(),
            put,
        })
        .await
        .map(|_| ())
    }

    async fn check(&self) -> Result<(), StoreError> {
        // A round through the writer, flush included: it is alive and the disk takes writes.
        self.write(WriteOp::Flush).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_crdt::store::DocStore;

    fn name(s: &str) -> DocName {
        DocName::new(s).expect("valid name")
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let store = SledStore::open(dir.path()).expect("open");
            assert!(store.create(&name("new")).await.expect("create"));
            store
                .append(&name("x"), vec![Bytes::from_static(b"1")])
                .await
                .expect("append");
            store
                .compact(&name("y"), Bytes::from_static(b"snap"), 7)
                .await
                .expect("compact");
        }
        // sled releases its lock once every handle (the writer thread's included) is gone.
        let store = loop {
            match SledStore::open(dir.path()) {
                Ok(store) => break store,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        assert_eq!(
            store.status(&name("new")).await.expect("status"),
            DocStatus::Exists
        );
        assert_eq!(store.load(&name("x")).await.expect("load").log.len(), 1);
        // Positions carry on after a snapshot, across a restart.
        assert_eq!(
            store
                .append(&name("y"), vec![Bytes::from_static(b"2")])
                .await
                .expect("append"),
            8
        );
    }
}

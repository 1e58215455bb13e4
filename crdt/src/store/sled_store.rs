//! The default store: an embedded sled database with group commit.
//!
//! Layout (two trees):
//! - `docs`: key `u16 BE name length | name | tag`, where tag `0` is the snapshot (value:
//!   `format byte | next_seq u64 BE | v1 update`) and tag `1 | seq u64 BE` is a log entry (value:
//!   the v1 update). The length prefix means no name's keys can fall inside another's range.
//! - `meta`: key = name, value = `updated_at_ms u64 BE | size_bytes u64 BE`, for listing.
//!
//! All writes go through one writer thread. It takes every job waiting in its queue, applies them
//! and then flushes once, so a burst of appends from many documents costs one fsync (group
//! commit). Reads run on tokio's blocking pool; nothing here blocks an async task.

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::oneshot;

use super::{DocInfo, DocStore, LogEntry, StoreError, StoredDoc};
use crate::name::DocName;

const TAG_SNAPSHOT: u8 = 0;
const TAG_LOG: u8 = 1;
const SNAPSHOT_FORMAT: u8 = 1;

/// Default size of sled's page cache.
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// sled-backed [`DocStore`].
pub struct SledStore {
    docs: sled::Tree,
    meta: sled::Tree,
    writer: std_mpsc::Sender<WriteJob>,
}

enum WriteOp {
    Append {
        name: DocName,
        first_seq: u64,
        updates: Vec<Bytes>,
    },
    Compact {
        name: DocName,
        snapshot: Vec<u8>,
        next_seq: u64,
    },
    Create {
        name: DocName,
    },
    Delete {
        name: DocName,
    },
    Flush,
}

struct WriteJob {
    op: WriteOp,
    /// `Ok(true)` when the op changed something (create/delete report it).
    done: oneshot::Sender<Result<bool, StoreError>>,
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
            .open()?;
        let docs = db.open_tree("docs")?;
        let meta = db.open_tree("meta")?;
        let (writer, jobs) = std_mpsc::channel();
        let worker = Writer {
            db,
            docs: docs.clone(),
            meta: meta.clone(),
        };
        thread::Builder::new()
            .name("weft-sled-writer".into())
            .spawn(move || worker.run(jobs))
            .map_err(|e| StoreError::Task(e.to_string()))?;
        Ok(SledStore { docs, meta, writer })
    }

    async fn write(&self, op: WriteOp) -> Result<bool, StoreError> {
        let (done, result) = oneshot::channel();
        self.writer
            .send(WriteJob { op, done })
            .map_err(|_| StoreError::WriterGone)?;
        result.await.map_err(|_| StoreError::WriterGone)?
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&sled::Tree, &sled::Tree) -> Result<T, StoreError> + Send + 'static,
    {
        let docs = self.docs.clone();
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || f(&docs, &meta))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn doc_prefix(name: &DocName) -> Vec<u8> {
    let bytes = name.as_str().as_bytes();
    let mut key = Vec::with_capacity(bytes.len() + 11);
    // Names are at most 256 bytes (see `name.rs`), so the length always fits.
    key.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    key.extend_from_slice(bytes);
    key
}

fn snapshot_key(name: &DocName) -> Vec<u8> {
    let mut key = doc_prefix(name);
    key.push(TAG_SNAPSHOT);
    key
}

fn log_prefix(name: &DocName) -> Vec<u8> {
    let mut key = doc_prefix(name);
    key.push(TAG_LOG);
    key
}

fn log_key(name: &DocName, seq: u64) -> Vec<u8> {
    let mut key = log_prefix(name);
    key.extend_from_slice(&seq.to_be_bytes());
    key
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn encode_meta(updated_at_ms: u64, size_bytes: u64) -> [u8; 16] {
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&updated_at_ms.to_be_bytes());
    value[8..].copy_from_slice(&size_bytes.to_be_bytes());
    value
}

fn decode_meta(value: &[u8]) -> Option<(u64, u64)> {
    Some((read_u64(value)?, read_u64(value.get(8..)?)?))
}

fn load_doc(docs: &sled::Tree, name: &DocName) -> Result<StoredDoc, StoreError> {
    let mut stored = StoredDoc::default();
    if let Some(value) = docs.get(snapshot_key(name))? {
        if value.first() != Some(&SNAPSHOT_FORMAT) {
            return Err(corrupt(name, "snapshot has an unknown format byte"));
        }
        stored.next_seq =
            read_u64(&value[1..]).ok_or_else(|| corrupt(name, "snapshot header is truncated"))?;
        stored.snapshot = Some(Bytes::copy_from_slice(&value[9..]));
    }
    let prefix = log_prefix(name);
    for item in docs.scan_prefix(&prefix) {
        let (key, value) = item?;
        let seq =
            read_u64(&key[prefix.len()..]).ok_or_else(|| corrupt(name, "log key is truncated"))?;
        stored.next_seq = stored.next_seq.max(seq + 1);
        stored.log.push(LogEntry {
            seq,
            update: Bytes::copy_from_slice(&value),
        });
    }
    Ok(stored)
}

#[async_trait]
impl DocStore for SledStore {
    async fn load(&self, name: &DocName) -> Result<StoredDoc, StoreError> {
        let name = name.clone();
        self.read(move |docs, _| load_doc(docs, &name)).await
    }

    async fn append(
        &self,
        name: &DocName,
        first_seq: u64,
        updates: Vec<Bytes>,
    ) -> Result<(), StoreError> {
        self.write(WriteOp::Append {
            name: name.clone(),
            first_seq,
            updates,
        })
        .await
        .map(drop)
    }

    async fn compact(
        &self,
        name: &DocName,
        snapshot: Vec<u8>,
        next_seq: u64,
    ) -> Result<(), StoreError> {
        self.write(WriteOp::Compact {
            name: name.clone(),
            snapshot,
            next_seq,
        })
        .await
        .map(drop)
    }

    async fn create(&self, name: &DocName) -> Result<bool, StoreError> {
        self.write(WriteOp::Create { name: name.clone() }).await
    }

    async fn exists(&self, name: &DocName) -> Result<bool, StoreError> {
        let name = name.clone();
        self.read(move |docs, meta| {
            Ok(meta.contains_key(name.as_str())?
                || docs.scan_prefix(doc_prefix(&name)).next().is_some())
        })
        .await
    }

    async fn delete(&self, name: &DocName) -> Result<bool, StoreError> {
        self.write(WriteOp::Delete { name: name.clone() }).await
    }

    async fn list(&self) -> Result<Vec<DocInfo>, StoreError> {
        self.read(|_, meta| {
            let mut out = Vec::new();
            for item in meta.iter() {
                let (key, value) = item?;
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

    async fn flush(&self) -> Result<(), StoreError> {
        self.write(WriteOp::Flush).await.map(drop)
    }
}

/// The writer thread's state: applies queued jobs, then flushes once per round.
struct Writer {
    db: sled::Db,
    docs: sled::Tree,
    meta: sled::Tree,
}

impl Writer {
    fn run(self, jobs: std_mpsc::Receiver<WriteJob>) {
        while let Ok(first) = jobs.recv() {
            let mut round = vec![first];
            round.extend(jobs.try_iter());
            let results: Vec<_> = round.iter().map(|job| self.apply(&job.op)).collect();
            let flushed = self.db.flush().map(drop);
            for (job, result) in round.into_iter().zip(results) {
                let result = match (&flushed, result) {
                    (Err(e), _) => Err(StoreError::Sled(e.clone())),
                    (Ok(()), result) => result,
                };
                // The caller may have given up waiting; nothing to do then.
                let _ = job.done.send(result);
            }
        }
        // Every sender is gone: make sure the last writes are on disk before the thread ends.
        if let Err(error) = self.db.flush() {
            tracing::error!(%error, "final flush of the sled store failed");
        }
    }

    fn apply(&self, op: &WriteOp) -> Result<bool, StoreError> {
        match op {
            WriteOp::Append {
                name,
                first_seq,
                updates,
            } => {
                let added: u64 = updates.iter().map(|u| u.len() as u64).sum();
                if let [update] = updates.as_slice() {
                    // One record (the actor's usual append: a batch is merged into one) is one
                    // insert: atomic without a batch, whose manifest sled writes as a second,
                    // separately synced log buffer (two disk writes to the same page per flush).
                    self.docs
                        .insert(log_key(name, *first_seq), update.as_ref())?;
                } else {
                    let mut batch = sled::Batch::default();
                    for (i, update) in updates.iter().enumerate() {
                        batch.insert(log_key(name, first_seq + i as u64), update.as_ref());
                    }
                    self.docs.apply_batch(batch)?;
                }
                self.touch_meta(name, |size| size + added)?;
                Ok(true)
            }
            WriteOp::Compact {
                name,
                snapshot,
                next_seq,
            } => {
                let mut batch = sled::Batch::default();
                let mut value = Vec::with_capacity(snapshot.len() + 9);
                value.push(SNAPSHOT_FORMAT);
                value.extend_from_slice(&next_seq.to_be_bytes());
                value.extend_from_slice(snapshot);
                batch.insert(snapshot_key(name), value);
                let mut remaining = 0u64;
                let end = log_key(name, *next_seq);
                for item in self.docs.range(log_prefix(name)..end) {
                    let (key, _) = item?;
                    batch.remove(key);
                }
                for item in self.docs.scan_prefix(log_key(name, *next_seq)) {
                    let (_, value) = item?;
                    remaining += value.len() as u64;
                }
                self.docs.apply_batch(batch)?;
                let size = snapshot.len() as u64 + remaining;
                self.touch_meta(name, |_| size)?;
                Ok(true)
            }
            WriteOp::Create { name } => {
                let existed = self.meta.contains_key(name.as_str())?
                    || self.docs.scan_prefix(doc_prefix(name)).next().is_some();
                if existed {
                    return Ok(false);
                }
                self.touch_meta(name, |size| size)?;
                Ok(true)
            }
            WriteOp::Delete { name } => {
                let mut batch = sled::Batch::default();
                let mut existed = false;
                for item in self.docs.scan_prefix(doc_prefix(name)) {
                    let (key, _) = item?;
                    batch.remove(key);
                    existed = true;
                }
                self.docs.apply_batch(batch)?;
                existed |= self.meta.remove(name.as_str())?.is_some();
                Ok(existed)
            }
            WriteOp::Flush => Ok(true),
        }
    }

    fn touch_meta(&self, name: &DocName, size: impl Fn(u64) -> u64) -> Result<(), StoreError> {
        let old = self
            .meta
            .get(name.as_str())?
            .and_then(|v| decode_meta(&v))
            .map_or(0, |(_, size)| size);
        self.meta
            .insert(name.as_str(), &encode_meta(now_ms(), size(old)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> DocName {
        DocName::new(s).unwrap()
    }

    #[tokio::test]
    async fn append_load_compact_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let a = name("a");
        assert!(store.load(&a).await.unwrap().is_empty());
        store
            .append(
                &a,
                0,
                vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")],
            )
            .await
            .unwrap();
        store
            .append(&a, 2, vec![Bytes::from_static(b"three")])
            .await
            .unwrap();
        let loaded = store.load(&a).await.unwrap();
        assert_eq!(loaded.log.len(), 3);
        assert_eq!(loaded.next_seq, 3);
        assert_eq!(loaded.log[2].update, Bytes::from_static(b"three"));

        store.compact(&a, b"snap".to_vec(), 2).await.unwrap();
        let loaded = store.load(&a).await.unwrap();
        assert_eq!(loaded.snapshot, Some(Bytes::from_static(b"snap")));
        assert_eq!(loaded.log.len(), 1);
        assert_eq!(loaded.log[0].seq, 2);
        assert_eq!(loaded.next_seq, 3);

        let listed = store.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].size_bytes, 4 + 5);

        assert!(store.delete(&a).await.unwrap());
        assert!(store.load(&a).await.unwrap().is_empty());
        assert!(!store.exists(&a).await.unwrap());
    }

    #[tokio::test]
    async fn names_that_prefix_each_other_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store
            .append(&name("a"), 0, vec![Bytes::from_static(b"A")])
            .await
            .unwrap();
        store
            .append(&name("ab"), 0, vec![Bytes::from_static(b"AB")])
            .await
            .unwrap();
        store
            .append(&name("a/b"), 0, vec![Bytes::from_static(b"A/B")])
            .await
            .unwrap();
        assert_eq!(store.load(&name("a")).await.unwrap().log.len(), 1);
        store.delete(&name("a")).await.unwrap();
        assert_eq!(store.load(&name("ab")).await.unwrap().log.len(), 1);
        assert_eq!(store.load(&name("a/b")).await.unwrap().log.len(), 1);
    }

    #[tokio::test]
    async fn survives_reopen_and_create_reports_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            assert!(store.create(&name("new")).await.unwrap());
            assert!(!store.create(&name("new")).await.unwrap());
            store
                .append(&name("x"), 0, vec![Bytes::from_static(b"1")])
                .await
                .unwrap();
        }
        // sled releases its lock once every handle (including the writer thread's) is gone.
        let store = loop {
            match SledStore::open(dir.path()) {
                Ok(store) => break store,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        assert!(store.exists(&name("new")).await.unwrap());
        assert_eq!(store.load(&name("x")).await.unwrap().log.len(), 1);
    }
}

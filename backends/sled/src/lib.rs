//! Weft's default store: documents in an embedded sled database, with group commit.
//!
//! # Layout
//! One file: [`SledStore`], implementing `weft_crdt::DocStore` (its conformance suite runs in
//! `tests/conformance.rs`), and its writer thread.
//!
//! # On disk
//! Two trees:
//! - `docs`: key `u16 BE name length | name | tag`, where tag `0` is the snapshot (value:
//!   `format byte | upto u64 BE | v1 update`, where `upto` is the log position the snapshot covers
//!   up to) and tag `1 | position u64 BE` is a log record (value: the v1 update). The length prefix means no name's keys can fall inside another's range.
//! - `meta`: key = name, value = `updated_at_ms u64 BE | size_bytes u64 BE`, for listing.
//!
//! All writes go through one writer thread. It takes every job waiting in its queue, applies them
//! and then flushes once, so a burst of appends from many documents costs one fsync (group
//! commit). Being the only writer, it also hands out log positions: the next one is after the
//! document's last record, or at its snapshot's `upto`. Reads run on tokio's blocking pool;
//! nothing here blocks an async task.

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::oneshot;

use weft_crdt::store::{DocInfo, DocStore, LogEntry, LogPos, StoreError, StoredDoc};
use weft_crdt::DocName;

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
        records: Vec<Bytes>,
    },
    Compact {
        name: DocName,
        snapshot: Bytes,
        upto: LogPos,
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
    /// Appends answer the next log position; create and delete 1 if they changed something.
    done: oneshot::Sender<Result<u64, StoreError>>,
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
        let docs = db.open_tree("docs").map_err(sled_error)?;
        let meta = db.open_tree("meta").map_err(sled_error)?;
        let (writer, jobs) = std_mpsc::channel();
        let worker = Writer {
            db,
            docs: docs.clone(),
            meta: meta.clone(),
        };
        thread::Builder::new()
            .name("weft-sled-writer".into())
            .spawn(move || worker.run(jobs))
            .map_err(|e| StoreError::Other(format!("cannot start the writer thread: {e}")))?;
        Ok(SledStore { docs, meta, writer })
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
        F: FnOnce(&sled::Tree, &sled::Tree) -> Result<T, StoreError> + Send + 'static,
    {
        let docs = self.docs.clone();
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || f(&docs, &meta))
            .await
            .map_err(|e| StoreError::Other(format!("storage task failed: {e}")))?
    }
}

/// A sled error as the store contract names it.
fn sled_error(error: sled::Error) -> StoreError {
    match error {
        sled::Error::Io(e) => StoreError::Unavailable(format!("sled: {e}")),
        sled::Error::Corruption { .. } => StoreError::Corrupt {
            doc: String::new(),
            reason: format!("sled: {error}"),
        },
        other => StoreError::Other(format!("sled: {other}")),
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

/// The snapshot's `upto` and bytes, if there is a snapshot.
fn read_snapshot(docs: &sled::Tree, name: &DocName) -> Result<Option<(LogPos, Bytes)>, StoreError> {
    let Some(value) = docs.get(snapshot_key(name)).map_err(sled_error)? else {
        return Ok(None);
    };
    if value.first() != Some(&SNAPSHOT_FORMAT) {
        return Err(corrupt(name, "snapshot has an unknown format byte"));
    }
    let upto =
        read_u64(&value[1..]).ok_or_else(|| corrupt(name, "snapshot header is truncated"))?;
    Ok(Some((upto, Bytes::copy_from_slice(&value[9..]))))
}

/// The position of a log key under `prefix`.
fn log_pos(name: &DocName, prefix: &[u8], key: &[u8]) -> Result<LogPos, StoreError> {
    read_u64(&key[prefix.len()..]).ok_or_else(|| corrupt(name, "log key is truncated"))
}

fn load_doc(docs: &sled::Tree, name: &DocName) -> Result<StoredDoc, StoreError> {
    let mut stored = StoredDoc::default();
    if let Some((upto, snapshot)) = read_snapshot(docs, name)? {
        stored.next_pos = upto;
        stored.snapshot = Some(snapshot);
    }
    let prefix = log_prefix(name);
    for item in docs.scan_prefix(&prefix) {
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

#[async_trait]
impl DocStore for SledStore {
    async fn load(&self, doc: &DocName) -> Result<StoredDoc, StoreError> {
        let name = doc.clone();
        self.read(move |docs, _| load_doc(docs, &name)).await
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

    async fn exists(&self, doc: &DocName) -> Result<bool, StoreError> {
        let name = doc.clone();
        self.read(move |docs, meta| exists(docs, meta, &name)).await
    }

    async fn delete(&self, doc: &DocName) -> Result<bool, StoreError> {
        Ok(self.write(WriteOp::Delete { name: doc.clone() }).await? == 1)
    }

    async fn list(&self) -> Result<Vec<DocInfo>, StoreError> {
        self.read(|_, meta| {
            let mut out = Vec::new();
            for item in meta.iter() {
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

    async fn check(&self) -> Result<(), StoreError> {
        // A round through the writer, flush included: it is alive and the disk takes writes.
        self.write(WriteOp::Flush).await.map(drop)
    }
}

fn exists(docs: &sled::Tree, meta: &sled::Tree, name: &DocName) -> Result<bool, StoreError> {
    Ok(meta.contains_key(name.as_str()).map_err(sled_error)?
        || docs.scan_prefix(doc_prefix(name)).next().is_some())
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
                    (Err(e), _) => Err(sled_error(e.clone())),
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

    fn apply(&self, op: &WriteOp) -> Result<u64, StoreError> {
        match op {
            WriteOp::Append { name, records } => {
                let first = self.next_pos(name)?;
                let added: u64 = records.iter().map(|u| u.len() as u64).sum();
                if let [record] = records.as_slice() {
                    // One record (the actor's usual append: a batch is merged into one) is one
                    // insert: atomic without a batch, whose manifest sled writes as a second,
                    // separately synced log buffer (two disk writes to the same page per flush).
                    self.docs
                        .insert(log_key(name, first), record.as_ref())
                        .map_err(sled_error)?;
                } else {
                    let mut batch = sled::Batch::default();
                    for (i, record) in records.iter().enumerate() {
                        batch.insert(log_key(name, first + i as u64), record.as_ref());
                    }
                    self.docs.apply_batch(batch).map_err(sled_error)?;
                }
                self.touch_meta(name, |size| size + added)?;
                Ok(first + records.len() as u64)
            }
            WriteOp::Compact {
                name,
                snapshot,
                upto,
            } => {
                if read_snapshot(&self.docs, name)?.is_some_and(|(stored, _)| stored >= *upto) {
                    return Ok(0);
                }
                let mut batch = sled::Batch::default();
                let mut value = Vec::with_capacity(snapshot.len() + 9);
                value.push(SNAPSHOT_FORMAT);
                value.extend_from_slice(&upto.to_be_bytes());
                value.extend_from_slice(snapshot);
                batch.insert(snapshot_key(name), value);
                let mut remaining = 0u64;
                let end = log_key(name, *upto);
                for item in self.docs.range(log_prefix(name)..end) {
                    let (key, _) = item.map_err(sled_error)?;
                    batch.remove(key);
                }
                for item in self.docs.scan_prefix(log_key(name, *upto)) {
                    let (_, value) = item.map_err(sled_error)?;
                    remaining += value.len() as u64;
                }
                self.docs.apply_batch(batch).map_err(sled_error)?;
                let size = snapshot.len() as u64 + remaining;
                self.touch_meta(name, |_| size)?;
                Ok(1)
            }
            WriteOp::Create { name } => {
                if exists(&self.docs, &self.meta, name)? {
                    return Ok(0);
                }
                self.touch_meta(name, |size| size)?;
                Ok(1)
            }
            WriteOp::Delete { name } => {
                let mut batch = sled::Batch::default();
                let mut existed = false;
                for item in self.docs.scan_prefix(doc_prefix(name)) {
                    let (key, _) = item.map_err(sled_error)?;
                    batch.remove(key);
                    existed = true;
                }
                self.docs.apply_batch(batch).map_err(sled_error)?;
                existed |= self
                    .meta
                    .remove(name.as_str())
                    .map_err(sled_error)?
                    .is_some();
                Ok(u64::from(existed))
            }
            WriteOp::Flush => Ok(1),
        }
    }

    /// The position the document's next record gets: after its last record, else at its
    /// snapshot's `upto`, else 0. (Only the writer thread writes, so this stays true until it
    /// appends.)
    fn next_pos(&self, name: &DocName) -> Result<LogPos, StoreError> {
        let prefix = log_prefix(name);
        if let Some(item) = self.docs.scan_prefix(&prefix).next_back() {
            let (key, _) = item.map_err(sled_error)?;
            return Ok(log_pos(name, &prefix, &key)? + 1);
        }
        Ok(read_snapshot(&self.docs, name)?.map_or(0, |(upto, _)| upto))
    }

    fn touch_meta(&self, name: &DocName, size: impl Fn(u64) -> u64) -> Result<(), StoreError> {
        let old = self
            .meta
            .get(name.as_str())
            .map_err(sled_error)?
            .and_then(|v| decode_meta(&v))
            .map_or(0, |(_, size)| size);
        self.meta
            .insert(name.as_str(), &encode_meta(now_ms(), size(old)))
            .map_err(sled_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(store.exists(&name("new")).await.expect("exists"));
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

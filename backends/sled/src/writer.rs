//! The sled store's writer thread: every write goes through it. It takes every job waiting in
//! its queue, applies them and then flushes once, so a burst of appends from many documents
//! costs one fsync (group commit). Being the only writer, it also hands out log positions: the
//! next one is after the document's last record, or at its snapshot's `upto`.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;

use bytes::Bytes;
use tokio::sync::oneshot;
use weft_crdt::store::{LogPos, StoreError, VersionRecord, VersionSeq};
use weft_crdt::DocName;

use crate::keys::{
    decode_meta, doc_prefix, encode_meta, log_key, log_pos, log_prefix, now_ms, sled_error,
    snapshot_key, Trees, SNAPSHOT_FORMAT,
};

/// A write, as the store asks for it.
pub(crate) enum WriteOp {
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
    AddVersion {
        name: DocName,
        record: VersionRecord,
    },
    RewriteVersions {
        name: DocName,
        drop: Vec<VersionSeq>,
        put: Vec<VersionRecord>,
    },
    Flush,
}

/// A write and who waits for it.
pub(crate) struct WriteJob {
    pub op: WriteOp,
    /// Appends answer the next log position; create, delete and add_version 1 if they changed
    /// something.
    pub done: oneshot::Sender<Result<u64, StoreError>>,
}

/// Documents whose next log position the writer remembers before it forgets them all (a
/// position is found again with one seek).
const MAX_REMEMBERED: usize = 65_536;

/// The writer thread's state: applies queued jobs, then flushes once per round.
pub(crate) struct Writer {
    pub db: sled::Db,
    pub trees: Trees,
    /// The next log position of documents appended to lately (only this thread writes, so it
    /// stays true; a deletion or a compaction updates it).
    pub next: HashMap<DocName, LogPos>,
}

impl Writer {
    pub fn run(mut self, jobs: std_mpsc::Receiver<WriteJob>) {
        while let Ok(first) = jobs.recv() {
            let mut round = vec![first];
            round.extend(jobs.try_iter());
            let results: Vec<_> = round.iter().map(|job| self.apply(&job.op)).collect();
            if self.next.len() > MAX_REMEMBERED {
                self.next.clear();
            }
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

    fn apply(&mut self, op: &WriteOp) -> Result<u64, StoreError> {
        // A failed write may have left the document in any state: look its position up again.
        let result = self.apply_op(op);
        if result.is_err() {
            if let WriteOp::Append { name, .. } | WriteOp::Compact { name, .. } = op {
                self.next.remove(name);
            }
        }
        result
    }

    fn apply_op(&mut self, op: &WriteOp) -> Result<u64, StoreError> {
        let trees = &self.trees;
        match op {
            WriteOp::Append { name, records } => {
                trees.refuse_deleted(name)?;
                let first = self.next_pos(name)?;
                let added: u64 = records.iter().map(|u| u.len() as u64).sum();
                if let [record] = records.as_slice() {
                    // One record (the actor's usual append: a batch is merged into one) is one
                    // insert: atomic without a batch, whose manifest sled writes as a second,
                    // separately synced log buffer (two disk writes to the same page per flush).
                    trees
                        .docs
                        .insert(log_key(name, first), record.as_ref())
                        .map_err(sled_error)?;
                } else {
                    let mut batch = sled::Batch::default();
                    for (i, record) in records.iter().enumerate() {
                        batch.insert(log_key(name, first + i as u64), record.as_ref());
                    }
                    trees.docs.apply_batch(batch).map_err(sled_error)?;
                }
                self.touch_meta(name, |size| size + added)?;
                let next = first + records.len() as u64;
                self.next.insert(name.clone(), next);
                Ok(next)
            }
            WriteOp::Compact {
                name,
                snapshot,
                upto,
            } => {
                trees.refuse_deleted(name)?;
                if trees
                    .snapshot_upto(name)?
                    .is_some_and(|stored| stored >= *upto)
                {
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
                for item in trees.docs.range(log_prefix(name)..end) {
                    let (key, _) = item.map_err(sled_error)?;
                    batch.remove(key);
                }
                for item in trees.docs.scan_prefix(log_key(name, *upto)) {
                    let (_, value) = item.map_err(sled_error)?;
                    remaining += value.len() as u64;
                }
                trees.docs.apply_batch(batch).map_err(sled_error)?;
                let size = snapshot.len() as u64 + remaining;
                self.touch_meta(name, |_| size)?;
                // Records after `upto` stay; with none, the next position is `upto`.
                self.next.remove(name);
                Ok(1)
            }
            WriteOp::Create { name } => {
                let revived = trees
                    .tombstones
                    .remove(name.as_str())
                    .map_err(sled_error)?
                    .is_some();
                if revived {
                    // Whatever a crash between a deletion's steps may have left is not brought
                    // back.
                    self.remove_data(name)?;
                    self.next.remove(name);
                } else if trees.status(name)? == weft_crdt::store::DocStatus::Exists {
                    return Ok(0);
                }
                self.touch_meta(name, |size| size)?;
                Ok(1)
            }
            WriteOp::Delete { name } => {
                // The tombstone first: from then on nothing can be written back.
                trees
                    .tombstones
                    .insert(name.as_str(), &now_ms().to_be_bytes())
                    .map_err(sled_error)?;
                let existed = self.remove_data(name)?;
                self.next.remove(name);
                Ok(u64::from(existed))
            }
            WriteOp::AddVersion { name, record } => Ok(u64::from(trees.add_version(name, record)?)),
            WriteOp::RewriteVersions { name, drop, put } => {
                trees.rewrite_versions(name, drop, put)?;
                Ok(1)
            }
            WriteOp::Flush => Ok(1),
        }
    }

    /// Removes a document's records, versions and listing entry; whether there were any.
    fn remove_data(&self, name: &DocName) -> Result<bool, StoreError> {
        let trees = &self.trees;
        let mut batch = sled::Batch::default();
        let mut existed = false;
        for item in trees.docs.scan_prefix(doc_prefix(name)) {
            let (key, _) = item.map_err(sled_error)?;
            batch.remove(key);
            existed = true;
        }
        trees.docs.apply_batch(batch).map_err(sled_error)?;
        existed |= trees
            .meta
            .remove(name.as_str())
            .map_err(sled_error)?
            .is_some();
        Ok(existed)
    }

    /// The position the document's next record gets: remembered, or after its last record,
    /// else at its snapshot's `upto`, else 0.
    fn next_pos(&self, name: &DocName) -> Result<LogPos, StoreError> {
        if let Some(next) = self.next.get(name) {
            return Ok(*next);
        }
        let prefix = log_prefix(name);
        if let Some(item) = self.trees.docs.scan_prefix(&prefix).next_back() {
            let (key, _) = item.map_err(sled_error)?;
            return Ok(log_pos(name, &prefix, &key)? + 1);
        }
        Ok(self.trees.snapshot_upto(name)?.unwrap_or(0))
    }

    fn touch_meta(&self, name: &DocName, size: impl Fn(u64) -> u64) -> Result<(), StoreError> {
        let meta = &self.trees.meta;
        let old = meta
            .get(name.as_str())
            .map_err(sled_error)?
            .and_then(|v| decode_meta(&v))
            .map_or(0, |(_, size)| size);
        meta.insert(name.as_str(), &encode_meta(now_ms(), size(old)))
            .map_err(sled_error)?;
        Ok(())
    }
}

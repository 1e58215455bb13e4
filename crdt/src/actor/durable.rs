//! The document and its log: [`DurableDoc`] owns the `yrs::Doc`, applies updates to it (every
//! yrs call guarded), appends to the store, keeps track of what the log holds and compacts it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::{Encoder, EncoderV1};
use yrs::{Doc, ReadTxn, StateVector, Transact};

use super::batch::{Outgoing, Pending};
use super::merge::merge_in_rounds;
use crate::command::Origin;
use crate::config::DocConfig;
use crate::error::DocError;
use crate::name::DocName;
use crate::outbox::CloseReason;
use crate::protocol::{self, IncomingUpdate};
use crate::recovery::{self, Damage};
use crate::store::{DocStore, LogPos, StoreError, StoredDoc};

/// What re-reading the store found (see [`DurableDoc::catch_up`]).
pub(super) enum CaughtUp {
    /// The document now holds everything below `next_pos`; `news` is what it lacked.
    Read {
        next_pos: LogPos,
        news: Option<Bytes>,
    },
    /// The store could not be read; nothing changed.
    Unreadable(StoreError),
    /// yrs rejected what the store holds or panicked: the document is untrustworthy.
    Poisoned,
}

/// How far [`DurableDoc::apply_until_rejected`] got.
enum Applied {
    All,
    /// An update was rejected: the document may hold part of it.
    Rejected,
}

/// The document, its store and what its log holds.
pub(super) struct DurableDoc {
    name: DocName,
    doc: Doc,
    store: Arc<dyn DocStore>,
    config: Arc<DocConfig>,
    /// The log position after the last record this actor knows to be stored.
    next_pos: LogPos,
    /// Records and bytes in the log since the last snapshot.
    log_records: u64,
    log_bytes: u64,
    /// Bytes of the last snapshot.
    snapshot_bytes: u64,
    /// The SyncStep2 frame answering an empty state vector, valid until the document changes.
    full_state: Option<Bytes>,
    /// The last SyncStep2 frame answering a non-empty state vector, and that state vector,
    /// valid until the document changes (clients reconnecting together ask the same).
    last_diff: Option<(StateVector, Bytes)>,
}

impl DurableDoc {
    pub fn new(name: DocName, store: Arc<dyn DocStore>, config: Arc<DocConfig>) -> Self {
        DurableDoc {
            name,
            doc: Doc::new(),
            store,
            config,
            next_pos: 0,
            log_records: 0,
            log_bytes: 0,
            snapshot_bytes: 0,
            full_state: None,
            last_diff: None,
        }
    }

    /// The document changed: cached answers are no longer it.
    fn changed(&mut self) {
        self.full_state = None;
        self.last_diff = None;
    }

    pub fn name(&self) -> &DocName {
        &self.name
    }

    /// Reads everything stored for the document.
    pub async fn load(&self) -> Result<StoredDoc, StoreError> {
        self.store.load(&self.name).await
    }

    /// Takes the log accounting of freshly loaded records (the document itself comes later,
    /// see [`Self::install`]).
    pub fn loaded(&mut self, stored: &StoredDoc) {
        self.next_pos = stored.next_pos;
        self.snapshot_bytes = stored.snapshot.as_ref().map_or(0, |s| s.len() as u64);
        self.log_records = stored.log.len() as u64;
        self.log_bytes = stored.log_bytes();
    }

    /// Replaces the in-memory document with one rebuilt from the stored records (the cached
    /// full state, made from the same records, stays valid unless the caller says otherwise).
    pub fn install(&mut self, doc: Doc) {
        self.doc = doc;
        self.last_diff = None;
    }

    /// The cached answer to an empty state vector (see `restore`).
    pub fn set_full_state(&mut self, frame: Option<Bytes>) {
        self.full_state = frame;
    }

    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }

    /// A client's clock: how many elements the document holds from it.
    pub fn clock(&self, client: &yrs::ClientID) -> u32 {
        self.doc.transact().state_vector().get(client)
    }

    /// The document's whole delete set, as the tail of a v1 update encodes it.
    pub fn delete_set_v1(&self) -> Vec<u8> {
        let txn = self.doc.transact();
        // An update with no blocks: a zero client count, then the delete set.
        let mut deletes_only = txn.encode_state_as_update_v1(&txn.state_vector());
        deletes_only.remove(0);
        deletes_only
    }

    /// How many elements are deleted in the document (deletions only grow).
    pub fn deleted_count(&self) -> u64 {
        let snapshot = self.doc.transact().snapshot();
        snapshot
            .delete_set
            .iter()
            .flat_map(|(_, ranges)| ranges.into_iter().map(|r| (r.end - r.start) as u64))
            .sum()
    }

    /// Runs `read` against the document; `false` if it panicked.
    pub fn read(&self, read: impl FnOnce(&Doc)) -> bool {
        catch_unwind(AssertUnwindSafe(|| read(&self.doc))).is_ok()
    }

    /// The SyncStep2 answering an empty state vector, from the cache or freshly encoded.
    pub fn full_state_frame(&mut self) -> Bytes {
        if let Some(frame) = &self.full_state {
            return frame.clone();
        }
        let frame = protocol::encode_sync_step2(&self.encode_diff(&StateVector::default()));
        self.full_state = Some(frame.clone());
        frame
    }

    /// Applies the updates collected so far, in one transaction, recording the accepted ones in
    /// `out`. yrs can panic on a crafted update or reject one after integrating part of it; then
    /// that update's sender alone is refused, the document is rebuilt from the store with this
    /// batch's accepted updates on top, and the remaining updates are applied to it: nobody
    /// else notices. `out.poisoned` is set only if that rebuild fails (the actor then stops).
    pub async fn apply(&mut self, pending: &mut Pending, out: &mut Outgoing) {
        while !pending.is_empty() && !out.poisoned {
            if let Applied::Rejected = self.apply_until_rejected(pending, out) {
                self.recover(out).await;
            }
        }
        if out.poisoned {
            refuse_all(pending);
        }
    }

    /// Applies updates from the front of `pending` until one is rejected (it is taken, and its
    /// sender refused; the rest stay).
    fn apply_until_rejected(&mut self, pending: &mut Pending, out: &mut Outgoing) -> Applied {
        let name = &self.name;
        let max_doc_bytes = self.config.max_doc_bytes;
        let stored = self.snapshot_bytes + self.log_bytes;
        let doc = &self.doc;
        let mut changed = false;
        let mut rejected = false;
        // The outer guard covers the commit when the transaction is dropped.
        let committed = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            while !rejected && !pending.is_empty() {
                let Some((incoming, origin, authors)) = pending.pop_front() else {
                    break;
                };
                let IncomingUpdate { bytes, update, .. } = incoming;
                if update.is_empty() {
                    // Typically the SyncStep2 of a client with nothing new: nothing to do.
                    if let Origin::Api(reply) = origin {
                        out.api_replies.push(reply);
                    }
                    continue;
                }
                let remote = matches!(origin, Origin::Remote);
                if !remote && stored + out.update_bytes + bytes.len() as u64 > max_doc_bytes {
                    let reason = format!("document would exceed the {max_doc_bytes} byte limit");
                    tracing::warn!(doc = %name, update_bytes = bytes.len(), "update refused: {reason}");
                    match origin {
                        Origin::Session(conn) => {
                            out.closes.push((conn, CloseReason::Refused(reason)))
                        }
                        Origin::Api(reply) => {
                            let _ = reply.send(Err(DocError::Refused(reason)));
                        }
                        Origin::Remote => {}
                    }
                    continue;
                }
                changed = true;
                let error = match catch_unwind(AssertUnwindSafe(|| txn.apply_update(update))) {
                    Ok(Ok(())) => None,
                    // yrs integrates block by block and stops at the first bad one: what came
                    // before it is in the document already, and must never be served.
                    Ok(Err(error)) => Some(format!("update rejected: {error}")),
                    Err(_) => Some("update made the document panic".to_string()),
                };
                rejected = error.is_some();
                if error.is_none() {
                    if !remote {
                        out.local_authors.extend(authors.iter().cloned());
                    }
                    out.written.push((authors, bytes.clone()));
                }
                match (error, origin) {
                    (None, Origin::Session(conn)) => {
                        out.update_bytes += bytes.len() as u64;
                        out.updates.push(bytes);
                        out.update_sources.insert(conn);
                    }
                    (None, Origin::Api(reply)) => {
                        out.update_bytes += bytes.len() as u64;
                        out.updates.push(bytes);
                        out.api_replies.push(reply);
                    }
                    (None, Origin::Remote) => out.remote_updates.push(bytes),
                    (Some(reason), Origin::Remote) => {
                        tracing::warn!(doc = %name, %reason, "update from another node not applied");
                    }
                    (Some(reason), Origin::Session(conn)) => {
                        tracing::warn!(doc = %name, %conn, %reason, "closing connection");
                        out.closes.push((conn, CloseReason::BadMessage(reason)));
                    }
                    (Some(reason), Origin::Api(reply)) => {
                        let _ = reply.send(Err(DocError::Refused(reason)));
                    }
                }
            }
        }));
        if changed {
            self.changed();
        }
        if rejected || committed.is_err() {
            Applied::Rejected
        } else {
            Applied::All
        }
    }

    /// Rebuilds the document from the store and re-applies this batch's accepted updates (they
    /// applied cleanly before the rejected one). On failure `out` is marked poisoned.
    async fn recover(&mut self, out: &mut Outgoing) {
        tracing::warn!(doc = %self.name, "an update was rejected; rebuilding the document from storage");
        let stored = match self.store.load(&self.name).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(doc = %self.name, %error, "cannot re-read the document");
                out.poisoned = true;
                return;
            }
        };
        let recovery::Rebuilt { doc, damage } = recovery::rebuild(&stored);
        recovery::log_damage(&self.name, &damage);
        let accepted = out.updates.iter().chain(&out.remote_updates);
        let reapplied = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            for bytes in accepted {
                let update = yrs::Update::decode_v1(bytes).map_err(drop)?;
                txn.apply_update(update).map_err(drop)?;
            }
            Ok::<(), ()>(())
        }));
        if !matches!(reapplied, Ok(Ok(()))) {
            tracing::error!(doc = %self.name, "the batch's updates do not apply to the stored state");
            out.poisoned = true;
            return;
        }
        self.doc = doc;
        self.changed();
    }

    /// Re-reads the store and merges in what this document lacks (other nodes' updates it
    /// missed): the stored records are rebuilt apart and only the difference touches the live
    /// document (see `recovery::beyond`). Also returns the damaged records found.
    pub async fn catch_up(&mut self) -> (CaughtUp, Vec<Damage>) {
        let stored = match self.load().await {
            Ok(stored) => stored,
            Err(error) => return (CaughtUp::Unreadable(error), Vec::new()),
        };
        let (beyond, damage) = recovery::beyond(&self.state_vector(), &stored);
        let caught = match self.apply_stored(&beyond) {
            Ok(news) => CaughtUp::Read {
                next_pos: stored.next_pos,
                news,
            },
            Err(()) => CaughtUp::Poisoned,
        };
        (caught, damage)
    }

    /// The SyncStep2 answering `state_vector`, from a cache while the document is unchanged.
    pub fn sync_step2_frame(&mut self, state_vector: &StateVector) -> Bytes {
        if state_vector.is_empty() {
            return self.full_state_frame();
        }
        if let Some((cached, frame)) = &self.last_diff {
            if cached == state_vector {
                return frame.clone();
            }
        }
        let frame = protocol::encode_sync_step2(&self.encode_diff(state_vector));
        self.last_diff = Some((state_vector.clone(), frame.clone()));
        frame
    }

    /// Applies what the store holds beyond this document and returns what was new in it
    /// (`None`: nothing), to be sent to the sessions. `Err` if yrs rejected it or panicked.
    fn apply_stored(&mut self, update: &[u8]) -> Result<Option<Bytes>, ()> {
        let doc = &self.doc;
        let applied = catch_unwind(AssertUnwindSafe(|| {
            let update = yrs::Update::decode_v1(update).map_err(drop)?;
            let mut txn = doc.transact_mut();
            txn.apply_update(update).map_err(drop)?;
            let new = !txn.insert_set().is_empty() || !txn.delete_set().is_empty();
            Ok(new.then(|| txn.encode_update_v1()))
        }));
        let news = applied.unwrap_or(Err(()))?;
        if news.is_some() {
            self.changed();
        }
        Ok(news.map(Bytes::from))
    }

    /// Appends records (durable on return) and counts them into the log.
    pub async fn append(&mut self, records: Vec<Bytes>) -> Result<LogPos, StoreError> {
        let count = records.len() as u64;
        let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
        let position = self.store.append(&self.name, records).await?;
        self.next_pos = position;
        self.log_records += count;
        self.log_bytes += bytes;
        Ok(position)
    }

    /// Whether the log has grown past a compaction threshold.
    pub fn needs_compaction(&self) -> bool {
        self.log_records >= self.config.compact_after_updates
            || self.log_bytes >= self.config.compact_after_bytes
    }

    /// Whether the log holds anything since the last snapshot.
    pub fn has_log(&self) -> bool {
        self.log_records > 0
    }

    /// Replaces the snapshot with the current state and drops the log it covers: everything
    /// below `upto`, or below this actor's own last append. Returns the snapshot's size.
    pub async fn compact(&mut self, upto: Option<LogPos>) -> Result<u64, DocError> {
        let started = Instant::now();
        let Some(snapshot) = self.encode_snapshot() else {
            return Err(DocError::Unavailable(
                "yrs could not encode the document's pending updates".into(),
            ));
        };
        let size = snapshot.len() as u64;
        let upto = upto.unwrap_or(self.next_pos).max(self.next_pos);
        self.store
            .compact(&self.name, Bytes::from(snapshot), upto)
            .await?;
        tracing::debug!(doc = %self.name, compacted_records = self.log_records,
            snapshot_bytes = size, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "compacted");
        self.next_pos = upto;
        self.snapshot_bytes = size;
        self.log_records = 0;
        self.log_bytes = 0;
        Ok(size)
    }

    /// Removes the document from the store.
    pub async fn delete(&self) -> Result<bool, StoreError> {
        self.store.delete(&self.name).await
    }

    /// `updates` merged into one update (`None` if there are none or yrs cannot merge them).
    pub fn merge_updates(&self, updates: &[Bytes]) -> Option<Bytes> {
        match updates {
            [] => None,
            [one] => Some(one.clone()),
            many => match merge_in_rounds(many) {
                Ok(merged) => Some(Bytes::from(merged)),
                Err(error) => {
                    tracing::warn!(doc = %self.name, %error, "could not merge updates");
                    None
                }
            },
        }
    }

    /// `updates` as one update frame; if yrs cannot merge them, the whole document state.
    pub fn merged_update_frame(&self, updates: &[Bytes]) -> Option<Bytes> {
        if updates.is_empty() {
            return None;
        }
        let merged = self.merge_updates(updates).unwrap_or_else(|| {
            // Every update decoded on the way in, so this is not expected; fall back to the
            // state they all produced.
            Bytes::from(self.encode_diff(&StateVector::default()))
        });
        Some(protocol::encode_update(&merged))
    }

    /// What the document holds beyond `state_vector`, including updates still waiting for their
    /// dependencies. yrs 0.28 can panic while merging that pending part in (crafted updates leave
    /// pending state it cannot decode again); a client is then sent the integrated state alone,
    /// and the pending part stays in storage until its dependencies arrive.
    pub fn encode_diff(&self, state_vector: &StateVector) -> Vec<u8> {
        self.try_encode_with_pending(state_vector)
            .unwrap_or_else(|| {
                tracing::warn!(doc = %self.name,
                    "yrs could not encode the document's pending updates; sending the integrated state");
                let mut encoder = EncoderV1::new();
                self.doc.transact().encode_diff(state_vector, &mut encoder);
                encoder.to_vec()
            })
    }

    /// The whole state for a snapshot, pending updates included; `None` if yrs cannot encode it
    /// (see [`Self::encode_diff`]): then the log is kept instead, so nothing is lost.
    fn encode_snapshot(&self) -> Option<Vec<u8>> {
        self.try_encode_with_pending(&StateVector::default())
    }

    /// `encode_state_as_update_v1`, or `None` if yrs panics in it.
    fn try_encode_with_pending(&self, state_vector: &StateVector) -> Option<Vec<u8>> {
        let txn = self.doc.transact();
        catch_unwind(AssertUnwindSafe(|| {
            txn.encode_state_as_update_v1(state_vector)
        }))
        .ok()
    }
}

/// Answers an API caller whose update is dropped with its poisoned batch.
fn refuse(origin: Origin) {
    if let Origin::Api(reply) = origin {
        let _ = reply.send(Err(DocError::Unavailable("document reloading".into())));
    }
}

fn refuse_all(pending: &mut Pending) {
    for (_, origin, _) in pending.drain(..) {
        refuse(origin);
    }
}

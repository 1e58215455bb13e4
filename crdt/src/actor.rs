//! The document actor: the one task that owns a document's `yrs::Doc` and `Awareness`.
//!
//! Sessions send [`DocCommand`]s to its mailbox. The actor takes them in batches: it applies
//! every update of a batch in one transaction, appends them to the store in one durable write
//! (group commit), and only then sends anything out: replies, awareness relays (several merged
//! into one frame) and one merged update frame for the whole batch, encoded once and shared by
//! every session. So no client ever sees state the store does not hold, and a burst of N updates
//! costs one write and one frame per session instead of N. A document with many sessions holds
//! a batch back a little while it is busy (see `DocActor::coalesce`), so that its batches, and
//! not its frame counts, grow.
//!
//! Loading is split so that a new client is not kept waiting for the decode: a client asking
//! with an empty state vector (a fresh browser tab) is answered straight from the stored records
//! (SyncStep2 = the one stored record as read, or all records merged), and the document is
//! decoded and rebuilt in memory right after. A record that turns out damaged then is skipped,
//! and the clients answered from the records are closed so that they reconnect and get the
//! rebuilt state. The encoded full state is cached until the document changes.
//!
//! In a cluster the actor also subscribes to the document's fan-out before loading, publishes
//! what its own sessions changed (after it is durable) and applies what other nodes publish
//! without storing or re-publishing it: the origin node already did both.
//!
//! Each session has a bounded outgoing queue. A session whose queue is full is disconnected (its
//! client reconnects and resyncs); the actor never waits for a slow client and never drops a frame
//! silently.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::sleep_until;
use yrs::sync::awareness::{Awareness, AwarenessUpdate};
use yrs::updates::encoder::{Encoder, EncoderV1};
use yrs::{ClientID, Doc, ReadTxn, StateVector, Transact};

use crate::command::{CloseReason, ConnId, DocCommand, DocError, Outbound};
use crate::config::DocConfig;
use crate::fanout::{Fanout, NodeId, RemoteMessage};
use crate::name::DocName;
use crate::protocol::{self, ClientMessage, IncomingUpdate};
use crate::recovery;
use crate::registry::{ChangeListener, RegistryInner};
use crate::store::{DocStore, StoredDoc};

/// How long a freshly loaded document waits before it rebuilds the in-memory document when
/// nothing needs it: for its first client's SyncStep1, then for that client's answer to be
/// written (the rebuild would compete with the write for the CPU).
const RESTORE_GRACE: std::time::Duration = std::time::Duration::from_millis(5);

/// Documents with fewer sessions than this are never held back for coalescing.
const COALESCE_MIN_SESSIONS: usize = 16;

/// How often adaptive coalescing looks at the sessions' queues (and the mailbox) again.
const COALESCE_POLL: std::time::Duration = std::time::Duration::from_micros(500);

/// Longest gap broadcast pacing puts between two broadcasts, however many sessions.
const BROADCAST_PACE_MAX: std::time::Duration = std::time::Duration::from_millis(20);

/// A joined session as the actor sees it.
struct SessionEntry {
    outbound: mpsc::Sender<Outbound>,
    can_write: bool,
    /// Awareness client ids this connection has announced; removed when it leaves.
    awareness_clients: HashSet<ClientID>,
}

/// Where an accepted update came from.
enum UpdateOrigin {
    Session(ConnId),
    Api(tokio::sync::oneshot::Sender<Result<(), DocError>>),
    /// Another node; already stored and published there.
    Remote,
}

/// Everything a batch produced, held back until the batch's updates are durable.
#[derive(Default)]
struct Outgoing {
    /// Frames for one session each, in order.
    direct: Vec<(ConnId, Bytes)>,
    /// Awareness frames for every session, as received (or as encoded for a removal).
    awareness_frames: Vec<Bytes>,
    /// The awareness clients those frames changed: with more than one frame, every session gets
    /// one frame with these clients' current states instead (see [`DocActor::awareness_relay`]).
    awareness_changed: Vec<ClientID>,
    /// Accepted updates, to store and then broadcast as one merged frame.
    updates: Vec<Bytes>,
    /// `updates` merged into one (set by `persist`): the batch's one log record and the body of
    /// its broadcast frame.
    merged: Option<Bytes>,
    /// Total bytes of `updates`.
    update_bytes: u64,
    /// Updates from other nodes: broadcast to local sessions, neither stored nor published.
    remote_updates: Vec<Bytes>,
    /// Awareness frames from local sessions, for the other nodes.
    publish: Vec<Bytes>,
    /// The fan-out may have missed messages: re-read the store after this batch.
    resync: bool,
    /// Sessions whose updates are in `updates` (they already have them).
    update_sources: HashSet<ConnId>,
    /// API callers to answer once the updates are durable.
    api_replies: Vec<tokio::sync::oneshot::Sender<Result<(), DocError>>>,
    /// Reads to answer once the updates they saw are durable.
    read_replies: Vec<tokio::sync::oneshot::Sender<Result<(), DocError>>>,
    /// Sessions to close after sending, with the reason.
    closes: Vec<(ConnId, CloseReason)>,
    /// yrs panicked on or rejected an update: the in-memory document is untrustworthy.
    poisoned: bool,
}

impl Outgoing {
    /// Queues an awareness frame for every session; `changed` are the clients it changed.
    fn relay_awareness(&mut self, frame: Bytes, changed: impl IntoIterator<Item = ClientID>) {
        self.awareness_frames.push(frame);
        self.awareness_changed.extend(changed);
    }
}

/// How the actor's loop ends.
enum Exit {
    /// Keep running.
    Continue,
    /// Stop now (shutdown, eviction, failure); the registry entry is already handled.
    Stop,
}

pub(crate) struct DocActor {
    name: DocName,
    generation: u64,
    awareness: Awareness,
    sessions: HashMap<ConnId, SessionEntry>,
    store: Arc<dyn DocStore>,
    config: Arc<DocConfig>,
    registry: Weak<RegistryInner>,
    mailbox: mpsc::Receiver<DocCommand>,
    /// Told after each durable append (webhooks).
    on_change: Option<ChangeListener>,
    /// Relays changes to and from the other nodes of a cluster.
    fanout: Arc<dyn Fanout>,
    /// This actor's own mailbox, for the fan-out subscription (weak: it must not keep the
    /// mailbox open).
    own_mailbox: mpsc::WeakSender<DocCommand>,
    /// Awareness client ids announced through other nodes, by node.
    remote_clients: HashMap<NodeId, HashSet<ClientID>>,
    /// Sequence number of the next log append.
    next_seq: u64,
    /// Updates and bytes in the log since the last snapshot.
    log_updates: u64,
    log_bytes: u64,
    /// Bytes of the last snapshot.
    snapshot_bytes: u64,
    /// When the last session left (the idle-unload clock), if none is connected.
    idle_since: Option<Instant>,
    /// When the last frame for every session (an update or awareness relay) went out (for
    /// broadcast pacing).
    last_broadcast: Option<tokio::time::Instant>,
    /// Stored records not yet applied to the document (see the module comment).
    unrestored: Option<StoredDoc>,
    /// Sessions that joined before the document was rebuilt: they get the server's SyncStep1
    /// once it is.
    awaiting_step1: Vec<ConnId>,
    /// Sessions answered straight from the stored records (closed if those turn out damaged).
    answered_from_store: Vec<ConnId>,
    /// When the document is rebuilt if nothing needs it sooner.
    restore_deadline: tokio::time::Instant,
    /// The SyncStep2 frame answering an empty state vector, valid until the document changes.
    full_state: Option<Bytes>,
}

impl DocActor {
    /// An actor for `name` (not yet loaded), serving `mailbox` on behalf of `registry`.
    pub(crate) fn new(
        name: DocName,
        generation: u64,
        registry: &Arc<RegistryInner>,
        mailbox: mpsc::Receiver<DocCommand>,
        own_mailbox: mpsc::WeakSender<DocCommand>,
    ) -> Self {
        DocActor {
            name,
            generation,
            awareness: Awareness::new(Doc::new()),
            sessions: HashMap::new(),
            store: registry.store.clone(),
            config: registry.config.clone(),
            registry: Arc::downgrade(registry),
            mailbox,
            on_change: registry.options.on_change.clone(),
            fanout: registry.options.fanout.clone(),
            own_mailbox,
            remote_clients: HashMap::new(),
            next_seq: 0,
            log_updates: 0,
            log_bytes: 0,
            snapshot_bytes: 0,
            idle_since: Some(Instant::now()),
            last_broadcast: None,
            unrestored: None,
            awaiting_step1: Vec::new(),
            answered_from_store: Vec::new(),
            restore_deadline: tokio::time::Instant::now(),
            full_state: None,
        }
    }

    /// Loads the document, then serves the mailbox until unloaded or stopped.
    pub(crate) async fn run(self) {
        let gauge = metrics::gauge!("weft_documents_loaded");
        gauge.increment(1.0);
        self.serve().await;
        gauge.decrement(1.0);
    }

    async fn serve(mut self) {
        let started = Instant::now();
        let shared = self.fanout.is_shared();
        if shared {
            // Subscribe first: whatever another node publishes from now on reaches us, and
            // whatever it published before is already in the store we are about to read.
            let subscribed = self
                .fanout
                .subscribe(&self.name, self.generation, self.own_mailbox.clone())
                .await;
            if let Err(error) = subscribed {
                tracing::error!(doc = %self.name, %error, "failed to subscribe to the cluster fan-out");
                self.fail(format!("cluster fan-out unavailable: {error}"));
                return;
            }
        }
        match self.store.load(&self.name).await {
            Ok(stored) => self.begin_restore(stored),
            Err(error) => {
                tracing::error!(doc = %self.name, %error, "failed to load document");
                self.fail(format!("failed to load: {error}"));
                return;
            }
        }
        tracing::debug!(doc = %self.name, elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            log_updates = self.log_updates, "document loaded");
        if shared {
            // Nodes that have the document loaded answer with their clients' presence.
            self.fanout.publish(
                &self.name,
                RemoteMessage::Protocol(protocol::encode_query_awareness()),
            );
        }

        self.restore_deadline = tokio::time::Instant::now() + RESTORE_GRACE;
        loop {
            let idle_deadline = self.idle_deadline();
            let first = tokio::select! {
                command = self.mailbox.recv() => match command {
                    Some(command) => command,
                    None => return,
                },
                _ = sleep_until(self.restore_deadline), if self.unrestored.is_some() => {
                    self.finish_restore();
                    continue;
                }
                _ = sleep_until(idle_deadline), if self.idle_since.is_some() && self.unrestored.is_none() => {
                    if self.unload().await {
                        return;
                    }
                    continue;
                }
            };
            self.coalesce().await;
            let mut batch = Vec::with_capacity(16);
            batch.push(first);
            while batch.len() < self.config.max_batch {
                match self.mailbox.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            if let Exit::Stop = self.handle_batch(batch).await {
                return;
            }
        }
    }

    /// Adaptive coalescing, for documents with many sessions, so that the updates arriving
    /// meanwhile go out merged into one frame instead of one frame each:
    /// - pacing: broadcasts (updates, awareness relays) are at least `broadcast_pace` per
    ///   session apart (at most [`BROADCAST_PACE_MAX`]), about what writing one to every
    ///   session costs; so one busy document cannot spend the whole core on per-frame costs,
    ///   and an update arriving longer than that after the last broadcast goes out at once;
    /// - while many sessions still have frames of earlier broadcasts queued, wait (at most
    ///   `coalesce_max`).
    ///
    /// When the document is quiet there is no delay at all; under load the batches grow and the
    /// frames per session per second shrink. A full mailbox ends the wait.
    async fn coalesce(&self) {
        // With few sessions a frame costs little, and one idle or closing client must not delay
        // the others.
        if self.sessions.len() < COALESCE_MIN_SESSIONS {
            return;
        }
        let pace = self
            .config
            .broadcast_pace
            .saturating_mul(u32::try_from(self.sessions.len()).unwrap_or(u32::MAX))
            .min(BROADCAST_PACE_MAX);
        if let Some(last) = self.last_broadcast.filter(|_| !pace.is_zero()) {
            if !self.hold_while(last + pace, |_| true).await {
                return;
            }
        }
        let max = self.config.coalesce_max;
        if !max.is_zero() {
            let deadline = tokio::time::Instant::now() + max;
            self.hold_while(deadline, Self::sessions_behind).await;
        }
    }

    /// Waits while `holding` is true, until `deadline`, looking again every [`COALESCE_POLL`].
    /// False if it stopped early because the mailbox filled up (a full batch is waiting).
    async fn hold_while(
        &self,
        deadline: tokio::time::Instant,
        holding: impl Fn(&Self) -> bool,
    ) -> bool {
        while holding(self) && tokio::time::Instant::now() < deadline {
            if self.mailbox.len() >= self.config.max_batch {
                return false;
            }
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + COALESCE_POLL))
                .await;
        }
        true
    }

    /// Whether more than an eighth of the sessions have frames waiting to be written.
    fn sessions_behind(&self) -> bool {
        let threshold = self.sessions.len() / 8 + 1;
        self.sessions
            .values()
            .filter(|s| s.outbound.capacity() < s.outbound.max_capacity())
            .nth(threshold - 1)
            .is_some()
    }

    fn idle_deadline(&self) -> tokio::time::Instant {
        let since = self.idle_since.unwrap_or_else(Instant::now);
        tokio::time::Instant::from_std(since + self.config.idle_unload)
    }

    /// Takes the stored records; the document itself is rebuilt by [`Self::finish_restore`], as
    /// soon as something needs it. Until then an empty state vector is answered from the records.
    fn begin_restore(&mut self, stored: StoredDoc) {
        self.next_seq = stored.next_seq;
        self.snapshot_bytes = stored.snapshot.as_ref().map_or(0, |s| s.len() as u64);
        self.log_updates = stored.log.len() as u64;
        self.log_bytes = stored.log_bytes();
        if stored.is_empty() {
            return;
        }
        // The whole state in one SyncStep2: clients treat it as "synced".
        let records: Vec<&Bytes> = stored
            .snapshot
            .iter()
            .chain(stored.log.iter().map(|e| &e.update))
            .collect();
        let full_state = match records.as_slice() {
            // Exactly the bytes a new client needs, sent before they are decoded (decoding a
            // large document takes longer than reading and sending it).
            [one] => Some(protocol::encode_sync_step2(one)),
            // Merging decodes every record: one that is damaged fails it, and the document is
            // rebuilt (skipping that record) before anyone is answered.
            many => match catch_unwind(|| merge_in_rounds(many)) {
                Ok(Ok(merged)) => Some(protocol::encode_sync_step2(&merged)),
                _ => None,
            },
        };
        self.unrestored = Some(stored);
        match full_state {
            Some(frame) => self.full_state = Some(frame),
            None => self.finish_restore(),
        }
    }

    /// Logs stored records that were skipped because they do not decode or apply.
    fn report_damage(&self, damage: &[recovery::Damage]) {
        for damage in damage {
            tracing::error!(doc = %self.name, record = %damage.record, reason = %damage.reason,
                "stored record is damaged; skipped (run `weft fsck` to list damaged documents)");
        }
    }

    /// Decodes and applies the records [`Self::begin_restore`] took (damaged ones are reported
    /// and skipped, see `recovery`), then sends the server's SyncStep1 to the sessions that
    /// joined meanwhile.
    fn finish_restore(&mut self) {
        let Some(stored) = self.unrestored.take() else {
            return;
        };
        let started = Instant::now();
        let damage = recovery::rebuild_into(self.awareness.doc(), &stored);
        self.report_damage(&damage);
        tracing::debug!(doc = %self.name, elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "document rebuilt");
        let mut out = Outgoing::default();
        let answered = std::mem::take(&mut self.answered_from_store);
        if !damage.is_empty() {
            // Those clients were sent the damaged records: make them start over.
            self.full_state = None;
            for conn in answered {
                out.closes.push((
                    conn,
                    CloseReason::Unavailable("stored data was damaged; reconnect".into()),
                ));
            }
        }
        let state_vector = self.awareness.doc().transact().state_vector();
        for conn in std::mem::take(&mut self.awaiting_step1) {
            out.direct
                .push((conn, protocol::encode_sync_step1(&state_vector)));
        }
        self.deliver(out);
    }

    /// Whether `command` can be handled before the document is rebuilt.
    fn needs_no_document(command: &DocCommand) -> bool {
        match command {
            DocCommand::Join { .. } | DocCommand::Leave { .. } => true,
            DocCommand::Message { message, .. } => match message {
                ClientMessage::SyncStep1(state_vector) => state_vector.is_empty(),
                ClientMessage::Awareness { .. } | ClientMessage::QueryAwareness => true,
                _ => false,
            },
            _ => false,
        }
    }

    /// The SyncStep2 answering an empty state vector, from the cache or freshly encoded.
    fn full_state_frame(&mut self) -> Bytes {
        if let Some(frame) = &self.full_state {
            return frame.clone();
        }
        let frame = protocol::encode_sync_step2(&self.encode_diff(&StateVector::default()));
        self.full_state = Some(frame.clone());
        frame
    }

    async fn handle_batch(&mut self, batch: Vec<DocCommand>) -> Exit {
        if self.unrestored.is_some() && !batch.iter().all(Self::needs_no_document) {
            self.finish_restore();
        }
        let mut out = Outgoing::default();
        let mut stop: Option<DocCommand> = None;
        {
            let mut pending_updates: Vec<(IncomingUpdate, UpdateOrigin)> = Vec::new();
            for command in batch {
                if stop.is_some() {
                    // A stop command ends the batch; later commands see a stopped actor.
                    refuse(command, DocError::Unloaded);
                    continue;
                }
                match command {
                    DocCommand::Join {
                        conn,
                        outbound,
                        can_write,
                        reply,
                    } => {
                        // Earlier updates of this batch must be in the state the joiner sees.
                        self.apply_pending(&mut pending_updates, &mut out);
                        self.join(conn, outbound, can_write, &mut out);
                        let _ = reply.send(Ok(()));
                    }
                    DocCommand::Message { conn, message } => match message {
                        ClientMessage::Update(update) => match self.sessions.get(&conn) {
                            None => {}
                            Some(session) if !session.can_write => {
                                out.direct.push((
                                    conn,
                                    protocol::encode_permission_denied(
                                        "read-only connection: update ignored",
                                    ),
                                ));
                            }
                            Some(_) => pending_updates.push((update, UpdateOrigin::Session(conn))),
                        },
                        other => {
                            self.apply_pending(&mut pending_updates, &mut out);
                            self.handle_message(conn, other, &mut out);
                        }
                    },
                    DocCommand::Leave { conn } => {
                        self.apply_pending(&mut pending_updates, &mut out);
                        self.remove_session(conn, &mut out);
                    }
                    DocCommand::ApplyUpdate { update, reply } => {
                        match protocol::decode_bare_update(update) {
                            Ok(update) => pending_updates.push((update, UpdateOrigin::Api(reply))),
                            Err(error) => {
                                let _ = reply.send(Err(DocError::Refused(error.to_string())));
                            }
                        }
                    }
                    DocCommand::Read { read, reply } => {
                        self.apply_pending(&mut pending_updates, &mut out);
                        match catch_unwind(AssertUnwindSafe(|| read(self.awareness.doc()))) {
                            // The read may have seen this batch's updates: it is answered only
                            // once they are stored (and never if the batch is dropped).
                            Ok(()) => out.read_replies.push(reply),
                            Err(_) => {
                                let _ =
                                    reply.send(Err(DocError::Unavailable("read panicked".into())));
                            }
                        }
                    }
                    command @ (DocCommand::Delete { .. }
                    | DocCommand::Shutdown { .. }
                    | DocCommand::Remote {
                        message: RemoteMessage::Deleted,
                        ..
                    }) => {
                        stop = Some(command);
                    }
                    DocCommand::Remote {
                        from,
                        message: RemoteMessage::Protocol(frame),
                    } => match protocol::decode_client_message(frame) {
                        Ok(ClientMessage::Update(update)) => {
                            pending_updates.push((update, UpdateOrigin::Remote))
                        }
                        Ok(message) => {
                            self.apply_pending(&mut pending_updates, &mut out);
                            self.handle_remote_message(from, message, &mut out);
                        }
                        Err(error) => {
                            tracing::warn!(doc = %self.name, node = %from, %error,
                                "ignoring a malformed message from another node");
                        }
                    },
                    DocCommand::NodeGone { node } => {
                        self.apply_pending(&mut pending_updates, &mut out);
                        self.forget_node(node, &mut out);
                    }
                    DocCommand::Resync => out.resync = true,
                }
            }
            self.apply_pending(&mut pending_updates, &mut out);
        }

        if out.poisoned {
            // Nothing of this batch is stored or sent. The offender is told why; everyone else
            // reconnects to a fresh actor that reloads the stored state (their clients resend
            // whatever of theirs was in this batch).
            tracing::error!(doc = %self.name, "yrs rejected or panicked on an update; reloading the document from storage");
            for (conn, reason) in out.closes.drain(..) {
                if let Some(session) = self.sessions.remove(&conn) {
                    let _ = session.outbound.try_send(Outbound::Close(reason));
                }
            }
            for reply in out.api_replies.drain(..) {
                let _ = reply.send(Err(DocError::Unavailable("document reloading".into())));
            }
            // What a read saw is gone with the batch: it runs again on the reloaded document.
            for reply in out.read_replies.drain(..) {
                let _ = reply.send(Err(DocError::Unloaded));
            }
            if let Some(command) = stop {
                refuse(command, DocError::Unloaded);
            }
            // Whatever is still queued (a client joining right now) retries on a fresh actor,
            // which reloads the stored state.
            self.stop(
                CloseReason::Unavailable("document reloading after a rejected update".into()),
                || DocError::Unloaded,
            );
            return Exit::Stop;
        }

        if !self.persist(&mut out).await {
            return Exit::Stop;
        }
        let resync = out.resync;
        self.deliver(out);
        if resync {
            self.resync().await;
        }

        match stop {
            Some(DocCommand::Delete { reply }) => {
                let deleted = self.store.delete(&self.name).await.map_err(DocError::from);
                if deleted.is_ok() {
                    tracing::info!(doc = %self.name, "document deleted");
                    if self.fanout.is_shared() {
                        self.fanout.publish(&self.name, RemoteMessage::Deleted);
                    }
                }
                self.stop(CloseReason::Deleted, || DocError::Unloaded);
                let _ = reply.send(deleted);
                return Exit::Stop;
            }
            Some(DocCommand::Shutdown { reply }) => {
                self.stop(CloseReason::ShuttingDown, || DocError::Unloaded);
                let _ = reply.send(Ok(()));
                return Exit::Stop;
            }
            Some(DocCommand::Remote { from, .. }) => {
                tracing::info!(doc = %self.name, node = %from, "document deleted on another node");
                self.stop(CloseReason::Deleted, || DocError::Unloaded);
                return Exit::Stop;
            }
            _ => {}
        }
        if self.log_updates >= self.config.compact_after_updates
            || self.log_bytes >= self.config.compact_after_bytes
        {
            if let Err(error) = self.compact().await {
                // The log is intact; compaction is retried after the next append.
                tracing::warn!(doc = %self.name, %error, "compaction failed");
            }
        }
        Exit::Continue
    }

    /// Applies the updates collected so far in one transaction, recording the accepted ones.
    /// If yrs panics (a crafted update can trigger bugs in it) or rejects an update (which it may
    /// have half applied), the document is marked poisoned: its in-memory state can no longer be
    /// trusted and must not be touched again.
    fn apply_pending(
        &mut self,
        pending: &mut Vec<(IncomingUpdate, UpdateOrigin)>,
        out: &mut Outgoing,
    ) {
        if pending.is_empty() || out.poisoned {
            for (_, origin) in pending.drain(..) {
                if let UpdateOrigin::Api(reply) = origin {
                    let _ = reply.send(Err(DocError::Unavailable("document reloading".into())));
                }
            }
            return;
        }
        let name = self.name.clone();
        let max_doc_bytes = self.config.max_doc_bytes;
        let stored = self.snapshot_bytes + self.log_bytes;
        let doc = self.awareness.doc();
        let mut full_state_changed = false;
        // The outer guard covers the commit when the transaction is dropped.
        let committed = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            for (incoming, origin) in pending.drain(..) {
                if out.poisoned {
                    if let UpdateOrigin::Api(reply) = origin {
                        let _ = reply.send(Err(DocError::Unavailable("document reloading".into())));
                    }
                    continue;
                }
                let remote = matches!(origin, UpdateOrigin::Remote);
                if !remote
                    && stored + out.update_bytes + incoming.bytes.len() as u64 > max_doc_bytes
                {
                    let reason = format!("document would exceed the {max_doc_bytes} byte limit");
                    tracing::warn!(doc = %name, update_bytes = incoming.bytes.len(), "update refused: {reason}");
                    match origin {
                        UpdateOrigin::Session(conn) => {
                            out.closes.push((conn, CloseReason::Refused(reason)))
                        }
                        UpdateOrigin::Api(reply) => {
                            let _ = reply.send(Err(DocError::Refused(reason)));
                        }
                        UpdateOrigin::Remote => {}
                    }
                    continue;
                }
                let IncomingUpdate { bytes, update, .. } = incoming;
                if update.is_empty() {
                    // Typically the SyncStep2 of a client with nothing new: nothing to do.
                    if let UpdateOrigin::Api(reply) = origin {
                        out.api_replies.push(reply);
                    }
                    continue;
                }
                // Whatever happens next, the cached full state may no longer be it.
                full_state_changed = true;
                let error = match catch_unwind(AssertUnwindSafe(|| txn.apply_update(update))) {
                    Ok(Ok(())) => None,
                    // yrs integrates block by block and stops at the first bad one: what came
                    // before it is in the document already. That half must never be served,
                    // so the document reloads from storage, as after a panic.
                    Ok(Err(error)) => {
                        out.poisoned = true;
                        Some(format!("update rejected: {error}"))
                    }
                    Err(_) => {
                        out.poisoned = true;
                        Some("update made the document panic".to_string())
                    }
                };
                match (error, origin) {
                    (None, UpdateOrigin::Session(conn)) => {
                        out.update_bytes += bytes.len() as u64;
                        out.updates.push(bytes);
                        out.update_sources.insert(conn);
                    }
                    (None, UpdateOrigin::Api(reply)) => {
                        out.update_bytes += bytes.len() as u64;
                        out.updates.push(bytes);
                        out.api_replies.push(reply);
                    }
                    (None, UpdateOrigin::Remote) => out.remote_updates.push(bytes),
                    (Some(reason), UpdateOrigin::Remote) => {
                        tracing::warn!(doc = %name, %reason, "update from another node not applied");
                    }
                    (Some(reason), UpdateOrigin::Session(conn)) => {
                        tracing::warn!(doc = %name, %conn, %reason, "closing connection");
                        out.closes.push((conn, CloseReason::BadMessage(reason)));
                    }
                    (Some(reason), UpdateOrigin::Api(reply)) => {
                        let _ = reply.send(Err(DocError::Refused(reason)));
                    }
                }
            }
        }));
        if committed.is_err() {
            out.poisoned = true;
        }
        if full_state_changed {
            self.full_state = None;
        }
    }

    fn join(
        &mut self,
        conn: ConnId,
        outbound: mpsc::Sender<Outbound>,
        can_write: bool,
        out: &mut Outgoing,
    ) {
        self.sessions.insert(
            conn,
            SessionEntry {
                outbound,
                can_write,
                awareness_clients: HashSet::new(),
            },
        );
        self.idle_since = None;
        if self.unrestored.is_some() {
            self.awaiting_step1.push(conn);
        } else {
            let state_vector = self.awareness.doc().transact().state_vector();
            out.direct
                .push((conn, protocol::encode_sync_step1(&state_vector)));
        }
        if let Some(frame) = self.encode_all_awareness() {
            out.direct.push((conn, frame));
        }
    }

    fn encode_all_awareness(&self) -> Option<Bytes> {
        match self.awareness.update() {
            Ok(update) if !update.clients.is_empty() => Some(protocol::encode_awareness(&update)),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(doc = %self.name, %error, "could not encode awareness");
                None
            }
        }
    }

    fn handle_message(&mut self, conn: ConnId, message: ClientMessage, out: &mut Outgoing) {
        if !self.sessions.contains_key(&conn) {
            return; // Closed while this message was queued.
        }
        match message {
            ClientMessage::SyncStep1(state_vector) if state_vector.is_empty() => {
                if self.unrestored.is_some() {
                    if self.answered_from_store.is_empty() {
                        // The first answer from the records: rebuild the document once it has
                        // been written (or as soon as a command needs the document).
                        self.restore_deadline = tokio::time::Instant::now() + RESTORE_GRACE;
                    }
                    self.answered_from_store.push(conn);
                }
                let frame = self.full_state_frame();
                out.direct.push((conn, frame));
            }
            ClientMessage::SyncStep1(state_vector) => {
                let update = self.encode_diff(&state_vector);
                out.direct
                    .push((conn, protocol::encode_sync_step2(&update)));
            }
            ClientMessage::Awareness { update, frame } => {
                self.apply_awareness(AwarenessSource::Session(conn), update, frame, out);
            }
            ClientMessage::QueryAwareness => {
                if let Some(frame) = self.encode_all_awareness() {
                    out.direct.push((conn, frame));
                }
            }
            ClientMessage::Auth => {
                tracing::debug!(doc = %self.name, %conn, "ignoring auth message from client");
            }
            ClientMessage::Update(_) => unreachable!("updates are batched by the caller"),
        }
    }

    /// What the document holds beyond `state_vector`, including updates still waiting for their
    /// dependencies. yrs 0.28 can panic while merging that pending part in (crafted updates leave
    /// pending state it cannot decode again); a client is then sent the integrated state alone,
    /// and the pending part stays in storage until its dependencies arrive.
    fn encode_diff(&self, state_vector: &StateVector) -> Vec<u8> {
        self.try_encode_with_pending(state_vector)
            .unwrap_or_else(|| {
                tracing::warn!(doc = %self.name,
                    "yrs could not encode the document's pending updates; sending the integrated state");
                let mut encoder = EncoderV1::new();
                self.awareness
                    .doc()
                    .transact()
                    .encode_diff(state_vector, &mut encoder);
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
        let txn = self.awareness.doc().transact();
        catch_unwind(AssertUnwindSafe(|| {
            txn.encode_state_as_update_v1(state_vector)
        }))
        .ok()
    }

    fn apply_awareness(
        &mut self,
        source: AwarenessSource,
        update: AwarenessUpdate,
        frame: Bytes,
        out: &mut Outgoing,
    ) {
        let announced: Vec<(ClientID, bool)> = update
            .clients
            .iter()
            .map(|(id, entry)| (*id, entry.json.as_ref() != "null"))
            .collect();
        match self.awareness.apply_update_summary(update) {
            Ok(Some(summary)) => {
                let clients = match source {
                    AwarenessSource::Session(conn) => self
                        .sessions
                        .get_mut(&conn)
                        .map(|s| &mut s.awareness_clients),
                    AwarenessSource::Node(node) => {
                        Some(self.remote_clients.entry(node).or_default())
                    }
                };
                if let Some(clients) = clients {
                    for (id, present) in announced {
                        if present {
                            clients.insert(id);
                        } else {
                            clients.remove(&id);
                        }
                    }
                }
                if matches!(source, AwarenessSource::Session(_)) && self.fanout.is_shared() {
                    out.publish.push(frame.clone());
                }
                // Relayed to everyone, the sender included: y-websocket clients count it as a
                // sign of life, as the reference server does.
                out.relay_awareness(frame, summary.all_changes());
            }
            Ok(None) => {}
            Err(error) => match source {
                AwarenessSource::Session(conn) => {
                    tracing::warn!(doc = %self.name, %conn, %error, "awareness update rejected");
                    out.closes
                        .push((conn, CloseReason::BadMessage(error.to_string())));
                }
                AwarenessSource::Node(node) => {
                    tracing::warn!(doc = %self.name, %node, %error,
                        "awareness update from another node rejected");
                }
            },
        }
    }

    /// Handles a message another node relayed (updates are batched by the caller).
    fn handle_remote_message(&mut self, from: NodeId, message: ClientMessage, out: &mut Outgoing) {
        match message {
            ClientMessage::Awareness { update, frame } => {
                self.apply_awareness(AwarenessSource::Node(from), update, frame, out);
            }
            ClientMessage::QueryAwareness => {
                // A node just loaded the document: tell it who is here.
                let local: Vec<ClientID> = self
                    .sessions
                    .values()
                    .flat_map(|s| s.awareness_clients.iter().copied())
                    .collect();
                if local.is_empty() {
                    return;
                }
                match self.awareness.update_with_clients(local) {
                    Ok(update) => out.publish.push(protocol::encode_awareness(&update)),
                    Err(error) => {
                        tracing::warn!(doc = %self.name, %error, "could not encode awareness")
                    }
                }
            }
            other => {
                tracing::debug!(doc = %self.name, node = %from, message = ?std::mem::discriminant(&other),
                    "ignoring a message from another node");
            }
        }
    }

    /// Forgets a session and tells the others its awareness clients are gone.
    fn remove_session(&mut self, conn: ConnId, out: &mut Outgoing) {
        let Some(session) = self.sessions.remove(&conn) else {
            return;
        };
        if self.sessions.is_empty() {
            self.idle_since = Some(Instant::now());
        }
        let gone: Vec<ClientID> = session.awareness_clients.into_iter().collect();
        if let Some(frame) = self.remove_awareness_states(&gone) {
            if self.fanout.is_shared() {
                out.publish.push(frame.clone());
            }
            out.relay_awareness(frame, gone);
        }
    }

    /// Another node left: its clients' presence goes (local sessions are told; nobody else
    /// needs to be, every node notices by itself).
    fn forget_node(&mut self, node: NodeId, out: &mut Outgoing) {
        let Some(gone) = self.remote_clients.remove(&node) else {
            return;
        };
        let gone: Vec<ClientID> = gone.into_iter().collect();
        if let Some(frame) = self.remove_awareness_states(&gone) {
            out.relay_awareness(frame, gone);
        }
    }

    /// Removes awareness states and encodes the removal, if there was anything to remove.
    fn remove_awareness_states(&mut self, gone: &[ClientID]) -> Option<Bytes> {
        if gone.is_empty() {
            return None;
        }
        for id in gone {
            self.awareness.remove_state(*id);
        }
        match self.awareness.update_with_clients(gone.iter().copied()) {
            Ok(update) => Some(protocol::encode_awareness(&update)),
            Err(error) => {
                tracing::warn!(doc = %self.name, %error, "could not encode removal");
                None
            }
        }
    }

    /// Re-reads the shared store and merges it in, sending local sessions what they lacked.
    /// Used after the fan-out lost its connection and may have missed other nodes' updates.
    async fn resync(&mut self) {
        let stored = match self.store.load(&self.name).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(doc = %self.name, %error, "resync could not read the store");
                return;
            }
        };
        let before = self.awareness.doc().transact().state_vector();
        self.report_damage(&recovery::rebuild_into(self.awareness.doc(), &stored));
        self.full_state = None;
        if self.awareness.doc().transact().state_vector() == before {
            return;
        }
        tracing::info!(doc = %self.name, "resync found updates this node had missed");
        let missed = Outgoing {
            remote_updates: vec![Bytes::from(self.encode_diff(&before))],
            ..Outgoing::default()
        };
        self.deliver(missed);
    }

    /// Makes the batch's updates durable. On failure every session is closed (clients keep
    /// their edits and resend them to the next actor) and the actor stops: the in-memory state
    /// is ahead of the store and must not be served.
    async fn persist(&mut self, out: &mut Outgoing) -> bool {
        if out.updates.is_empty() {
            return true;
        }
        let count = out.updates.len() as u64;
        // The whole batch is one log record: one key to write instead of one per update (the
        // store's cost is per record), and the same bytes the broadcast frame carries.
        out.merged = self.merge_updates(&out.updates);
        let records = match &out.merged {
            Some(merged) => vec![merged.clone()],
            None => out.updates.clone(),
        };
        let record_count = records.len() as u64;
        let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
        let started = Instant::now();
        match self.store.append(&self.name, self.next_seq, records).await {
            Ok(()) => {
                let elapsed = started.elapsed();
                metrics::histogram!("weft_persist_seconds").record(elapsed.as_secs_f64());
                metrics::counter!("weft_updates_applied_total").increment(count);
                tracing::trace!(doc = %self.name, count, bytes,
                    elapsed_us = elapsed.as_micros() as u64, "appended");
                if let Some(listener) = &self.on_change {
                    listener(&self.name);
                }
                self.next_seq += record_count;
                self.log_updates += record_count;
                self.log_bytes += bytes;
                true
            }
            Err(error) => {
                tracing::error!(doc = %self.name, %error, "append failed; stopping the document");
                for reply in out.api_replies.drain(..).chain(out.read_replies.drain(..)) {
                    let _ = reply.send(Err(DocError::Unavailable(error.to_string())));
                }
                self.fail(format!("storage failed: {error}"));
                false
            }
        }
    }

    /// Sends everything a batch produced: direct frames, relays, one merged update frame.
    fn deliver(&mut self, out: Outgoing) {
        let Outgoing {
            direct,
            awareness_frames,
            awareness_changed,
            updates,
            merged,
            remote_updates,
            publish,
            update_sources,
            api_replies,
            read_replies,
            closes,
            update_bytes: _,
            poisoned: _,
            resync: _,
        } = out;
        let mut dead: Vec<(ConnId, Undeliverable)> = Vec::new();
        for (conn, frame) in direct {
            if let Some(session) = self.sessions.get(&conn) {
                if let Err(why) = try_deliver(&session.outbound, frame) {
                    dead.push((conn, why));
                }
            }
        }
        // `persist` merged the batch's own updates already; if yrs could not, the state they
        // all produced stands in for them.
        let local_update = merged.or_else(|| {
            (!updates.is_empty()).then(|| Bytes::from(self.encode_diff(&StateVector::default())))
        });
        let local_frame = local_update.as_deref().map(protocol::encode_update);
        if self.fanout.is_shared() {
            // The updates are durable: the other nodes may have them now.
            for frame in publish.into_iter().chain(local_frame.clone()) {
                self.fanout
                    .publish(&self.name, RemoteMessage::Protocol(frame));
            }
        }
        // Without remote updates the frame is exactly what the batch's senders sent.
        let update_frame_is_theirs = remote_updates.is_empty();
        let update_frame = if update_frame_is_theirs {
            local_frame
        } else {
            let all: Vec<Bytes> = local_update.into_iter().chain(remote_updates).collect();
            self.merged_update_frame(&all)
        };
        // A session that sent every update of the batch already has them.
        let skip = if update_sources.len() == 1 && api_replies.is_empty() && update_frame_is_theirs
        {
            update_sources.iter().next().copied()
        } else {
            None
        };
        if update_frame.is_some() {
            // The skipped sender may have left in the same batch.
            let skipped = skip.is_some_and(|conn| self.sessions.contains_key(&conn));
            let receivers = self.sessions.len() - usize::from(skipped);
            metrics::counter!("weft_updates_broadcast_total").increment(receivers as u64);
        }
        let everyone = self.awareness_relay(awareness_frames, awareness_changed);
        if update_frame.is_some() || !everyone.is_empty() {
            self.last_broadcast = Some(tokio::time::Instant::now());
        }
        for (conn, session) in &self.sessions {
            let update = update_frame.as_ref().filter(|_| skip != Some(*conn));
            let delivered = everyone
                .iter()
                .chain(update)
                .try_for_each(|frame| try_deliver(&session.outbound, frame.clone()));
            if let Err(why) = delivered {
                dead.push((*conn, why));
            }
        }
        for reply in api_replies.into_iter().chain(read_replies) {
            let _ = reply.send(Ok(()));
        }
        for (conn, reason) in closes {
            if let Some(session) = self.sessions.get(&conn) {
                let _ = session.outbound.try_send(Outbound::Close(reason));
            }
            dead.push((conn, Undeliverable::Gone));
        }
        if dead.is_empty() {
            return;
        }
        // Removing a session broadcasts its awareness removal, which may overflow another queue.
        let mut removals = Outgoing::default();
        for (conn, why) in dead {
            if why == Undeliverable::TooSlow && self.sessions.contains_key(&conn) {
                metrics::counter!("weft_slow_client_disconnects_total").increment(1);
                tracing::warn!(doc = %self.name, %conn, queue = self.config.outbound_queue,
                    "client too slow: outgoing queue full, disconnecting it");
            }
            self.remove_session(conn, &mut removals);
        }
        if !removals.awareness_frames.is_empty() {
            self.deliver(removals);
        }
    }

    /// The awareness frames for every session: one frame as received; several as one frame
    /// with the current states of every client they changed (a burst of cursor moves costs each
    /// session one frame, and only the latest position of each cursor is sent). Should that
    /// encoding fail, the frames as received.
    fn awareness_relay(&self, frames: Vec<Bytes>, mut changed: Vec<ClientID>) -> Vec<Bytes> {
        if frames.len() < 2 {
            return frames;
        }
        changed.sort_unstable();
        changed.dedup();
        match self.awareness.update_with_clients(changed) {
            Ok(update) => {
                metrics::counter!("weft_awareness_frames_merged_total")
                    .increment(frames.len() as u64);
                vec![protocol::encode_awareness(&update)]
            }
            Err(error) => {
                tracing::warn!(doc = %self.name, %error, "could not merge awareness relays");
                frames
            }
        }
    }

    /// `updates` as one update frame; if yrs cannot merge them, the whole document state.
    fn merged_update_frame(&self, updates: &[Bytes]) -> Option<Bytes> {
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

    /// `updates` merged into one update (`None` if there are none or yrs cannot merge them).
    fn merge_updates(&self, updates: &[Bytes]) -> Option<Bytes> {
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

    /// Replaces the snapshot with the current state and drops the log it covers.
    async fn compact(&mut self) -> Result<(), DocError> {
        let started = Instant::now();
        let Some(snapshot) = self.encode_snapshot() else {
            return Err(DocError::Unavailable(
                "yrs could not encode the document's pending updates".into(),
            ));
        };
        let size = snapshot.len() as u64;
        self.store
            .compact(&self.name, snapshot, self.next_seq)
            .await?;
        metrics::counter!("weft_compactions_total").increment(1);
        tracing::debug!(doc = %self.name, compacted_updates = self.log_updates,
            snapshot_bytes = size, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "compacted");
        self.snapshot_bytes = size;
        self.log_updates = 0;
        self.log_bytes = 0;
        Ok(())
    }

    /// Idle unload: compact, leave the registry, answer anything still queued with "retry".
    /// Returns false if the actor must keep running (a session joined meanwhile).
    async fn unload(&mut self) -> bool {
        if !self.mailbox.is_empty() {
            // Something arrived: handle it first; the idle clock restarts if still idle.
            self.idle_since = self.sessions.is_empty().then(Instant::now);
            return false;
        }
        if self.log_updates > 0 {
            if let Err(error) = self.compact().await {
                tracing::warn!(doc = %self.name, %error, "compaction before unload failed");
            }
        }
        // No session is connected, so nobody is closed.
        self.stop(CloseReason::ShuttingDown, || DocError::Unloaded);
        tracing::debug!(doc = %self.name, "document unloaded");
        true
    }

    /// Ends the actor: closes every session for `reason`, leaves the registry, then closes the
    /// mailbox and answers whatever is still in it with `refusal()` (callers retry on
    /// [`DocError::Unloaded`]).
    fn stop(&mut self, reason: CloseReason, refusal: impl Fn() -> DocError) {
        self.fanout.unsubscribe(&self.name, self.generation);
        // Leave the registry first: a client that reconnects as soon as it sees its session
        // closed must reach a new actor, not this one's closing mailbox.
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(&self.name, self.generation);
        }
        for (_, session) in self.sessions.drain() {
            let _ = session.outbound.try_send(Outbound::Close(reason.clone()));
        }
        self.mailbox.close();
        while let Ok(command) = self.mailbox.try_recv() {
            refuse(command, refusal());
        }
    }

    /// Stops the actor after an error: every session is closed and callers are told.
    fn fail(&mut self, reason: String) {
        let refusal = reason.clone();
        self.stop(CloseReason::Unavailable(reason), || {
            DocError::Unavailable(refusal.clone())
        });
    }
}

/// Where an awareness update came from.
#[derive(Clone, Copy)]
enum AwarenessSource {
    Session(ConnId),
    Node(NodeId),
}

/// Why a frame could not be queued for a session.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Undeliverable {
    /// The session is gone.
    Gone,
    /// Its queue is full: the client is too slow.
    TooSlow,
}

/// Updates merged per call of `yrs::merge_updates_v1` by [`merge_in_rounds`].
const MERGE_FAN_IN: usize = 16;

/// Merges `updates` into one, at most [`MERGE_FAN_IN`] at a time. yrs re-sorts all its inputs
/// after every block it writes, so one call over a batch of n one-block updates costs about n²
/// comparisons (half of the actor's CPU at 1,000 updates per batch); rounds of 16 keep that
/// linear for the price of decoding each byte about log16(n) times.
fn merge_in_rounds<B: AsRef<[u8]>>(updates: &[B]) -> Result<Vec<u8>, yrs::encoding::read::Error> {
    if updates.len() <= MERGE_FAN_IN {
        return yrs::merge_updates_v1(updates);
    }
    let merged = updates
        .chunks(MERGE_FAN_IN)
        .map(yrs::merge_updates_v1)
        .collect::<Result<Vec<_>, _>>()?;
    merge_in_rounds(&merged)
}

/// Queues a frame without waiting.
fn try_deliver(outbound: &mpsc::Sender<Outbound>, frame: Bytes) -> Result<(), Undeliverable> {
    outbound
        .try_send(Outbound::Frame(frame))
        .map_err(|error| match error {
            TrySendError::Full(_) => Undeliverable::TooSlow,
            TrySendError::Closed(_) => Undeliverable::Gone,
        })
}

/// Answers a command the actor will not carry out.
fn refuse(command: DocCommand, error: DocError) {
    let reply = match command {
        DocCommand::Join { reply, .. }
        | DocCommand::ApplyUpdate { reply, .. }
        | DocCommand::Read { reply, .. }
        | DocCommand::Shutdown { reply } => reply,
        DocCommand::Delete { reply } => {
            let _ = reply.send(Err(error));
            return;
        }
        DocCommand::Message { .. }
        | DocCommand::Leave { .. }
        | DocCommand::Remote { .. }
        | DocCommand::NodeGone { .. }
        | DocCommand::Resync => return,
    };
    let _ = reply.send(Err(error));
}

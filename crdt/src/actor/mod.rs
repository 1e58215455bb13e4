//! The document actor: the one task that owns a document. This file is its loop and dispatch;
//! the work is done by parts that each own their state and never call back into the loop:
//!
//! - [`restore`]: loading without keeping the first clients waiting for the decode;
//! - [`durable`]: the `yrs::Doc`, applying updates (every yrs call guarded), the log and its
//!   compaction;
//! - [`commit`]: the rule that nothing leaves before it is durable (a batch is sent only as a
//!   [`commit::Sealed`] batch);
//! - [`delivery`]: the sessions, their bounded queues, pacing and slow clients;
//! - [`presence`]: awareness states and who owns them;
//! - [`mailbox`]: taking commands in batches, and leaving the registry;
//! - [`cluster`]: the fan-out to other nodes;
//! - [`history`]: keeping versions, and who writes under which client id;
//! - [`sessions`]: what the sessions' commands do (join, updates, questions, presence,
//!   stateless messages, leave);
//! - [`batch`]: what one batch produced; [`merge`]: merging updates in linear time.
//!
//! The actor takes whatever is waiting as one batch, applies its updates in one transaction,
//! stores them as one record, and only then sends anything out, one update frame shared by
//! every session (`docs/how-it-works.md` tells the whole story). However it ends (a panic
//! included), it leaves the registry, reports `unloaded` and tells its sessions why.

mod batch;
mod cluster;
mod commit;
mod delivery;
mod durable;
mod history;
mod mailbox;
mod merge;
mod presence;
mod restore;
mod sessions;
mod setup;

use std::sync::Arc;
use std::time::Instant;

use tokio::time::sleep_until;

use self::batch::{Outgoing, Pending};
use self::cluster::{Cluster, Received};
use self::commit::{commit, failed as append_failed};
use self::delivery::{Delivery, Departed};
use self::durable::{CaughtUp, DurableDoc};
use self::history::Recorder;
use self::mailbox::Mailbox;
use self::presence::{Presence, Source};
use self::restore::Restore;
pub(crate) use self::setup::ActorSetup;
use crate::command::{DocCommand, Origin, Stop};
use crate::config::DocConfig;
use crate::error::DocError;
use crate::hooks::Hooks;
use crate::name::DocName;
use crate::outbox::CloseReason;
use crate::recovery;
use crate::remote::RemoteEvent;
use crate::store::{LogPos, StoreError};

/// How handling a batch ends.
enum Exit {
    Continue,
    /// The actor has stopped (its sessions are closed, its mailbox answered).
    Stop,
}

/// Why loading did not work out.
enum Loaded {
    /// The document was deleted: nobody may use it until it is created again.
    Deleted,
    /// Anything else, for this reason.
    Failed(String),
}

/// What re-reading the store found.
enum CatchUp {
    /// The document holds everything below this position.
    Read(LogPos),
    /// The store could not be read; nothing changed.
    Unreadable,
    /// The document could not take what was read; the actor has stopped.
    Stopped,
}

pub(crate) struct DocActor {
    /// First field, so dropped first: the registry entry goes before the sessions are told.
    mailbox: Mailbox,
    name: DocName,
    config: Arc<DocConfig>,
    hooks: Hooks,
    doc: DurableDoc,
    restore: Restore,
    delivery: Delivery,
    presence: Presence,
    cluster: Cluster,
    history: Recorder,
}

impl DocActor {
    pub(crate) fn new(setup: ActorSetup) -> Self {
        let ActorSetup {
            name,
            generation,
            store,
            config,
            fanout,
            hooks,
            mailbox,
            inbox,
            on_exit,
        } = setup;
        let shared = fanout.is_shared();
        DocActor {
            mailbox: Mailbox::new(name.clone(), hooks.clone(), mailbox, on_exit),
            history: Recorder::new(name.clone(), store.clone(), config.history),
            doc: DurableDoc::new(name.clone(), store, config.clone()),
            restore: Restore::default(),
            delivery: Delivery::new(name.clone(), config.clone(), hooks.clone()),
            presence: Presence::new(name.clone(), hooks.clone(), config.clone(), shared),
            cluster: Cluster::new(name.clone(), generation, fanout, inbox),
            name,
            config,
            hooks,
        }
    }

    /// Loads the document, then serves the mailbox until unloaded or stopped.
    pub(crate) async fn run(mut self) {
        self.hooks.emit(&self.name, |h| h.loaded(&self.name));
        match self.load().await {
            Ok(()) => {}
            Err(Loaded::Deleted) => {
                self.stop(CloseReason::Deleted, || DocError::Deleted);
                return;
            }
            Err(Loaded::Failed(reason)) => {
                self.fail(reason);
                return;
            }
        }
        let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(86_400);
        loop {
            let restore_at = self.restore.deadline();
            let idle_at = self
                .delivery
                .idle_deadline()
                .filter(|_| restore_at.is_none());
            let version_at = self.history.due().filter(|_| restore_at.is_none());
            let first = tokio::select! {
                command = self.mailbox.recv() => match command {
                    Some(command) => command,
                    None => return,
                },
                _ = sleep_until(restore_at.unwrap_or_else(far)), if restore_at.is_some() => {
                    self.finish_restore().await;
                    continue;
                }
                _ = sleep_until(version_at.unwrap_or_else(far)), if version_at.is_some() => {
                    self.keep_version(None).await;
                    continue;
                }
                _ = sleep_until(idle_at.unwrap_or_else(far)), if idle_at.is_some() => {
                    if self.unload().await {
                        return;
                    }
                    continue;
                }
            };
            let max_batch = self.config.max_batch;
            let mailbox = &self.mailbox;
            self.delivery.coalesce(|| mailbox.len() >= max_batch).await;
            let batch = self.mailbox.batch(first, max_batch);
            if let Exit::Stop = self.handle_batch(batch).await {
                return;
            }
        }
    }

    /// Subscribes (in a cluster), reads the stored records and starts the restore.
    async fn load(&mut self) -> Result<(), Loaded> {
        let started = Instant::now();
        if let Err(error) = self.cluster.subscribe().await {
            tracing::error!(doc = %self.name, %error, "failed to subscribe to the cluster fan-out");
            return Err(Loaded::Failed(error.to_string()));
        }
        let stored = match self.doc.load().await {
            Ok(stored) => stored,
            Err(StoreError::Deleted(_)) => return Err(Loaded::Deleted),
            Err(error) => {
                tracing::error!(doc = %self.name, %error, "failed to load document");
                return Err(Loaded::Failed(format!("failed to load: {error}")));
            }
        };
        self.doc.loaded(&stored);
        let records = stored.log.len();
        let full_state = self.restore.begin(stored);
        if self.restore.is_pending() {
            match full_state {
                Some(frame) => self.doc.set_full_state(Some(frame)),
                None => self.finish_restore().await,
            }
        } else {
            self.history.load(&self.doc).await;
        }
        tracing::debug!(doc = %self.name, elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            log_records = records, "document loaded");
        self.cluster.query_presence();
        Ok(())
    }

    /// Rebuilds the document from the records the restore kept, then sends what that
    /// produced (the server's SyncStep1 to the sessions that joined meanwhile).
    async fn finish_restore(&mut self) {
        if let Some((out, damage)) = self.restore.finish(&mut self.doc) {
            recovery::log_damage(&self.name, &damage);
            self.history.load(&self.doc).await;
            // Nothing here is stored, so this cannot fail.
            let _ = self.commit_and_send(out).await;
        }
    }

    async fn handle_batch(&mut self, batch: Vec<DocCommand>) -> Exit {
        if self.restore.is_pending() && batch.iter().any(Restore::needs_document) {
            self.finish_restore().await;
        }
        let mut out = Outgoing::default();
        let mut pending = Pending::new();
        let mut stop: Option<Stop> = None;
        let mut keep = Vec::new();
        for command in batch {
            if stop.is_some() {
                // A stop command ends the batch; later commands see a stopped actor.
                command.refuse(DocError::Unloaded);
                continue;
            }
            match command {
                DocCommand::Join {
                    session,
                    queue,
                    reply,
                } => {
                    // Earlier updates of this batch must be in the state the joiner sees.
                    self.doc.apply(&mut pending, &mut out).await;
                    self.join(session, queue, &mut out);
                    let _ = reply.send(Ok(()));
                }
                DocCommand::Update {
                    origin,
                    update,
                    author,
                } => self.take_update(origin, update, author, &mut pending, &mut out),
                // Kept once this batch's updates are durable (and recorded).
                DocCommand::KeepVersion {
                    label,
                    reuse,
                    reply,
                } => keep.push((label, reuse, reply)),
                DocCommand::Message { conn, message } => {
                    self.doc.apply(&mut pending, &mut out).await;
                    self.message(conn, message, &mut out);
                }
                DocCommand::Leave { conn } => {
                    self.doc.apply(&mut pending, &mut out).await;
                    self.leave(conn, &mut out);
                }
                DocCommand::Read { read, reply } => {
                    self.doc.apply(&mut pending, &mut out).await;
                    if self.doc.read(read) {
                        // The read may have seen this batch's updates: it is answered only
                        // once they are stored (and never if the batch is dropped).
                        out.read_replies.push(reply);
                    } else {
                        let _ = reply.send(Err(DocError::Unavailable("read panicked".into())));
                    }
                }
                DocCommand::Remote(event) => {
                    if let Some(deleted) = self.remote(event, &mut pending, &mut out).await {
                        stop = Some(deleted);
                    }
                }
                DocCommand::Stop(command) => stop = Some(command),
            }
        }
        self.doc.apply(&mut pending, &mut out).await;

        if out.poisoned {
            self.reload(out, stop);
            return Exit::Stop;
        }
        let resync = out.resync;
        if let Exit::Stop = self.commit_and_send(out).await {
            if let Some(stop) = stop {
                DocCommand::Stop(stop).refuse(DocError::Unavailable("storage failed".into()));
            }
            return Exit::Stop;
        }
        if resync {
            if let CatchUp::Stopped = self.catch_up().await {
                return Exit::Stop;
            }
        }
        for (label, reuse, reply) in keep {
            let kept = match reuse {
                true => self.history.ensure(&self.doc, label).await,
                false => self.history.cut(&self.doc, label).await,
            };
            let _ = reply.send(kept);
        }
        if let Some(stop) = stop {
            self.stop_for(stop).await;
            return Exit::Stop;
        }
        if (self.delivery.is_empty() && self.history.has_changes()) || self.history.has_new_claims()
        {
            // The last client left: keep what it wrote as a version now. Or a user started
            // writing under a new client id: make the claim durable now.
            self.keep_version(None).await;
        }
        if self.doc.needs_compaction() {
            return self.compact().await;
        }
        Exit::Continue
    }

    /// Stores what a batch produced, then sends it, then whatever sending it produced (the
    /// presence of the sessions it closed). `Stop` if the store failed.
    async fn commit_and_send(&mut self, mut out: Outgoing) -> Exit {
        loop {
            self.presence.merge_relays(&mut out);
            let written = std::mem::take(&mut out.written);
            let sealed = match commit(&mut self.doc, &self.hooks, out).await {
                Ok(sealed) => {
                    self.history.record(written);
                    sealed
                }
                Err(failed) => {
                    let (error, out) = *failed;
                    tracing::warn!(doc = %self.name, %error, "append failed; stopping the document");
                    let (reason, refusal) = append_failed(&error);
                    for reply in out.api_replies.into_iter().chain(out.read_replies) {
                        let _ = reply.send(Err(refusal()));
                    }
                    self.stop(reason, refusal);
                    return Exit::Stop;
                }
            };
            self.cluster.publish(&sealed);
            let doc = &self.doc;
            let departed = self
                .delivery
                .send(sealed, |updates| doc.merged_update_frame(updates));
            if departed.is_empty() {
                return Exit::Continue;
            }
            // Removing a session relays its presence removal, which may overflow another queue.
            out = Outgoing::default();
            for gone in departed {
                self.departed(gone, &mut out);
            }
            if out.awareness_frames.is_empty() && out.publish.is_empty() {
                return Exit::Continue;
            }
        }
    }

    /// Accounts for a session delivery let go of.
    fn departed(&mut self, gone: Departed, out: &mut Outgoing) {
        let Departed { info, too_slow } = gone;
        if too_slow {
            self.hooks
                .emit(&self.name, |h| h.slow_client(&self.name, info.conn));
            tracing::warn!(doc = %self.name, conn = %info.conn,
                "client too slow: outgoing queue full, disconnecting it");
        }
        self.presence.session_left(info.conn, out);
        self.hooks.emit(&self.name, |h| h.left(&self.name, &info));
    }

    /// Handles what another node said; a deletion there stops this actor too.
    async fn remote(
        &mut self,
        event: RemoteEvent,
        pending: &mut Pending,
        out: &mut Outgoing,
    ) -> Option<Stop> {
        match self.cluster.receive(event) {
            Received::Update(update, authors) => {
                pending.push_back((update, Origin::Remote, authors))
            }
            Received::Awareness {
                from,
                update,
                frame,
            } => {
                self.doc.apply(pending, out).await;
                self.presence.apply(Source::Node(from), update, frame, out);
            }
            Received::PresenceQuery => {
                self.doc.apply(pending, out).await;
                self.presence.answer_node_query(out);
            }
            Received::NodeGone(node) => {
                self.doc.apply(pending, out).await;
                self.presence.node_gone(node, out);
            }
            Received::Resync => out.resync = true,
            Received::Deleted(node) => return Some(Stop::DeletedElsewhere(node)),
            Received::Nothing => {}
        }
        None
    }

    /// yrs rejected or panicked on an update: nothing of this batch is stored or sent. The
    /// offender is told why; everyone else reconnects to a fresh actor that reloads the stored
    /// state (their clients resend whatever of theirs was in this batch).
    fn reload(&mut self, mut out: Outgoing, stop: Option<Stop>) {
        tracing::error!(doc = %self.name,
            "yrs rejected or panicked on an update; reloading the document from storage");
        for (conn, reason) in out.closes.drain(..) {
            if let Some(info) = self.delivery.close(conn, reason) {
                self.hooks.emit(&self.name, |h| h.left(&self.name, &info));
            }
        }
        for reply in out.api_replies.drain(..) {
            let _ = reply.send(Err(DocError::Unavailable("document reloading".into())));
        }
        // What a read saw is gone with the batch: it runs again on the reloaded document.
        for reply in out.read_replies.drain(..) {
            let _ = reply.send(Err(DocError::Unloaded));
        }
        if let Some(stop) = stop {
            DocCommand::Stop(stop).refuse(DocError::Unloaded);
        }
        // Whatever is still queued (a client joining right now) retries on a fresh actor,
        // which reloads the stored state.
        self.stop(
            CloseReason::Unavailable("document reloading after a rejected update".into()),
            || DocError::Unloaded,
        );
    }

    /// Re-reads the store and merges in what this node lacks (other nodes' updates it missed),
    /// sending local sessions what was new. Used after the fan-out may have lost messages, and
    /// before compacting in a cluster.
    async fn catch_up(&mut self) -> CatchUp {
        let (caught, damage) = self.doc.catch_up().await;
        recovery::log_damage(&self.name, &damage);
        match caught {
            CaughtUp::Unreadable(error) => {
                tracing::warn!(doc = %self.name, %error, "could not re-read the store");
                CatchUp::Unreadable
            }
            CaughtUp::Poisoned => {
                tracing::error!(doc = %self.name, "the document could not take what the store holds; reloading");
                self.stop(
                    CloseReason::Unavailable("document reloading".into()),
                    || DocError::Unloaded,
                );
                CatchUp::Stopped
            }
            CaughtUp::Read { next_pos, news } => {
                if let Some(news) = news {
                    tracing::info!(doc = %self.name, "the store held updates this node had missed");
                    let out = Outgoing {
                        remote_updates: vec![news],
                        ..Outgoing::default()
                    };
                    if let Exit::Stop = self.commit_and_send(out).await {
                        return CatchUp::Stopped;
                    }
                }
                CatchUp::Read(next_pos)
            }
        }
    }

    /// Compacts the log. In a cluster the document first catches up with the store, so that
    /// the snapshot holds every record below the end of what was read.
    async fn compact(&mut self) -> Exit {
        let upto = if self.cluster.is_shared() {
            match self.catch_up().await {
                CatchUp::Read(next_pos) => Some(next_pos),
                // The log is intact; compaction is retried after the next append.
                CatchUp::Unreadable => return Exit::Continue,
                CatchUp::Stopped => return Exit::Stop,
            }
        } else {
            None
        };
        match self.doc.compact(upto).await {
            Ok(size) => self
                .hooks
                .emit(&self.name, |h| h.compacted(&self.name, size)),
            // The log is intact; compaction is retried after the next append.
            Err(error) => tracing::warn!(doc = %self.name, %error, "compaction failed"),
        }
        Exit::Continue
    }

    /// Idle unload: compact, leave the registry, answer anything still queued with "retry".
    /// Returns false if the actor must keep running (something arrived meanwhile).
    async fn unload(&mut self) -> bool {
        if !self.mailbox.is_empty() {
            // Something arrived: handle it first; the idle clock restarts if still idle.
            self.delivery.restart_idle_clock();
            return false;
        }
        self.keep_version(None).await;
        if self.doc.has_log() {
            if let Exit::Stop = self.compact().await {
                return true;
            }
        }
        // No session is connected, so nobody is closed.
        self.stop(CloseReason::ShuttingDown, || DocError::Unloaded);
        tracing::debug!(doc = %self.name, "document unloaded");
        true
    }

    /// Carries out a stop command (after its batch was stored and sent).
    async fn stop_for(&mut self, stop: Stop) {
        match stop {
            Stop::Delete(reply) => {
                let deleted = self.doc.delete().await.map_err(DocError::from);
                if deleted.is_ok() {
                    tracing::info!(doc = %self.name, "document deleted");
                    self.cluster.publish_deleted();
                }
                self.stop(CloseReason::Deleted, || DocError::Unloaded);
                let _ = reply.send(deleted);
            }
            Stop::Shutdown(reply) => {
                self.keep_version(None).await;
                self.stop(CloseReason::ShuttingDown, || DocError::Unloaded);
                let _ = reply.send(Ok(()));
            }
            Stop::DeletedElsewhere(node) => {
                tracing::info!(doc = %self.name, %node, "document deleted on another node");
                self.stop(CloseReason::Deleted, || DocError::Unloaded);
            }
        }
    }

    /// Keeps an automatic version of what changed since the last one, if anything did.
    async fn keep_version(&mut self, label: Option<String>) {
        if !self.history.enabled() {
            return;
        }
        if let Err(error) = self.history.cut(&self.doc, label).await {
            tracing::warn!(doc = %self.name, %error, "could not keep a version; will retry");
        }
    }

    /// Ends the actor: leaves the registry, closes every session for `reason`, then closes the
    /// mailbox and answers whatever is still in it with `refusal()` (callers retry on
    /// [`DocError::Unloaded`]).
    fn stop(&mut self, reason: CloseReason, refusal: impl Fn() -> DocError) {
        self.cluster.unsubscribe();
        // Leave the registry first: a client that reconnects as soon as it sees its session
        // closed must reach a new actor, not this one's closing mailbox.
        self.mailbox.leave();
        for info in self.delivery.close_all(reason) {
            self.hooks.emit(&self.name, |h| h.left(&self.name, &info));
        }
        self.mailbox.close(refusal);
    }

    /// Stops the actor after an error: every session is closed and callers are told.
    fn fail(&mut self, reason: String) {
        let refusal = reason.clone();
        self.stop(CloseReason::Unavailable(reason), || {
            DocError::Unavailable(refusal.clone())
        });
    }
}

//! Delivery: the document's sessions and their outgoing queues. [`Delivery`] sends what a sealed
//! batch produced (one merged update frame shared by every session, encoded once), paces the
//! broadcasts of a busy document, and closes sessions that fall behind instead of waiting for
//! them or dropping their frames.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::batch::Outgoing;
use super::commit::Sealed;
use crate::config::DocConfig;
use crate::hooks::Hooks;
use crate::name::DocName;
use crate::outbox::{CloseReason, ConnId, SessionInfo, SessionQueue, Undeliverable};
use crate::protocol;

/// Documents with fewer sessions than this are never held back for coalescing.
const COALESCE_MIN_SESSIONS: usize = 16;

/// How often adaptive coalescing looks at the sessions' queues (and the mailbox) again.
const COALESCE_POLL: Duration = Duration::from_micros(500);

/// Longest gap broadcast pacing puts between two broadcasts, however many sessions.
const BROADCAST_PACE_MAX: Duration = Duration::from_millis(20);

/// A joined session.
struct Entry {
    info: SessionInfo,
    queue: SessionQueue,
}

/// A session delivery let go of.
pub(super) struct Departed {
    pub info: SessionInfo,
    /// Whether it was closed for being too slow (otherwise it was gone or closed on purpose).
    pub too_slow: bool,
}

/// The sessions of one document.
pub(super) struct Delivery {
    name: DocName,
    config: Arc<DocConfig>,
    hooks: Hooks,
    sessions: HashMap<ConnId, Entry>,
    /// When the last frame for every session (an update or awareness relay) went out (for
    /// broadcast pacing).
    last_broadcast: Option<tokio::time::Instant>,
    /// When the last session left (the idle-unload clock), if none is connected.
    idle_since: Option<Instant>,
}

impl Delivery {
    pub fn new(name: DocName, config: Arc<DocConfig>, hooks: Hooks) -> Self {
        Delivery {
            name,
            config,
            hooks,
            sessions: HashMap::new(),
            last_broadcast: None,
            idle_since: Some(Instant::now()),
        }
    }

    pub fn join(&mut self, info: SessionInfo, queue: SessionQueue) {
        self.idle_since = None;
        self.sessions.insert(info.conn, Entry { info, queue });
    }

    /// Forgets a session (it left); what it was, if it was here.
    pub fn leave(&mut self, conn: ConnId) -> Option<SessionInfo> {
        let entry = self.sessions.remove(&conn)?;
        if self.sessions.is_empty() {
            self.idle_since = Some(Instant::now());
        }
        Some(entry.info)
    }

    /// Closes one session for `reason`; what it was, if it was here.
    pub fn close(&mut self, conn: ConnId, reason: CloseReason) -> Option<SessionInfo> {
        let entry = self.sessions.remove(&conn)?;
        entry.queue.close(reason);
        if self.sessions.is_empty() {
            self.idle_since = Some(Instant::now());
        }
        Some(entry.info)
    }

    /// Whether `conn` may write; `None` if it is not (or no longer) here.
    pub fn can_write(&self, conn: ConnId) -> Option<bool> {
        self.sessions.get(&conn).map(|s| s.info.can_write)
    }

    /// Whether `conn`'s queue has room for one more answer beside what this batch already
    /// queued for it; if not, the batch closes it as too slow (and `false`).
    pub fn may_answer(&self, conn: ConnId, out: &mut Outgoing) -> bool {
        let Some(session) = self.sessions.get(&conn) else {
            return false;
        };
        let (frames, bytes) = out.pending_for(conn);
        if session.queue.has_room(frames, bytes) {
            return true;
        }
        out.closes.push((conn, CloseReason::TooSlow));
        false
    }

    /// Whether `conn` asked to be told when its updates are durable.
    pub fn wants_acks(&self, conn: ConnId) -> bool {
        self.sessions
            .get(&conn)
            .is_some_and(|s| s.info.durable_acks)
    }

    /// Whether `conn` may send stateless messages.
    pub fn may_send_stateless(&self, conn: ConnId) -> bool {
        self.sessions.get(&conn).is_some_and(|s| s.info.stateless)
    }

    /// Who `conn` is, if it is here.
    pub fn info(&self, conn: ConnId) -> Option<&SessionInfo> {
        self.sessions.get(&conn).map(|s| &s.info)
    }

    /// Whether no session is here.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn contains(&self, conn: ConnId) -> bool {
        self.sessions.contains_key(&conn)
    }

    /// When the document unloads if nobody joins meanwhile (`None` while anyone is here).
    pub fn idle_deadline(&self) -> Option<tokio::time::Instant> {
        let since = self.idle_since?;
        Some(tokio::time::Instant::from_std(
            since + self.config.idle_unload,
        ))
    }

    /// Restarts the idle clock (something arrived while the document was about to unload).
    pub fn restart_idle_clock(&mut self) {
        self.idle_since = self.sessions.is_empty().then(Instant::now);
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
    /// frames per session per second shrink. `mailbox_full` ends the wait (a full batch waits).
    pub async fn coalesce(&self, mailbox_full: impl Fn() -> bool) {
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
            if !self.hold_while(last + pace, |_| true, &mailbox_full).await {
                return;
            }
        }
        let max = self.config.coalesce_max;
        if !max.is_zero() {
            let deadline = tokio::time::Instant::now() + max;
            self.hold_while(deadline, Self::sessions_behind, &mailbox_full)
                .await;
        }
    }

    /// Waits while `holding` is true, until `deadline`, looking again every [`COALESCE_POLL`].
    /// False if it stopped early because the mailbox filled up.
    async fn hold_while(
        &self,
        deadline: tokio::time::Instant,
        holding: impl Fn(&Self) -> bool,
        mailbox_full: &impl Fn() -> bool,
    ) -> bool {
        while holding(self) && tokio::time::Instant::now() < deadline {
            if mailbox_full() {
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
            .filter(|s| s.queue.is_backlogged())
            .nth(threshold - 1)
            .is_some()
    }

    /// Sends everything a sealed batch produced: direct frames, relays, one update frame for
    /// the batch's own and other nodes' updates (`merge` merges several into one frame), then
    /// answers the API and reads and closes the sessions the batch closed. Returns the sessions
    /// it let go of (too slow, gone or closed).
    pub fn send(
        &mut self,
        sealed: Sealed,
        merge: impl Fn(&[Bytes]) -> Option<Bytes>,
    ) -> Vec<Departed> {
        let (out, local_update) = sealed.into_parts();
        let Outgoing {
            direct,
            stateless,
            awareness_frames,
            update_sources,
            remote_updates,
            api_replies,
            read_replies,
            closes,
            ..
        } = out;
        // Sessions the batch closes come first: their reason wins over a full queue's.
        let mut dead: Vec<(ConnId, Option<CloseReason>)> = closes
            .into_iter()
            .map(|(conn, reason)| (conn, Some(reason)))
            .collect();
        for (conn, frame) in direct {
            if let Some(session) = self.sessions.get(&conn) {
                if let Err(why) = session.queue.push(frame) {
                    dead.push((conn, slow(why)));
                }
            }
        }
        let local_frame = local_update.as_deref().map(protocol::encode_update);
        // Without remote updates the frame is exactly what the batch's senders sent.
        let update_frame_is_theirs = remote_updates.is_empty();
        let update_frame = if update_frame_is_theirs {
            local_frame
        } else {
            let all: Vec<Bytes> = local_update.into_iter().chain(remote_updates).collect();
            merge(&all)
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
            self.hooks
                .emit(&self.name, |h| h.broadcast(&self.name, receivers));
        }
        if update_frame.is_some() || !awareness_frames.is_empty() {
            self.last_broadcast = Some(tokio::time::Instant::now());
        }
        for (conn, session) in &self.sessions {
            let update = update_frame.as_ref().filter(|_| skip != Some(*conn));
            let others_stateless = stateless
                .iter()
                .filter(|(sender, _)| sender != conn)
                .map(|(_, frame)| frame);
            let delivered = awareness_frames
                .iter()
                .chain(others_stateless)
                .chain(update)
                .try_for_each(|frame| session.queue.push(frame.clone()));
            if let Err(why) = delivered {
                dead.push((*conn, slow(why)));
            }
        }
        for reply in api_replies.into_iter().chain(read_replies) {
            let _ = reply.send(Ok(()));
        }
        let mut departed = Vec::with_capacity(dead.len());
        for (conn, reason) in dead {
            let Some(entry) = self.sessions.remove(&conn) else {
                continue;
            };
            let too_slow = reason == Some(CloseReason::TooSlow);
            if let Some(reason) = reason {
                entry.queue.close(reason);
            }
            departed.push(Departed {
                info: entry.info,
                too_slow,
            });
        }
        if self.sessions.is_empty() && !departed.is_empty() {
            self.idle_since = Some(Instant::now());
        }
        departed
    }

    /// Closes every session for `reason`; who they were.
    pub fn close_all(&mut self, reason: CloseReason) -> Vec<SessionInfo> {
        let infos = self
            .sessions
            .drain()
            .map(|(_, entry)| {
                entry.queue.close(reason.clone());
                entry.info
            })
            .collect();
        self.idle_since = Some(Instant::now());
        infos
    }
}

/// The close reason for a session whose frame could not be queued (`None`: it is gone).
fn slow(why: Undeliverable) -> Option<CloseReason> {
    match why {
        Undeliverable::TooSlow => Some(CloseReason::TooSlow),
        Undeliverable::Gone => None,
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // Only when the actor ends without closing its sessions (it panicked): tell them why.
        for entry in self.sessions.values() {
            entry.queue.close(CloseReason::Unavailable(
                "the document failed; reconnect".into(),
            ));
        }
    }
}

//! What a document sends a session: the [`SessionQueue`] / [`Outbox`] pair, who the session is
//! ([`SessionInfo`]) and why the document ended it ([`CloseReason`]).
//!
//! The outgoing queue is bounded in frames and in bytes: the document never waits for a slow
//! client, it closes it instead (its client reconnects and resyncs), and never drops a frame
//! from a queue that stays open. Why a session ended travels beside the queue rather than in it,
//! so a full queue cannot turn "document deleted" into "too slow".

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError};
use uuid::Uuid;

/// Identifies one client connection's session of a document for its whole life.
pub type ConnId = Uuid;

/// Who a session is, as the document and its hooks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session.
    pub conn: ConnId,
    /// Who authenticated it (the token's `sub`; a stable name when auth is off).
    pub user: Arc<str>,
    /// Whether `user` was authenticated (auth on): its edits are credited to it in the history,
    /// and no other user may write under the Yjs client ids it writes under. Otherwise edits
    /// are credited to the name the client announces in its awareness state (`user.name`).
    pub authenticated: bool,
    /// Whether it may change the document.
    pub can_write: bool,
    /// Whether it is told when each of its updates is durable: a [`crate::protocol::MSG_DURABLE`]
    /// frame per update, once stored (a wire protocol that acknowledges writes asks for it).
    pub durable_acks: bool,
    /// Whether it may send stateless messages (relayed to the document's other sessions).
    pub stateless: bool,
}

/// Why the document side ended a session. The server maps these to WebSocket close codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent something invalid.
    BadMessage(String),
    /// The client sent more than a limit allows.
    Refused(String),
    /// The client did not keep up: its outgoing queue was full.
    TooSlow,
    /// The document could not be loaded or stored; the client should retry later.
    Unavailable(String),
    /// The document was deleted.
    Deleted,
    /// The server is shutting down.
    ShuttingDown,
}

/// How much one session's outgoing queue may hold before the client counts as too slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Frames waiting to be written.
    pub frames: usize,
    /// Bytes of the frames waiting to be written.
    pub bytes: usize,
}

/// What both ends of one queue share.
#[derive(Debug, Default)]
struct Shared {
    /// Bytes queued and not yet taken by the [`Outbox`].
    queued_bytes: AtomicUsize,
    /// Why the document ended the session, set once before it lets go of the queue.
    end: OnceLock<CloseReason>,
}

/// Creates a session's outgoing queue: the document holds the [`SessionQueue`] (hand it to
/// [`crate::Registry::join`]), the connection reads the [`Outbox`].
pub fn session_queue(limits: QueueLimits) -> (SessionQueue, Outbox) {
    let (frames, receiver) = mpsc::channel(limits.frames.max(1));
    let shared = Arc::new(Shared::default());
    (
        SessionQueue {
            frames,
            shared: shared.clone(),
            max_bytes: limits.bytes,
        },
        Outbox { receiver, shared },
    )
}

/// The document's end of a session's outgoing queue.
#[derive(Debug, Clone)]
pub struct SessionQueue {
    frames: mpsc::Sender<Bytes>,
    shared: Arc<Shared>,
    max_bytes: usize,
}

/// Why a frame could not be queued for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Undeliverable {
    /// The session is gone.
    Gone,
    /// Its queue is full: the client is too slow.
    TooSlow,
}

impl SessionQueue {
    /// Queues a frame without waiting.
    pub(crate) fn push(&self, frame: Bytes) -> Result<(), Undeliverable> {
        let len = frame.len();
        let queued = self.shared.queued_bytes.load(Ordering::Acquire);
        // One frame always fits an empty queue, however large: the limit bounds a backlog.
        if queued > 0 && queued.saturating_add(len) > self.max_bytes {
            return Err(Undeliverable::TooSlow);
        }
        self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        self.frames.try_send(frame).map_err(|error| {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            match error {
                TrySendError::Full(_) => Undeliverable::TooSlow,
                TrySendError::Closed(_) => Undeliverable::Gone,
            }
        })
    }

    /// Whether `pending_frames` more frames totalling `pending_bytes` would still fit (as
    /// [`Self::push`] counts): asked before computing an answer, so that a client which stops
    /// reading cannot make the document build answers it will never take.
    pub(crate) fn has_room(&self, pending_frames: usize, pending_bytes: usize) -> bool {
        let queued = self.shared.queued_bytes.load(Ordering::Acquire);
        let bytes = queued.saturating_add(pending_bytes);
        let bytes_fit = bytes == 0 || bytes < self.max_bytes;
        bytes_fit && self.frames.capacity() > pending_frames
    }

    /// Whether frames are waiting to be written.
    pub(crate) fn is_backlogged(&self) -> bool {
        self.frames.capacity() < self.frames.max_capacity()
    }

    /// Ends the session for `reason` (the first reason given counts): once the document lets
    /// go of the queue, the connection writes what is queued, then closes.
    pub(crate) fn close(&self, reason: CloseReason) {
        let _ = self.shared.end.set(reason);
    }
}

/// The connection's end of a session's outgoing queue.
#[derive(Debug)]
pub struct Outbox {
    receiver: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
}

impl Outbox {
    /// The next frame to write; `None` once the document has let go of the session and every
    /// frame it queued before has been taken (then [`Self::end_reason`] says why).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let polled = self.receiver.poll_recv(cx);
        if let Poll::Ready(Some(frame)) = &polled {
            self.shared
                .queued_bytes
                .fetch_sub(frame.len(), Ordering::AcqRel);
        }
        polled
    }

    /// Takes a frame if one is waiting.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        let frame = self.receiver.try_recv().ok()?;
        self.shared
            .queued_bytes
            .fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }

    /// Waits for the next frame (`None` as for [`Self::poll_recv`]).
    pub async fn recv(&mut self) -> Option<Bytes> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Why the document ended the session, once it has (`None` if it let go without saying:
    /// it never registered the session).
    pub fn end_reason(&self) -> Option<CloseReason> {
        self.shared.end.get().cloned()
    }

    /// Bytes queued and not yet taken.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued_bytes.load(Ordering::Acquire)
    }

    /// Stops taking frames: the connection is ending.
    pub fn close(&mut self) {
        self.receiver.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Bytes {
        Bytes::from(vec![0u8; len])
    }

    #[test]
    fn the_queue_is_bounded_in_frames_and_bytes() {
        let (queue, mut outbox) = session_queue(QueueLimits {
            frames: 3,
            bytes: 100,
        });
        // One frame larger than the byte limit still fits an empty queue.
        queue.push(frame(150)).unwrap();
        assert_eq!(queue.push(frame(1)), Err(Undeliverable::TooSlow));
        assert_eq!(outbox.try_recv().map(|f| f.len()), Some(150));
        assert_eq!(outbox.queued_bytes(), 0);
        queue.push(frame(60)).unwrap();
        assert_eq!(queue.push(frame(60)), Err(Undeliverable::TooSlow), "bytes");
        queue.push(frame(10)).unwrap();
        queue.push(frame(10)).unwrap();
        assert_eq!(queue.push(frame(1)), Err(Undeliverable::TooSlow), "frames");
        assert_eq!(outbox.queued_bytes(), 80);
    }

    #[test]
    fn room_counts_what_is_queued_and_what_is_pending() {
        let (queue, _outbox) = session_queue(QueueLimits {
            frames: 3,
            bytes: 100,
        });
        assert!(queue.has_room(0, 0));
        assert!(!queue.has_room(0, 100), "bytes pending in the batch count");
        assert!(!queue.has_room(3, 0), "frames pending in the batch count");
        queue.push(frame(60)).unwrap();
        assert!(queue.has_room(1, 30));
        assert!(!queue.has_room(0, 40));
    }

    #[tokio::test]
    async fn the_close_reason_survives_a_full_queue() {
        let (queue, mut outbox) = session_queue(QueueLimits {
            frames: 1,
            bytes: usize::MAX,
        });
        queue.push(frame(1)).unwrap();
        queue.close(CloseReason::Deleted);
        drop(queue);
        assert_eq!(outbox.recv().await.map(|f| f.len()), Some(1));
        assert_eq!(outbox.recv().await, None);
        assert_eq!(outbox.end_reason(), Some(CloseReason::Deleted));
    }

    #[tokio::test]
    async fn the_first_reason_counts() {
        let (queue, mut outbox) = session_queue(QueueLimits {
            frames: 1,
            bytes: usize::MAX,
        });
        queue.close(CloseReason::TooSlow);
        queue.close(CloseReason::Deleted);
        drop(queue);
        assert_eq!(outbox.recv().await, None);
        assert_eq!(outbox.end_reason(), Some(CloseReason::TooSlow));
    }
}

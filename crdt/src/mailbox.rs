//! A session's line into its document: a poll-based sender to the actor's mailbox.
//!
//! A WebSocket connection is served by one poll function (the HTTP response body), not by a task
//! of its own, so it cannot `await` room in the mailbox. [`SessionMailbox`] offers the same
//! backpressure as a poll: [`SessionMailbox::poll_ready`] registers the caller's waker while the
//! mailbox is full, and the connection stops reading from its socket meanwhile. Dropping it
//! tells the actor the session left, after everything it sent.

use std::task::{Context, Poll};

use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::PollSender;

use crate::command::{ConnId, DocCommand};
use crate::protocol::ClientMessage;
use crate::registry::DocHandle;

/// The document actor has stopped; nothing more can be sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the document stopped")]
pub struct DocStopped;

/// One joined session's sender to its document's mailbox. Dropping it sends `Leave`.
pub struct SessionMailbox {
    conn: ConnId,
    sender: PollSender<DocCommand>,
}

impl SessionMailbox {
    /// The mailbox of `doc`, for the session `conn` (which has joined it).
    pub fn new(doc: &DocHandle, conn: ConnId) -> Self {
        SessionMailbox {
            conn,
            sender: PollSender::new(doc.mailbox().clone()),
        }
    }

    /// Ready once the mailbox has room for one message (reserved for the next
    /// [`Self::send`]); while it is full, the waker in `cx` is woken when room appears.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), DocStopped>> {
        self.sender.poll_reserve(cx).map_err(|_| DocStopped)
    }

    /// Sends a message into the slot [`Self::poll_ready`] reserved.
    pub fn send(&mut self, message: ClientMessage) -> Result<(), DocStopped> {
        let command = DocCommand::Message {
            conn: self.conn,
            message,
        };
        self.sender.send_item(command).map_err(|_| DocStopped)
    }
}

impl Drop for SessionMailbox {
    fn drop(&mut self) {
        let Some(mailbox) = self.sender.get_ref().cloned() else {
            return;
        };
        let leave = DocCommand::Leave { conn: self.conn };
        match mailbox.try_send(leave) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            // A full mailbox: wait for room without holding up whoever dropped us. Outside a
            // runtime (only at process exit) there is no actor left to tell.
            Err(TrySendError::Full(leave)) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _ = mailbox.send(leave).await;
                    });
                }
            }
        }
    }
}

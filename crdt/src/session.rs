//! What a session sends its document: [`Session`], a line into the document's mailbox.
//!
//! A WebSocket connection is served by one poll function (the HTTP response body), not by a task
//! of its own, so it cannot `await` room in the mailbox. [`Session`] offers backpressure as a
//! poll: [`Session::poll_ready`] registers the caller's waker while the mailbox is full, and the
//! connection stops reading from its socket meanwhile. Dropping it tells the document the
//! session left, after everything it sent.

use std::task::{Context, Poll};

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::PollSender;

use crate::command::{DocCommand, Origin, SessionMessage};
use crate::outbox::ConnId;
use crate::protocol::ClientMessage;

/// The document stopped; nothing more can be sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the document stopped")]
pub struct DocStopped;

/// One joined session's line into its document. Dropping it tells the document it left.
pub struct Session {
    conn: ConnId,
    sender: PollSender<DocCommand>,
}

impl Session {
    pub(crate) fn new(conn: ConnId, mailbox: mpsc::Sender<DocCommand>) -> Self {
        Session {
            conn,
            sender: PollSender::new(mailbox),
        }
    }

    /// This session's connection id.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// Ready once the mailbox has room for one message (reserved for the next [`Self::send`]);
    /// while it is full, the waker in `cx` is woken when room appears.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), DocStopped>> {
        self.sender.poll_reserve(cx).map_err(|_| DocStopped)
    }

    /// Sends a message into the slot [`Self::poll_ready`] reserved.
    pub fn send(&mut self, message: ClientMessage) -> Result<(), DocStopped> {
        let command = match message {
            ClientMessage::Update(update) => DocCommand::Update {
                origin: Origin::Session(self.conn),
                update,
                author: None,
            },
            ClientMessage::SyncStep1(state_vector) => DocCommand::Message {
                conn: self.conn,
                message: SessionMessage::SyncStep1(state_vector),
            },
            ClientMessage::Awareness { update, frame } => DocCommand::Message {
                conn: self.conn,
                message: SessionMessage::Awareness { update, frame },
            },
            ClientMessage::QueryAwareness => DocCommand::Message {
                conn: self.conn,
                message: SessionMessage::QueryAwareness,
            },
            ClientMessage::Stateless(payload) => DocCommand::Message {
                conn: self.conn,
                message: SessionMessage::Stateless(payload),
            },
            // Clients have no business sending auth messages: read and ignored.
            ClientMessage::Auth => {
                self.sender.abort_send();
                return Ok(());
            }
        };
        self.sender.send_item(command).map_err(|_| DocStopped)
    }

    /// Waits for room in the mailbox, then sends.
    pub async fn send_async(&mut self, message: ClientMessage) -> Result<(), DocStopped> {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await?;
        self.send(message)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(mailbox) = self.sender.get_ref().cloned() else {
            return;
        };
        let leave = DocCommand::Leave { conn: self.conn };
        match mailbox.try_send(leave) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            // A full mailbox: wait for room without holding up whoever dropped us. Outside a
            // runtime (only at process exit) there is no document left to tell.
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

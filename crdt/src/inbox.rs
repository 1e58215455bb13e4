//! [`RemoteInbox`]: the narrow way into a document for a cluster backend. It accepts only
//! [`RemoteEvent`]s and never waits: a backend serving many documents from one reader must not
//! be held up by one busy document. An event that finds the document's mailbox full is not
//! queued; the document re-reads the shared store instead once it has room (everything another
//! node publishes is already stored there). Deletions and departures are never dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TrySendError};

use crate::command::DocCommand;
use crate::remote::{RemoteEvent, RemoteMessage};

/// What became of an event handed to a [`RemoteInbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// In the document's mailbox.
    Queued,
    /// The mailbox was full: the document re-reads the store once it has room instead.
    Deferred,
    /// The document has stopped (its successor subscribes afresh).
    Gone,
}

/// A document's inbox for events from other nodes. Cheap to clone; holds the document's mailbox
/// weakly, so it never keeps a stopped document alive.
#[derive(Clone)]
pub struct RemoteInbox {
    mailbox: mpsc::WeakSender<DocCommand>,
    /// A resync is on its way to the mailbox (at most one at a time).
    resync_pending: Arc<AtomicBool>,
}

impl RemoteInbox {
    pub(crate) fn new(mailbox: mpsc::WeakSender<DocCommand>) -> Self {
        RemoteInbox {
            mailbox,
            resync_pending: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Hands `event` to the document without waiting (see the module comment). Deletions and
    /// departures are never dropped: with a full mailbox they wait in a task of their own.
    pub fn deliver(&self, event: RemoteEvent) -> Delivered {
        let Some(mailbox) = self.mailbox.upgrade() else {
            return Delivered::Gone;
        };
        match mailbox.try_send(DocCommand::Remote(event)) {
            Ok(()) => Delivered::Queued,
            Err(TrySendError::Closed(_)) => Delivered::Gone,
            Err(TrySendError::Full(DocCommand::Remote(event))) => {
                let must_arrive = matches!(
                    event,
                    RemoteEvent::NodeGone(_)
                        | RemoteEvent::Message {
                            message: RemoteMessage::Deleted,
                            ..
                        }
                );
                if must_arrive {
                    spawn_send(mailbox, event, None);
                } else if !self.resync_pending.swap(true, Ordering::AcqRel) {
                    spawn_send(
                        mailbox,
                        RemoteEvent::Resync,
                        Some(self.resync_pending.clone()),
                    );
                }
                Delivered::Deferred
            }
            Err(TrySendError::Full(_)) => Delivered::Deferred,
        }
    }
}

/// Sends `event` once the mailbox has room, in a task (outside a runtime there is nothing to
/// deliver to).
fn spawn_send(
    mailbox: mpsc::Sender<DocCommand>,
    event: RemoteEvent,
    done: Option<Arc<AtomicBool>>,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let _ = mailbox.send(DocCommand::Remote(event)).await;
        if let Some(done) = done {
            done.store(false, Ordering::Release);
        }
    });
}

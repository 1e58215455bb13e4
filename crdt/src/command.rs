//! What a document actor's mailbox carries (crate-private: outside the crate, sessions use
//! [`crate::Session`], the server the [`crate::Registry`], a cluster fan-out a
//! [`crate::fanout::RemoteInbox`]).

use bytes::Bytes;
use tokio::sync::oneshot;
use yrs::sync::awareness::AwarenessUpdate;
use yrs::StateVector;

use crate::error::DocError;
use crate::history::{Author, VersionMeta};
use crate::outbox::{ConnId, SessionInfo, SessionQueue};
use crate::protocol::IncomingUpdate;
use crate::remote::{NodeId, RemoteEvent};

/// A reply channel for a command that succeeds with nothing to say.
pub(crate) type Reply = oneshot::Sender<Result<(), DocError>>;

/// A command in a document actor's mailbox.
pub(crate) enum DocCommand {
    /// A session joins: the actor queues SyncStep1 and the awareness states on `queue`.
    Join {
        session: SessionInfo,
        queue: SessionQueue,
        /// Answered once the session is registered.
        reply: Reply,
    },
    /// Document content to apply, store and broadcast.
    Update {
        origin: Origin,
        update: IncomingUpdate,
        /// Who sent it, for an API update (a session's is known to the actor).
        author: Option<Author>,
    },
    /// Keep a version now (named `label`); answered with it once stored. With `reuse`, the
    /// last version is the answer if nothing changed since.
    KeepVersion {
        label: Option<String>,
        reuse: bool,
        reply: oneshot::Sender<Result<Option<VersionMeta>, DocError>>,
    },
    /// Any other message from a joined session.
    Message {
        conn: ConnId,
        message: SessionMessage,
    },
    /// A session left; its awareness states are removed and the others told.
    Leave { conn: ConnId },
    /// Read the document (HTTP API): the closure runs inside the actor with a read view.
    /// Answered once whatever it saw is durable.
    Read {
        read: Box<dyn FnOnce(&yrs::Doc) + Send>,
        reply: Reply,
    },
    /// Something from the cluster's other nodes.
    Remote(RemoteEvent),
    /// Ends the actor once the batch it arrived in is handled.
    Stop(Stop),
}

/// Where an update came from: it decides who is answered, who is told of a refusal, and
/// whether it is stored and published (a remote update is neither: its node did both).
pub(crate) enum Origin {
    /// A joined session.
    Session(ConnId),
    /// The HTTP API; answered once the update is durable and broadcast.
    Api(Reply),
    /// Another node of the cluster.
    Remote,
}

/// A session's message other than an update.
pub(crate) enum SessionMessage {
    /// Answer with what the client is missing (SyncStep2).
    SyncStep1(StateVector),
    /// The client's presence; `frame` is relayed as received.
    Awareness {
        update: AwarenessUpdate,
        frame: Bytes,
    },
    /// Answer with every presence state.
    QueryAwareness,
    /// Relay to the other sessions (a lib0 string, as received).
    Stateless(Bytes),
}

/// Why the actor stops.
pub(crate) enum Stop {
    /// Delete the document from the store, close every session and stop. The actor keeps the
    /// registry entry until the deletion is done, so no other actor can load the old state.
    /// Answered with whether anything was stored.
    Delete(oneshot::Sender<Result<bool, DocError>>),
    /// Server shutdown: close every session and stop.
    Shutdown(Reply),
    /// Another node deleted the document.
    DeletedElsewhere(NodeId),
}

impl DocCommand {
    /// Answers a command the actor will not carry out.
    pub(crate) fn refuse(self, error: DocError) {
        match self {
            DocCommand::Join { reply, .. }
            | DocCommand::Read { reply, .. }
            | DocCommand::Stop(Stop::Shutdown(reply))
            | DocCommand::Update {
                origin: Origin::Api(reply),
                ..
            } => {
                let _ = reply.send(Err(error));
            }
            DocCommand::Stop(Stop::Delete(reply)) => {
                let _ = reply.send(Err(error));
            }
            DocCommand::KeepVersion { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            DocCommand::Update { .. }
            | DocCommand::Message { .. }
            | DocCommand::Leave { .. }
            | DocCommand::Remote(_)
            | DocCommand::Stop(Stop::DeletedElsewhere(_)) => {}
        }
    }
}

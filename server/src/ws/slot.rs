//! One document session on a connection ([`DocSlot`]): joining its document, the messages
//! waiting for room in the document's mailbox, and the queue the document fills for it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use weft_crdt::protocol::ClientMessage;
use weft_crdt::{session_queue, ConnId, DocError, DocName, Outbox, QueueLimits, Session};
use weft_crdt::{SessionInfo, SessionQueue};

use crate::auth::{Access, Permission};
use crate::limits::ConnectionPermit;
use crate::state::AppState;

/// A session joining its document: resolves to its line into the document.
pub(crate) type Joining = Pin<Box<dyn Future<Output = Result<Session, DocError>>>>;

/// Who connected, logged once the session has joined.
pub(crate) struct Arrival {
    /// The client's address.
    pub addr: String,
    /// Who authenticated it.
    pub user: String,
    /// Whether the session may only read.
    pub read_only: bool,
}

/// One document session on a connection.
pub(crate) struct DocSlot {
    /// What the protocol calls this session in its frames.
    pub address: Arc<str>,
    pub name: DocName,
    /// The join in progress, and who is joining (logged once joined).
    pub joining: Option<(Joining, Arrival)>,
    /// Where decoded messages go once joined; dropping it tells the document the session left.
    pub session: Option<Session>,
    /// Decoded messages waiting for room in the document's mailbox (or for the join), in order.
    pub waiting: VecDeque<ClientMessage>,
    /// What the document queued for this session.
    pub outbox: Outbox,
    /// Holds this session's slot under the connection limits.
    _permit: ConnectionPermit,
}

/// What a new session needs besides its document.
pub(crate) struct Joiner<'a> {
    pub state: &'a Arc<AppState>,
    pub conn: ConnId,
    pub access: &'a Access,
    pub peer: String,
    /// Whether the session is told when its updates are durable (the protocol's choice).
    pub durable_acks: bool,
    /// Whether the join first checks that the document was not deleted (the y-websocket
    /// upgrade checks before it answers; a session opened inside a connection cannot).
    pub check_deleted: bool,
}

impl DocSlot {
    /// A session joining `name` at `address`, holding `permit`.
    pub(crate) fn join(
        joiner: Joiner<'_>,
        address: Arc<str>,
        name: DocName,
        permit: ConnectionPermit,
    ) -> Self {
        let state = joiner.state;
        let (queue, outbox) = session_queue(QueueLimits {
            frames: state.config.outbound_queue,
            bytes: state.config.outbound_queue_bytes,
        });
        let can_write = joiner.access.permission == Permission::Write;
        let session = SessionInfo {
            conn: joiner.conn,
            user: Arc::from(joiner.access.sub.as_str()),
            authenticated: joiner.access.counted_user().is_some(),
            can_write,
            durable_acks: joiner.durable_acks,
            stateless: joiner.access.may_send_stateless(),
        };
        let join = joining(
            state.clone(),
            name.clone(),
            session,
            queue,
            joiner.check_deleted,
        );
        let arrival = Arrival {
            addr: joiner.peer,
            user: joiner.access.sub.clone(),
            read_only: !can_write,
        };
        DocSlot {
            address,
            name,
            joining: Some((join, arrival)),
            session: None,
            waiting: VecDeque::new(),
            outbox,
            _permit: permit,
        }
    }
}

fn joining(
    state: Arc<AppState>,
    name: DocName,
    session: SessionInfo,
    queue: SessionQueue,
    check_deleted: bool,
) -> Joining {
    Box::pin(async move {
        if check_deleted {
            super::upgrade::refuse_deleted(&state, &name)
                .await
                .map_err(|error| match error {
                    crate::error::ApiError::Gone(_) => DocError::Deleted,
                    other => DocError::Unavailable(other.to_string()),
                })?;
        }
        state.registry.join(&name, session, queue).await
    })
}

//! What the document does with its sessions' commands: joining (the server's SyncStep1 and the
//! presence states), updates (refused from read-only sessions, acknowledged once durable to
//! sessions that asked), questions (answered only when the asker's queue could take the answer),
//! presence, stateless messages, and leaving.

use super::batch::{Outgoing, Pending};
use super::presence::Source;
use super::DocActor;
use crate::command::{Origin, SessionMessage};
use crate::error::DocError;
use crate::history::Author;
use crate::outbox::CloseReason;
use crate::outbox::{ConnId, SessionInfo, SessionQueue};
use crate::protocol::{self, IncomingUpdate};

impl DocActor {
    pub(super) fn take_update(
        &mut self,
        origin: Origin,
        update: IncomingUpdate,
        author: Option<Author>,
        pending: &mut Pending,
        out: &mut Outgoing,
    ) {
        let author = match (&origin, author) {
            (Origin::Session(conn), _) => self.author(*conn),
            (_, Some(author)) => author,
            (_, None) => Author::named("api"),
        };
        if let Origin::Session(conn) = origin {
            match self.delivery.can_write(conn) {
                // Closed while this update was queued.
                None => return,
                // Closed earlier in this batch.
                Some(_) if out.closes(conn) => return,
                Some(false) => {
                    if self.delivery.may_answer(conn, out) {
                        out.reply(
                            conn,
                            protocol::encode_permission_denied(
                                "read-only connection: update ignored",
                            ),
                        );
                    }
                    return;
                }
                Some(true) => {
                    // Acknowledged once the batch is durable: direct frames go out only then
                    // (and never if the batch is dropped).
                    if self.delivery.wants_acks(conn) {
                        out.reply(conn, protocol::encode_durable());
                    }
                }
            }
        }
        // A verified user may not write under a client id another one writes under.
        let doc = &self.doc;
        if let Err(reason) = self
            .history
            .claim(&author, &update.update, |client| doc.clock(client))
        {
            tracing::warn!(doc = %self.name, user = ?author.name, %reason, "update refused");
            match origin {
                Origin::Session(conn) => out.closes.push((conn, CloseReason::Refused(reason))),
                Origin::Api(reply) => {
                    let _ = reply.send(Err(DocError::Refused(reason)));
                }
                Origin::Remote => {}
            }
            return;
        }
        pending.push_back((update, origin, vec![author.name]));
    }

    /// Who a session's updates are credited to: its authenticated user, or with auth off the
    /// name its client announces (`user.name` in its awareness state), else its user.
    fn author(&self, conn: ConnId) -> Author {
        match self.delivery.info(conn) {
            Some(info) if info.authenticated => Author {
                name: info.user.clone(),
                verified: true,
            },
            info => {
                let fallback = info.map_or("anonymous", |i| i.user.as_ref());
                match self.presence.user_name(conn) {
                    Some(name) => Author::named(&name),
                    None => Author::named(fallback),
                }
            }
        }
    }

    pub(super) fn join(&mut self, session: SessionInfo, queue: SessionQueue, out: &mut Outgoing) {
        let conn = session.conn;
        self.hooks
            .emit(&self.name, |h| h.joined(&self.name, &session));
        self.presence.joined(&session);
        self.delivery.join(session, queue);
        if self.restore.is_pending() {
            self.restore.await_step1(conn);
        } else {
            out.reply(conn, protocol::encode_sync_step1(&self.doc.state_vector()));
        }
        if let Some(frame) = self.presence.everyone() {
            out.reply(conn, frame);
        }
    }

    pub(super) fn message(&mut self, conn: ConnId, message: SessionMessage, out: &mut Outgoing) {
        if !self.delivery.contains(conn) || out.closes(conn) {
            return; // Closed while this message was queued, or earlier in this batch.
        }
        let asks = matches!(
            message,
            SessionMessage::SyncStep1(_) | SessionMessage::QueryAwareness
        );
        // An answer is refused before it is computed when the session's queue could not take
        // it: a client that stops reading and keeps asking is too slow, not a memory sink.
        if asks && !self.delivery.may_answer(conn, out) {
            return;
        }
        match message {
            SessionMessage::SyncStep1(state_vector) => {
                if state_vector.is_empty() && self.restore.is_pending() {
                    self.restore.answered_from_store(conn);
                }
                // Cached while the document is unchanged: a flood of identical requests shares
                // one frame.
                out.reply(conn, self.doc.sync_step2_frame(&state_vector));
            }
            SessionMessage::Awareness { update, frame } => {
                self.presence
                    .apply(Source::Session(conn), update, frame, out);
            }
            SessionMessage::QueryAwareness => {
                if let Some(frame) = self.presence.everyone() {
                    out.reply(conn, frame);
                }
            }
            SessionMessage::Stateless(payload) => {
                if self.delivery.may_send_stateless(conn) {
                    out.stateless
                        .push((conn, protocol::encode_stateless(&payload)));
                }
            }
        }
    }

    pub(super) fn leave(&mut self, conn: ConnId, out: &mut Outgoing) {
        if let Some(info) = self.delivery.leave(conn) {
            self.presence.session_left(conn, out);
            self.hooks.emit(&self.name, |h| h.left(&self.name, &info));
        }
    }
}

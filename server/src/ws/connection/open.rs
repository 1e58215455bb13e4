//! Opening and closing document sessions inside a connection, for protocols that carry several
//! documents on one socket (Hocuspocus): an Auth message opens its address with the same
//! checks the y-websocket upgrade makes (token, connection caps, deleted documents), messages
//! sent before their address's Auth are held (bounded) and handled in order after it, and a
//! refusal answers that address alone.

use std::sync::Arc;

use actix_http::ws::CloseCode;
use weft_crdt::protocol::ClientMessage;
use weft_crdt::DocName;

use super::{Connection, End};
use crate::auth::{self, Permission};
use crate::ws::slot::{DocSlot, Joiner};

/// Most addresses (open, opening or refused) one connection may have: a provider multiplexes
/// the documents of one page, not a crawl of the server.
pub(crate) const MAX_ADDRESSES: usize = 256;

/// Most messages held for addresses not opened yet, and their bytes (counted twice: a held
/// message is kept decoded beside its bytes). A provider sends little before its Auth (its
/// presence, its SyncStep1), and a socket that has opened nothing is vouched for by no token.
const MAX_HELD: usize = 32;
const MAX_HELD_BYTES: usize = 256 * 1024;

impl Connection {
    /// A message for `address`: to its session, held until its Auth, or dropped if the
    /// address was refused.
    pub(super) fn route(&mut self, address: Arc<str>, message: ClientMessage, size: usize) {
        if let ClientMessage::Stateless(_) = message {
            metrics::counter!("weft_stateless_messages_total", "protocol" => self.protocol.name())
                .increment(1);
        }
        if let Some(slot) = self.slots.iter_mut().find(|s| s.address == address) {
            slot.waiting.push_back(message);
            return;
        }
        if self.refused.contains(&address) {
            metrics::counter!("weft_messages_dropped_total", "reason" => "refused_document")
                .increment(1);
            return;
        }
        let size = size * 2;
        if self.held.len() >= MAX_HELD || self.held_bytes + size > MAX_HELD_BYTES {
            return self.end(End::Closed(
                CloseCode::Policy,
                format!(
                    "more than {MAX_HELD} messages or {} bytes sent for documents before their Auth",
                    MAX_HELD_BYTES / 2
                ),
            ));
        }
        self.held_bytes += size;
        self.held.push((address, message, size));
    }

    /// The client's Auth for `doc` at `address`: checked as an upgrade would be, then joined.
    pub(super) fn open(&mut self, address: Arc<str>, doc: DocName, token: Option<String>) {
        if self.slots.iter().any(|s| s.address == address) {
            return; // Already open (a provider may send its token again).
        }
        self.refused.remove(&address);
        if self.slots.len() + self.refused.len() >= MAX_ADDRESSES {
            return self.end(End::Closed(
                CloseCode::Policy,
                format!("more than {MAX_ADDRESSES} documents on one connection"),
            ));
        }
        let state = self.state.clone();
        let access = match auth::authorize_token(
            state.auth.as_ref(),
            token,
            &self.peer,
            "/hocuspocus",
            Some(&doc),
            Permission::Read,
        ) {
            Ok(access) => access,
            Err(error) => return self.refuse(address, &error.to_string()),
        };
        let permit = match state.limits.acquire(&doc, self.ip, access.counted_user()) {
            Ok(permit) => permit,
            Err(error) => {
                tracing::warn!(doc = %doc, conn = %self.conn, reason = %error, "document refused");
                return self.refuse(address, &error.to_string());
            }
        };
        self.expiry.tighten(access.expires_at());
        // Each document session has an id of its own: one socket may hold the same document
        // at two addresses (the provider's `sessionAwareness`), and the document tells its
        // sessions apart by id.
        let joiner = Joiner {
            state: &state,
            conn: uuid::Uuid::new_v4(),
            access: &access,
            peer: self.peer.clone(),
            durable_acks: self.protocol.durable_acks(),
            check_deleted: true,
        };
        let mut slot = DocSlot::join(joiner, address.clone(), doc, permit);
        // What the client sent before its Auth, in order.
        let held = std::mem::take(&mut self.held);
        for (to, message, size) in held {
            if to == address {
                self.held_bytes -= size;
                slot.waiting.push_back(message);
            } else {
                self.held.push((to, message, size));
            }
        }
        self.slots.push(slot);
        // From now on the socket is counted by its documents' sessions.
        self.socket_permit = None;
    }

    /// Refuses `address` (its held messages are dropped) with a frame for the client; a
    /// protocol without one ends the connection.
    pub(super) fn refuse(&mut self, address: Arc<str>, reason: &str) {
        self.drop_held(&address);
        match self.protocol.denied(&address, reason) {
            Some(frame) => {
                if self.refused.len() >= MAX_ADDRESSES {
                    return self.end(End::Closed(
                        CloseCode::Policy,
                        format!("more than {MAX_ADDRESSES} documents refused on one connection"),
                    ));
                }
                self.refused.insert(address);
                self.write_frame(&frame);
            }
            None => self.end(End::Closed(CloseCode::Policy, reason.to_string())),
        }
    }

    /// The client closes `address`: its session leaves its document; the others go on.
    pub(super) fn close_address(&mut self, address: &Arc<str>) {
        self.drop_held(address);
        self.refused.remove(address);
        if let Some(index) = self.slots.iter().position(|s| &s.address == address) {
            let slot = self.slots.remove(index);
            tracing::info!(doc = %slot.name, conn = %self.conn, "document closed by the client");
        }
    }

    fn drop_held(&mut self, address: &Arc<str>) {
        let mut freed = 0;
        self.held.retain(|(to, _, size)| {
            let keep = to != address;
            if !keep {
                freed += size;
            }
            keep
        });
        self.held_bytes -= freed;
    }
}

//! One WebSocket connection, served entirely by its HTTP response body.
//!
//! actix-web's HTTP/1 dispatcher owns an upgraded connection's socket: it feeds what it reads
//! into the request payload and polls the response body whenever the socket can take more or
//! something the body waits on wakes it. [`Connection`] is that body, and it is the whole
//! connection: it serves one document session per document open on it (y-websocket: exactly
//! one; Hocuspocus: any number, each opened by the client's Auth for it, see `open`), speaking
//! the [`WireProtocol`] it was given. Each poll it
//! - finishes joining documents (nothing more is read from the client meanwhile);
//! - reads the client's frames from the payload (actix-http's WebSocket codec; fragmented
//!   messages are reassembled), has the protocol decode each message and hands it to its
//!   document's session; while a document's mailbox is full it stops reading, so the socket
//!   pushes back on the client;
//! - refuses a frame whose header declares more than `--max-message-bytes` as soon as the
//!   header arrives (1009), so no more than that is ever buffered for one message;
//! - answers pings, sends its own every `--ping-interval`, and ends the connection when the
//!   client has sent nothing for `--client-timeout`, or when its token expires (4401: nothing
//!   it sends after `exp` reaches a document), or when it has held no document that long;
//! - writes every frame its documents queued, framed by the protocol, up to 32 KiB per poll.
//!
//! So a connection costs one task (the dispatcher's) and one queue per document session, and a
//! frame from a document reaches the socket in one hand-off. The dispatcher polls the body only
//! when the socket can take more, so a document's queue fills exactly when the client falls
//! behind, which is what the actor's coalescing and its slow-client check look at.
//!
//! A connection ends with a WebSocket close code and one log line (see [`End`]). Dropping it
//! tells its documents the sessions left and frees its connection slots.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_codec::Decoder;
use actix_http::ws::{CloseCode, Codec, Frame, Item, OpCode, Parser};
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::Payload;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::time::Sleep;
use weft_crdt::protocol::ClientMessage;
use weft_crdt::{CloseReason, ConnId};

use super::close::End;
use super::expiry::Expiry;
use super::frame::frame_header;
use super::slot::DocSlot;
use crate::inflight::Reservation;
use crate::limits::RateLimiter;
use crate::state::AppState;
use crate::wire::{Incoming, SessionEnd, WireProtocol};

mod open;
mod output;

/// Most bytes encoded per poll before the buffer is handed to the socket (what one connection
/// holds in user space beyond its queues; under overload that is per connection, so it stays
/// small).
const MAX_CHUNK_BYTES: usize = 32 * 1024;

/// Longest payload of a control frame (RFC 6455, 5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Close code for a connection whose token expired (the WebSocket range for applications):
/// the client should get a new token, not just reconnect.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4401;

/// Who is on the other end of a connection.
pub(crate) struct Client {
    /// This connection's id (its sessions use it too).
    pub conn: ConnId,
    /// The client's address (for its connection caps and its invalid messages).
    pub ip: IpAddr,
    /// Its address and port, for log lines.
    pub peer: String,
    /// When its token expires (seconds since the Unix epoch), if it has one.
    pub expires_at: Option<u64>,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading, writing, pinging.
    Open,
    /// Ended: what is buffered (the close frame last) is written, then the body ends.
    Closing,
}

/// The response body that serves one WebSocket connection (see the module comment).
pub struct Connection {
    state: Arc<AppState>,
    conn: ConnId,
    ip: IpAddr,
    peer: String,
    /// When the token expires.
    expiry: Expiry,
    protocol: Box<dyn WireProtocol>,
    slots: Vec<DocSlot>,
    /// Messages for addresses the client has not opened yet (Hocuspocus: sent before their
    /// Auth), in order, with their total size; bounded (see `open`).
    held: Vec<(Arc<str>, ClientMessage, usize)>,
    held_bytes: usize,
    /// Addresses whose opening was refused: their messages are dropped until a new Auth.
    refused: HashSet<Arc<str>>,
    /// The slot a socket holds before its first document is open (Hocuspocus).
    socket_permit: Option<crate::limits::ConnectionPermit>,
    /// What the client sends, as the dispatcher reads it.
    payload: Payload,
    codec: Codec,
    /// Received bytes not yet decoded into frames (released when empty).
    read_buf: BytesMut,
    /// The fragments of a message sent in several frames, so far.
    fragments: Option<BytesMut>,
    /// What the message being received holds of the server's in-flight budget.
    inflight: Reservation,
    /// Encoded frames for the socket, handed to the dispatcher at the end of each poll.
    write_buf: BytesMut,
    /// A large frame on its way out, in order: what preceded it (its header included), then
    /// its body, shared with the document and every other client (never copied). Handed to the
    /// dispatcher [`MAX_CHUNK_BYTES`] at a time, before anything written to `write_buf` since.
    sending: VecDeque<Bytes>,
    ping: Pin<Box<Sleep>>,
    last_heard: Instant,
    /// Since when no document has been open on the connection (Hocuspocus).
    docless_since: Option<Instant>,
    rate: RateLimiter,
    phase: Phase,
    /// Whether the end has been logged (it is logged once).
    ended: bool,
    bytes_in: metrics::Counter,
    bytes_out: metrics::Counter,
}

impl Connection {
    /// Serves connection `conn`, speaking `protocol`, with `slots` joining their documents.
    pub(crate) fn new(
        state: Arc<AppState>,
        client: Client,
        protocol: Box<dyn WireProtocol>,
        slots: Vec<DocSlot>,
        payload: Payload,
    ) -> Self {
        let max = state.config.max_message_bytes;
        let period = state.config.ping_interval;
        let rate = RateLimiter::new(state.config.max_messages_per_second);
        let inflight = state.inflight.reservation();
        let protocol_name = protocol.name();
        metrics::gauge!("weft_sockets", "protocol" => protocol_name).increment(1.0);
        Connection {
            state,
            conn: client.conn,
            ip: client.ip,
            peer: client.peer,
            expiry: Expiry::new(client.expires_at),
            protocol,
            slots,
            held: Vec::new(),
            held_bytes: 0,
            refused: HashSet::new(),
            socket_permit: None,
            payload,
            codec: Codec::new().max_size(max),
            read_buf: BytesMut::new(),
            fragments: None,
            inflight,
            write_buf: BytesMut::new(),
            sending: VecDeque::new(),
            // The first ping is one period away.
            ping: Box::pin(tokio::time::sleep(period)),
            last_heard: Instant::now(),
            docless_since: None,
            rate,
            phase: Phase::Open,
            ended: false,
            bytes_in: metrics::counter!("weft_bytes_in_total", "protocol" => protocol_name),
            bytes_out: metrics::counter!("weft_bytes_out_total", "protocol" => protocol_name),
        }
    }

    /// Holds `permit` until the first document is open.
    pub(crate) fn hold_socket_permit(&mut self, permit: crate::limits::ConnectionPermit) {
        self.socket_permit = Some(permit);
    }

    /// The documents open on this connection, for log lines.
    fn docs(&self) -> String {
        let names: Vec<&str> = self.slots.iter().map(|s| s.name.as_str()).collect();
        names.join(",")
    }

    /// Ends the connection: logs why, queues the close frame (if any) behind what is buffered,
    /// and stops reading and taking frames from the documents.
    fn end(&mut self, end: End) {
        if self.phase == Phase::Closing {
            return;
        }
        self.phase = Phase::Closing;
        self.fragments = None;
        for slot in &mut self.slots {
            slot.waiting.clear();
            slot.outbox.close();
        }
        self.held.clear();
        end.log(self.conn, &self.docs());
        if end.is_invalid_input() {
            // Counted against the address: one that keeps sending them is refused for a while.
            self.state.limits.penalize(self.ip);
        }
        self.ended = true;
        end.write_close(&mut self.write_buf);
    }

    /// Ends the connection once its token expires.
    fn poll_expiry(&mut self, cx: &mut Context<'_>) {
        if self.expiry.poll(cx) {
            self.end(End::token_expired());
        }
    }

    /// Refuses the frame at the front of the read buffer as soon as its header declares more
    /// than the message limit (with what came before it, for a continuation): false then.
    fn frame_fits(&mut self) -> bool {
        let Some((continuation, declared)) = frame_header(&self.read_buf) else {
            return true;
        };
        let max = self.state.config.max_message_bytes as u64;
        let before = if continuation {
            self.fragments.as_ref().map_or(0, |f| f.len() as u64)
        } else {
            0
        };
        let whole = before.saturating_add(declared);
        if whole > max {
            self.end(End::too_large(max as usize));
            return false;
        }
        // A large message on a socket with no document open would spend the shared budget for
        // a client no token has vouched for (Hocuspocus: nothing is checked before Auth).
        if whole > crate::inflight::SMALL as u64 && self.slots.is_empty() {
            self.end(End::Closed(
                CloseCode::Size,
                format!(
                    "messages over {} bytes need an open document",
                    crate::inflight::SMALL
                ),
            ));
            return false;
        }
        // Within the limit, but large: it must fit the budget all connections share.
        if !self.inflight.grow_to(whole as usize) {
            self.end(End::busy());
            return false;
        }
        true
    }

    /// A document's session ended for `reason`: the protocol says what that means.
    fn session_ended(&mut self, index: usize, reason: CloseReason) {
        let address = self.slots[index].address.clone();
        match self.protocol.session_ended(&address, &reason) {
            SessionEnd::Connection => self.end(End::from_doc(reason)),
            SessionEnd::Session(frame) => {
                let name = &self.slots[index].name;
                tracing::info!(doc = %name, conn = %self.conn, reason = ?reason, "document session ended");
                self.slots.remove(index);
                if let Some(frame) = frame {
                    self.write_frame(&frame);
                }
            }
        }
    }

    /// Queues one binary frame for the socket.
    fn write_frame(&mut self, frame: &[u8]) {
        self.bytes_out.increment(frame.len() as u64);
        Parser::write_message(&mut self.write_buf, frame, OpCode::Binary, true, false);
    }

    /// Finishes joining documents; ready once none is joining any more.
    fn poll_joins(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut joining = false;
        let mut index = 0;
        while index < self.slots.len() && self.phase == Phase::Open {
            let slot = &mut self.slots[index];
            let Some((join, _)) = slot.joining.as_mut() else {
                index += 1;
                continue;
            };
            let Poll::Ready(joined) = join.as_mut().poll(cx) else {
                joining = true;
                index += 1;
                continue;
            };
            let Some((_, arrival)) = slot.joining.take() else {
                continue;
            };
            match joined {
                Ok(session) => {
                    tracing::info!(doc = %slot.name, conn = %self.conn, peer = %arrival.addr,
                        user = %crate::telemetry::escape(&arrival.user), read_only = arrival.read_only,
                        protocol = self.protocol.name(), "client connected");
                    slot.session = Some(session);
                    if let Some(frame) = self.protocol.opened(&slot.address, arrival.read_only) {
                        self.write_frame(&frame);
                    }
                    index += 1;
                }
                Err(error) => {
                    let address = slot.address.clone();
                    match self.protocol.denied(&address, &error.to_string()) {
                        Some(frame) => {
                            tracing::info!(doc = %slot.name, conn = %self.conn, %error,
                                "document could not be opened");
                            self.slots.remove(index);
                            self.refused.insert(address);
                            self.write_frame(&frame);
                        }
                        None => self.end(End::join_failed(&error)),
                    }
                }
            }
        }
        if joining {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Sends a ping when one is due, or ends the connection if the client has been silent for
    /// too long.
    fn poll_ping(&mut self, cx: &mut Context<'_>) {
        while self.ping.as_mut().poll(cx).is_ready() {
            if self.last_heard.elapsed() > self.state.config.client_timeout {
                self.end(End::Closed(
                    CloseCode::Away,
                    "client timed out (no pong)".into(),
                ));
                return;
            }
            // A socket holding no document holds no connection slot either: it may not idle.
            if self.slots.is_empty() {
                let since = *self.docless_since.get_or_insert_with(Instant::now);
                if since.elapsed() > self.state.config.client_timeout {
                    self.end(End::Closed(
                        CloseCode::Policy,
                        "no document opened on this connection".into(),
                    ));
                    return;
                }
            } else {
                self.docless_since = None;
            }
            Parser::write_message(&mut self.write_buf, b"", OpCode::Ping, true, false);
            let next = tokio::time::Instant::now() + self.state.config.ping_interval;
            self.ping.as_mut().reset(next);
        }
    }

    /// Hands waiting messages to their documents; false while one must wait for room.
    fn flush_waiting(&mut self, cx: &mut Context<'_>) -> bool {
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            let Some(session) = slot.session.as_mut() else {
                continue;
            };
            while let Some(message) = slot.waiting.pop_front() {
                match session.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if session.send(message).is_err() {
                            self.session_ended(index, document_stopped());
                            return false;
                        }
                    }
                    Poll::Ready(Err(_)) => {
                        self.session_ended(index, document_stopped());
                        return false;
                    }
                    Poll::Pending => {
                        // Read no further until the document takes this one.
                        slot.waiting.push_front(message);
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Reads and handles what the client sent, until the payload has nothing more, a mailbox
    /// is full, or the connection ends.
    fn poll_incoming(&mut self, cx: &mut Context<'_>) {
        while self.phase == Phase::Open {
            if !self.flush_waiting(cx) {
                return;
            }
            if !self.frame_fits() {
                return;
            }
            match self.codec.decode(&mut self.read_buf) {
                Ok(Some(frame)) => {
                    self.on_frame(frame);
                    if self.fragments.is_none() {
                        // The message has been handed on (or dropped).
                        self.inflight.release();
                    }
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    let max = self.state.config.max_message_bytes;
                    return self.end(End::protocol_error(error, max));
                }
            }
            match Pin::new(&mut self.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    self.last_heard = Instant::now();
                    self.read_buf.extend_from_slice(&bytes);
                }
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => return self.end(End::ClientGone),
                Poll::Pending => {
                    if self.read_buf.is_empty() {
                        // An idle connection keeps no read buffer.
                        self.read_buf = BytesMut::new();
                    }
                    return;
                }
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) {
        match frame {
            Frame::Binary(message) => self.on_message(message),
            Frame::Continuation(Item::FirstBinary(first)) => {
                let max = self.state.config.max_message_bytes;
                if first.len() > max {
                    return self.end(End::too_large(max));
                }
                self.fragments = Some(BytesMut::from(&first[..]));
            }
            Frame::Continuation(Item::Continue(more)) => self.add_fragment(&more),
            Frame::Continuation(Item::Last(last)) => {
                self.add_fragment(&last);
                if let Some(message) = self.fragments.take() {
                    self.on_message(message.freeze());
                }
            }
            Frame::Text(_) | Frame::Continuation(Item::FirstText(_)) => self.end(End::Closed(
                CloseCode::Unsupported,
                "text frames are not part of the protocol".into(),
            )),
            Frame::Ping(payload) => {
                let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
                Parser::write_message(&mut self.write_buf, payload, OpCode::Pong, true, false);
            }
            Frame::Pong(_) => {}
            Frame::Close(_) => self.end(End::ClientClosed),
        }
    }

    fn add_fragment(&mut self, more: &[u8]) {
        let max = self.state.config.max_message_bytes;
        let Some(fragments) = self.fragments.as_mut() else {
            // The codec refuses a continuation that continues nothing; be safe anyway.
            return self.end(End::Closed(
                CloseCode::Protocol,
                "continuation frame without a message to continue".into(),
            ));
        };
        if fragments.len() + more.len() > max {
            return self.end(End::too_large(max));
        }
        fragments.extend_from_slice(more);
    }

    /// One complete binary message: rate-checked, decoded, and queued for its document.
    fn on_message(&mut self, message: Bytes) {
        let size = message.len();
        self.bytes_in.increment(size as u64);
        if self.expiry.expired() {
            return self.end(End::token_expired());
        }
        if !self.rate.allow() {
            let limit = self.state.config.max_messages_per_second;
            return self.end(End::Closed(
                CloseCode::Policy,
                format!("over {limit} messages per second"),
            ));
        }
        match self.protocol.decode(message) {
            Ok(Incoming::Message { address, message }) => self.route(address, message, size),
            Ok(Incoming::Open {
                address,
                doc,
                token,
            }) => self.open(address, doc, token),
            Ok(Incoming::Refuse { address, reason }) => self.refuse(address, &reason),
            Ok(Incoming::Close { address }) => self.close_address(&address),
            Ok(Incoming::Nothing) => {}
            Err(error) => self.end(End::Closed(CloseCode::Invalid, error.to_string())),
        }
    }
}

impl MessageBody for Connection {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        // While a document is joining, nothing more is read (what follows may be for it).
        let joining = this.phase == Phase::Open && this.poll_joins(cx).is_pending();
        if this.phase == Phase::Open {
            this.poll_expiry(cx);
        }
        if this.phase == Phase::Open {
            this.poll_ping(cx);
            if !joining {
                this.poll_incoming(cx);
            }
            this.poll_queues(cx);
        }
        // A large frame first (a chunk at a time: the dispatcher copies what it is given into
        // its own buffer, and asks for more only once the socket has taken it).
        if let Some(mut chunk) = this.sending.pop_front() {
            if chunk.len() > MAX_CHUNK_BYTES {
                let rest = chunk.split_off(MAX_CHUNK_BYTES);
                this.sending.push_front(rest);
            }
            return Poll::Ready(Some(Ok(chunk)));
        }
        if !this.write_buf.is_empty() {
            return Poll::Ready(Some(Ok(this.write_buf.split().freeze())));
        }
        match this.phase {
            Phase::Open => Poll::Pending,
            Phase::Closing => Poll::Ready(None),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The dispatcher drops the body when the socket fails or closes under it. (A session
        // dropped while joining has nothing to log: it never connected.)
        metrics::gauge!("weft_sockets", "protocol" => self.protocol.name()).decrement(1.0);
        let joined = self.slots.iter().any(|s| s.session.is_some());
        if !self.ended && joined {
            End::ClientGone.log(self.conn, &self.docs());
        }
    }
}

pub(super) fn document_stopped() -> CloseReason {
    CloseReason::Unavailable("document stopped".into())
}

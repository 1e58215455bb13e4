//! One WebSocket connection, served entirely by its HTTP response body.
//!
//! actix-web's HTTP/1 dispatcher owns an upgraded connection's socket: it feeds what it reads
//! into the request payload and polls the response body whenever the socket can take more or
//! something the body waits on wakes it. [`Connection`] is that body, and it is the whole
//! session. It first joins the document (while the client already has its 101 and is sending
//! its SyncStep1), then each poll it
//! - reads the client's frames from the payload (actix-http's WebSocket codec; fragmented
//!   messages are reassembled), decodes each message and hands it to the document actor; while
//!   the actor's mailbox is full it stops reading, so the socket pushes back on the client;
//! - answers pings, sends its own every `--ping-interval`, and ends the connection when the
//!   client has sent nothing for `--client-timeout`;
//! - writes every frame the document has queued for this connection, up to 32 KiB per poll.
//!
//! So a connection costs one task (the dispatcher's) and one queue (the document's), and a
//! frame from the document reaches the socket in one hand-off. The dispatcher polls the body
//! only when the socket can take more, so the document's queue fills exactly when the client
//! falls behind, which is what the actor's coalescing and its slow-client check look at.
//!
//! A connection ends with a WebSocket close code and one log line: when the client closes or
//! goes away, sends something invalid or too much, stops answering pings, or when the document
//! closes or drops it (too slow, deleted, server shutting down). Dropping it tells the document
//! the session left and frees its connection slot.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use actix_codec::Decoder;
use actix_http::ws::{
    CloseCode, CloseReason as WsCloseReason, Codec, Frame, Item, OpCode, Parser, ProtocolError,
};
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::Payload;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::time::Sleep;
use weft_crdt::protocol::{decode_client_message, ClientMessage};
use weft_crdt::{CloseReason, ConnId, DocError, DocHandle, DocName, Outbound, SessionMailbox};

use crate::limits::{ConnectionPermit, RateLimiter};
use crate::state::AppState;

/// Most bytes encoded per poll before the buffer is handed to the socket (what one connection
/// holds in user space beyond its queue; under overload that is per connection, so it stays small).
const MAX_CHUNK_BYTES: usize = 32 * 1024;

/// Longest payload of a control frame (RFC 6455, 5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest close reason sent (it shares the control frame with the 2-byte code).
const MAX_CLOSE_REASON: usize = 120;

/// Why a connection ended: what is logged and which close frame (if any) is sent.
#[derive(Debug)]
enum End {
    /// The client sent a close frame.
    ClientClosed,
    /// The client's connection is gone (closed, reset or dropped by the dispatcher).
    ClientGone,
    /// The server closes with this code and reason.
    Closed(CloseCode, String),
}

impl End {
    /// The close the document asked for.
    fn from_doc(reason: CloseReason) -> End {
        match reason {
            CloseReason::BadMessage(why) => End::Closed(CloseCode::Invalid, why),
            CloseReason::Refused(why) => End::Closed(CloseCode::Policy, why),
            CloseReason::Unavailable(why) => End::Closed(CloseCode::Error, why),
            CloseReason::Deleted => End::Closed(CloseCode::Normal, "document deleted".into()),
            CloseReason::ShuttingDown => {
                End::Closed(CloseCode::Away, "server shutting down".into())
            }
        }
    }

    /// The document dropped the connection's queue: the client could not keep up.
    fn too_slow() -> End {
        End::Closed(
            CloseCode::Again,
            "client too slow: outgoing queue full; reconnect to resync".into(),
        )
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading, writing, pinging.
    Open,
    /// Ended: what is buffered (the close frame last) is written, then the body ends.
    Closing,
}

/// Who is on the other end, for the log lines.
pub(crate) struct Peer {
    /// The document's name.
    pub name: DocName,
    /// This connection's id.
    pub conn: ConnId,
}

/// The session joining its document: resolves to the document's handle.
pub(crate) type Joining = Pin<Box<dyn Future<Output = Result<DocHandle, DocError>>>>;

/// Who connected, logged once the session has joined (then dropped).
pub(crate) struct Arrival {
    /// The client's address.
    pub addr: String,
    /// The token's subject (empty without auth).
    pub user: String,
    /// Whether the session may only read.
    pub read_only: bool,
}

/// The response body that serves one WebSocket connection (see the module comment).
pub struct Connection {
    state: Arc<AppState>,
    peer: Peer,
    /// The join in progress (nothing is read from the client until it is done).
    joining: Option<(Joining, Box<Arrival>)>,
    /// Where decoded messages go once joined; dropping it tells the document this session left.
    mailbox: Option<SessionMailbox>,
    /// A decoded message waiting for room in the mailbox.
    waiting: Option<ClientMessage>,
    /// What the client sends, as the dispatcher reads it.
    payload: Payload,
    codec: Codec,
    /// Received bytes not yet decoded into frames (released when empty).
    read_buf: BytesMut,
    /// The fragments of a message sent in several frames, so far.
    fragments: Option<BytesMut>,
    /// Frames the document queued for this connection.
    queue: mpsc::Receiver<Outbound>,
    /// Encoded frames for the socket, handed to the dispatcher at the end of each poll.
    write_buf: BytesMut,
    ping: Pin<Box<Sleep>>,
    last_heard: Instant,
    rate: RateLimiter,
    phase: Phase,
    /// Whether the end has been logged (it is logged once).
    ended: bool,
    /// Holds this connection's slot under the connection limits.
    _permit: ConnectionPermit,
    bytes_in: metrics::Counter,
    bytes_out: metrics::Counter,
}

impl Connection {
    /// Serves a connection whose session is `joining` its document with `queue` as its
    /// outgoing queue (where the document queues its greeting once joined).
    pub(crate) fn new(
        state: Arc<AppState>,
        peer: Peer,
        joining: (Joining, Box<Arrival>),
        payload: Payload,
        queue: mpsc::Receiver<Outbound>,
        permit: ConnectionPermit,
    ) -> Self {
        let max = state.config.max_message_bytes;
        let period = state.config.ping_interval;
        let rate = RateLimiter::new(state.config.max_messages_per_second);
        Connection {
            state,
            peer,
            joining: Some(joining),
            mailbox: None,
            waiting: None,
            payload,
            codec: Codec::new().max_size(max),
            read_buf: BytesMut::new(),
            fragments: None,
            queue,
            write_buf: BytesMut::new(),
            // The first ping is one period away.
            ping: Box::pin(tokio::time::sleep(period)),
            last_heard: Instant::now(),
            rate,
            phase: Phase::Open,
            ended: false,
            _permit: permit,
            bytes_in: metrics::counter!("weft_bytes_in_total"),
            bytes_out: metrics::counter!("weft_bytes_out_total"),
        }
    }

    /// Ends the connection: logs why, queues the close frame (if any) behind what is buffered,
    /// and stops reading and taking frames from the document.
    fn end(&mut self, end: End) {
        if self.phase == Phase::Closing {
            return;
        }
        self.phase = Phase::Closing;
        self.waiting = None;
        self.fragments = None;
        self.queue.close();
        log_end(&self.peer, &end);
        self.ended = true;
        match end {
            End::Closed(code, why) => Parser::write_close(
                &mut self.write_buf,
                Some(WsCloseReason {
                    code,
                    description: Some(cut(&why, MAX_CLOSE_REASON).to_string()),
                }),
                false,
            ),
            End::ClientClosed => Parser::write_close(&mut self.write_buf, None, false),
            // Nobody to write to: drop what is buffered.
            End::ClientGone => self.write_buf.clear(),
        }
    }

    /// Finishes joining the document; ready once joined or ended.
    fn poll_join(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some((join, _)) = self.joining.as_mut() else {
            return Poll::Ready(());
        };
        let joined = ready!(join.as_mut().poll(cx));
        let Some((_, arrival)) = self.joining.take() else {
            return Poll::Ready(());
        };
        let (name, conn) = (&self.peer.name, self.peer.conn);
        match joined {
            Ok(doc) => {
                tracing::info!(doc = %name, %conn, peer = %arrival.addr, user = %arrival.user,
                    read_only = arrival.read_only, "client connected");
                self.mailbox = Some(SessionMailbox::new(&doc, conn));
            }
            Err(error) => {
                let code = match error {
                    DocError::ShuttingDown => CloseCode::Away,
                    _ => CloseCode::Again,
                };
                self.end(End::Closed(
                    code,
                    format!("could not open document: {error}"),
                ));
            }
        }
        Poll::Ready(())
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
            Parser::write_message(&mut self.write_buf, b"", OpCode::Ping, true, false);
            let next = tokio::time::Instant::now() + self.state.config.ping_interval;
            self.ping.as_mut().reset(next);
        }
    }

    /// Reads and handles what the client sent, until the payload has nothing more, the
    /// mailbox is full, or the connection ends.
    fn poll_incoming(&mut self, cx: &mut Context<'_>) {
        while self.phase == Phase::Open {
            let Some(mailbox) = self.mailbox.as_mut() else {
                return;
            };
            if let Some(message) = self.waiting.take() {
                match mailbox.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if mailbox.send(message).is_err() {
                            return self.end(document_stopped());
                        }
                    }
                    Poll::Ready(Err(_)) => return self.end(document_stopped()),
                    Poll::Pending => {
                        // Read no further until the document takes this one.
                        self.waiting = Some(message);
                        return;
                    }
                }
            }
            match self.codec.decode(&mut self.read_buf) {
                Ok(Some(frame)) => {
                    self.on_frame(frame);
                    continue;
                }
                Ok(None) => {}
                Err(error) => return self.end(protocol_error(error, &self.state)),
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
                    return self.end(too_large(max));
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
            return self.end(too_large(max));
        }
        fragments.extend_from_slice(more);
    }

    /// One complete binary message: rate-checked, decoded, and queued for the mailbox.
    fn on_message(&mut self, message: Bytes) {
        self.bytes_in.increment(message.len() as u64);
        if !self.rate.allow() {
            let limit = self.state.config.max_messages_per_second;
            return self.end(End::Closed(
                CloseCode::Policy,
                format!("over {limit} messages per second"),
            ));
        }
        match decode_client_message(message) {
            Ok(message) => self.waiting = Some(message),
            Err(error) => self.end(End::Closed(CloseCode::Invalid, error.to_string())),
        }
    }

    /// Encodes the frames the document queued, up to [`MAX_CHUNK_BYTES`].
    fn poll_queue(&mut self, cx: &mut Context<'_>) {
        while self.phase == Phase::Open && self.write_buf.len() < MAX_CHUNK_BYTES {
            match self.queue.poll_recv(cx) {
                Poll::Ready(Some(Outbound::Frame(frame))) => {
                    self.bytes_out.increment(frame.len() as u64);
                    Parser::write_message(&mut self.write_buf, &frame, OpCode::Binary, true, false);
                }
                Poll::Ready(Some(Outbound::Close(reason))) => self.end(End::from_doc(reason)),
                // The document let go of the connection: it could not keep up.
                Poll::Ready(None) => self.end(End::too_slow()),
                Poll::Pending => break,
            }
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
        if this.phase == Phase::Open && this.poll_join(cx).is_pending() {
            return Poll::Pending;
        }
        if this.phase == Phase::Open {
            this.poll_ping(cx);
            this.poll_incoming(cx);
            this.poll_queue(cx);
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
        if !self.ended && self.joining.is_none() {
            log_end(&self.peer, &End::ClientGone);
        }
    }
}

/// The one log line of a connection's end.
fn log_end(peer: &Peer, end: &End) {
    let (name, conn) = (&peer.name, peer.conn);
    match end {
        End::ClientClosed | End::ClientGone => {
            tracing::info!(doc = %name, %conn, reason = ?end, "client disconnected")
        }
        End::Closed(code, why) => {
            let code_num: u16 = (*code).into();
            if matches!(code, CloseCode::Normal | CloseCode::Away) {
                tracing::info!(doc = %name, %conn, code = code_num, reason = %why, "client disconnected");
            } else {
                tracing::warn!(doc = %name, %conn, code = code_num, reason = %why, "connection closed by server");
            }
        }
    }
}

fn document_stopped() -> End {
    End::from_doc(CloseReason::Unavailable("document stopped".into()))
}

fn too_large(max: usize) -> End {
    End::Closed(CloseCode::Size, format!("message over {max} bytes"))
}

fn protocol_error(error: ProtocolError, state: &AppState) -> End {
    match error {
        ProtocolError::Overflow => too_large(state.config.max_message_bytes),
        error => End::Closed(CloseCode::Protocol, error.to_string()),
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

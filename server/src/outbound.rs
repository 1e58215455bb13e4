//! The response body of a WebSocket session: the document's frames for one connection, written
//! from the document's queue straight into the connection's write buffer.
//!
//! actix-ws gives a session a `Session` handle whose frames travel through a second, 32-frame
//! channel to the response body. For the document's frames that meant two hand-offs per frame
//! (actor → session task → body) and a queue the document could not see. [`OutboundBody`] wraps
//! actix-ws's body instead: it still forwards what the session sends through `Session` (pings,
//! pongs, the close frame), and it drains the document's queue itself, encoding every queued
//! frame into one buffer per poll. The HTTP dispatcher polls it only when the socket can take
//! more, so the document's queue fills exactly when the client falls behind — which is what the
//! actor's coalescing and its slow-client check look at.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_http::ws::{OpCode, Parser};
use actix_web::body::{BodySize, BoxBody, MessageBody};
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use weft_crdt::{CloseReason, Outbound};

/// Most bytes encoded per poll before the buffer is handed to the socket (what one connection
/// holds in user space beyond its queue; under overload that is per connection, so it stays small).
const MAX_CHUNK_BYTES: usize = 32 * 1024;

/// Why the document stopped feeding a connection; the session turns it into a close frame.
#[derive(Debug)]
pub enum DocEnded {
    /// The document closed the connection for this reason.
    Closed(CloseReason),
    /// The document dropped the connection's queue: the client could not keep up.
    Dropped,
}

/// A WebSocket response body: the document's frames plus the session's own control frames.
pub struct OutboundBody {
    queue: mpsc::Receiver<Outbound>,
    queue_open: bool,
    control: BoxBody,
    control_done: bool,
    ended: Option<oneshot::Sender<DocEnded>>,
    buf: BytesMut,
    bytes_out: metrics::Counter,
}

impl OutboundBody {
    /// Wraps actix-ws's body (`control`) and the document's queue for one connection. `ended`
    /// hears why, if the document lets go of the connection first.
    pub fn new(
        queue: mpsc::Receiver<Outbound>,
        control: BoxBody,
        ended: oneshot::Sender<DocEnded>,
    ) -> Self {
        OutboundBody {
            queue,
            queue_open: true,
            control,
            control_done: false,
            ended: Some(ended),
            buf: BytesMut::new(),
            bytes_out: metrics::counter!("weft_bytes_out_total"),
        }
    }

    fn document_ended(&mut self, why: DocEnded) {
        self.queue_open = false;
        self.queue.close();
        if let Some(ended) = self.ended.take() {
            // The session may be gone already; then there is nobody left to tell.
            let _ = ended.send(why);
        }
    }
}

impl MessageBody for OutboundBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        // The session's control frames first: once its close frame is out, nothing follows.
        while !this.control_done {
            match Pin::new(&mut this.control).poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => this.buf.extend_from_slice(&bytes),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => {
                    this.control_done = true;
                    this.queue_open = false;
                }
                Poll::Pending => break,
            }
        }
        while this.queue_open && this.buf.len() < MAX_CHUNK_BYTES {
            match this.queue.poll_recv(cx) {
                Poll::Ready(Some(Outbound::Frame(frame))) => {
                    this.bytes_out.increment(frame.len() as u64);
                    Parser::write_message(&mut this.buf, &frame, OpCode::Binary, true, false);
                }
                Poll::Ready(Some(Outbound::Close(reason))) => {
                    this.document_ended(DocEnded::Closed(reason))
                }
                Poll::Ready(None) => this.document_ended(DocEnded::Dropped),
                Poll::Pending => break,
            }
        }
        if !this.buf.is_empty() {
            return Poll::Ready(Some(Ok(this.buf.split().freeze())));
        }
        if this.control_done {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

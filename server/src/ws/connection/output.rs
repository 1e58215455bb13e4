//! What a connection writes: the frames its documents queued, framed by the protocol. Small
//! frames are copied into one write buffer; a large frame's body is handed to the socket as it
//! is, shared with the document and every other client, so a client that does not read costs a
//! chunk of copying, not a copy of every frame it is owed.

use std::task::{Context, Poll};

use bytes::BytesMut;
use weft_crdt::CloseReason;

use super::{document_stopped, Connection, MAX_CHUNK_BYTES};

/// Frame bodies up to this size are copied into the write buffer (small frames batch into one
/// write); larger ones are sent as they are, shared.
const COPY_BELOW: usize = 8 * 1024;

impl Connection {
    /// Encodes the frames the documents queued, up to [`MAX_CHUNK_BYTES`], taking from each
    /// document in turn; a large frame's body is not copied but sent as it is, after which
    /// nothing more is taken until it is out (so a client that does not read holds at most the
    /// shared frame and a chunk, whatever the frame's size).
    pub(super) fn poll_queues(&mut self, cx: &mut Context<'_>) {
        let mut ended: Option<(usize, CloseReason)> = None;
        let mut progress = true;
        while progress
            && self.sending.is_empty()
            && self.write_buf.len() < MAX_CHUNK_BYTES
            && ended.is_none()
        {
            progress = false;
            for (index, slot) in self.slots.iter_mut().enumerate() {
                if slot.session.is_none() {
                    continue;
                }
                match slot.outbox.poll_recv(cx) {
                    Poll::Ready(Some(frame)) => {
                        progress = true;
                        let Some(frame) = self.protocol.frame(&slot.address, frame) else {
                            continue;
                        };
                        self.bytes_out.increment(frame.len() as u64);
                        write_binary_header(&mut self.write_buf, frame.len());
                        self.write_buf.extend_from_slice(&frame.prefix);
                        if frame.body.len() <= COPY_BELOW {
                            self.write_buf.extend_from_slice(&frame.body);
                        } else {
                            self.sending.push_back(self.write_buf.split().freeze());
                            self.sending.push_back(frame.body);
                            break;
                        }
                    }
                    Poll::Ready(None) => {
                        // The document let go of the session: it says why (a session it never
                        // registered, or one it dropped without a word, could not go on).
                        let reason = slot.outbox.end_reason().unwrap_or_else(document_stopped);
                        ended = Some((index, reason));
                        break;
                    }
                    Poll::Pending => {}
                }
                if self.write_buf.len() >= MAX_CHUNK_BYTES || !self.sending.is_empty() {
                    break;
                }
            }
        }
        if let Some((index, reason)) = ended {
            self.session_ended(index, reason);
        }
    }
}

/// A server-to-client binary frame's header (FIN, no mask) for a payload of `len` bytes
/// (RFC 6455, 5.2).
fn write_binary_header(buf: &mut BytesMut, len: usize) {
    buf.extend_from_slice(&[0x82]);
    if len < 126 {
        buf.extend_from_slice(&[len as u8]);
    } else if let Ok(short) = u16::try_from(len) {
        buf.extend_from_slice(&[126]);
        buf.extend_from_slice(&short.to_be_bytes());
    } else {
        buf.extend_from_slice(&[127]);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use actix_http::ws::{OpCode, Parser};

    #[test]
    fn headers_match_the_codec() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 1 << 20] {
            let payload = vec![7u8; len];
            let mut ours = bytes::BytesMut::new();
            super::write_binary_header(&mut ours, len);
            ours.extend_from_slice(&payload);
            let mut theirs = bytes::BytesMut::new();
            Parser::write_message(&mut theirs, &payload[..], OpCode::Binary, true, false);
            assert_eq!(ours, theirs, "length {len}");
        }
    }
}

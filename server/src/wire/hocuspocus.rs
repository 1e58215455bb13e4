//! Hocuspocus: the framing `@hocuspocus/provider` (4.x) speaks, many documents on one socket.
//!
//! Every message starts with its *address* (the document name, optionally followed by `\0` and
//! a session id when the provider's `sessionAwareness` is on) as a lib0 string, then a message
//! type: Sync 0, Awareness 1, Auth 2, QueryAwareness 3, SyncReply 4, Stateless 5,
//! BroadcastStateless 6 (server-internal, refused from clients), Close 7, SyncStatus 8, and a
//! bare Pong 10 (no address). Sync, Awareness and QueryAwareness carry y-protocols messages
//! unchanged after the address, so they reuse the strict y-protocols decoder.
//!
//! How Weft answers:
//! - Auth (a token) opens the document at that address: Authenticated with the scope
//!   (`read-write` / `readonly`) once the session has joined, PermissionDenied with a reason
//!   otherwise (the connection's other documents go on).
//! - SyncStatus(true) acknowledges each update (SyncStep2 or Update) **once it is durable**:
//!   the document's [`MSG_DURABLE`] notice, sent after the store's flush. A read-only session's
//!   update changes nothing and is answered PermissionDenied (Hocuspocus answers
//!   SyncStatus(false); the provider keeps the change counted as unsynced either way).
//! - Stateless payloads are relayed to the document's other sessions as Stateless (what the
//!   provider's `onStateless` receives); y-websocket sessions do not see them.
//! - A deleted document closes its session with Close (and a reason); anything else that ends
//!   a session (a slow client, a bad message, shutdown) ends the connection, and the provider
//!   reconnects and resyncs every document on it.

use std::sync::Arc;

use bytes::Bytes;
use weft_crdt::protocol::{
    decode_client_message, ClientMessage, MSG_AUTH, MSG_DURABLE, MSG_STATELESS,
};
use weft_crdt::{CloseReason, DocName};

use super::seam::{Framed, Incoming, SessionEnd, WireError, WireProtocol};

const SYNC: u64 = 0;
const AWARENESS: u64 = 1;
const AUTH: u64 = 2;
const QUERY_AWARENESS: u64 = 3;
const SYNC_REPLY: u64 = 4;
const STATELESS: u64 = 5;
const BROADCAST_STATELESS: u64 = 6;
const CLOSE: u64 = 7;
const SYNC_STATUS: u8 = 8;
const PONG: u8 = 10;

/// Auth sub-types.
const AUTH_TOKEN: u64 = 0;
const AUTH_PERMISSION_DENIED: u8 = 1;
const AUTH_AUTHENTICATED: u8 = 2;

/// Longest address accepted (a document name is shorter; the rest is a session id).
const MAX_ADDRESS_BYTES: usize = 1024;

/// The Hocuspocus protocol for one connection.
#[derive(Debug, Default)]
pub struct Hocuspocus;

impl Hocuspocus {
    /// The protocol of a new connection.
    pub fn new() -> Self {
        Hocuspocus
    }
}

/// Reads lib0 values from a message.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn var_uint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| WireError("message ends inside a number".into()))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError("number too long".into()))
    }

    /// A lib0 string: its bytes, with where it started (length prefix included).
    fn var_string(&mut self, max: usize) -> Result<(&'a str, usize), WireError> {
        let start = self.pos;
        let len = self.var_uint()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= max && *len <= self.bytes.len() - self.pos)
            .ok_or_else(|| WireError("string longer than the message or the limit".into()))?;
        let text = std::str::from_utf8(&self.bytes[self.pos..self.pos + len])
            .map_err(|_| WireError("string is not UTF-8".into()))?;
        self.pos += len;
        Ok((text, start))
    }
}

fn write_var_uint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn write_var_string(out: &mut Vec<u8>, text: &str) {
    write_var_uint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// A message for `address` starting with `body`.
fn addressed(address: &str, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(address.len() + 2 + body.len());
    write_var_string(&mut out, address);
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// A message for `address` of type `kind` carrying one string.
fn addressed_string(address: &str, kind: &[u8], text: &str) -> Bytes {
    let mut body = kind.to_vec();
    write_var_string(&mut body, text);
    addressed(address, &body)
}

fn y_message(message: Bytes) -> Result<ClientMessage, WireError> {
    decode_client_message(message).map_err(|e| WireError(e.to_string()))
}

impl WireProtocol for Hocuspocus {
    fn name(&self) -> &'static str {
        "hocuspocus"
    }

    fn decode(&mut self, message: Bytes) -> Result<Incoming, WireError> {
        if message[..] == [PONG] {
            return Ok(Incoming::Nothing);
        }
        let mut reader = Reader {
            bytes: &message,
            pos: 0,
        };
        let (address, _) = reader.var_string(MAX_ADDRESS_BYTES)?;
        let address: Arc<str> = Arc::from(address);
        let type_at = reader.pos;
        let kind = reader.var_uint()?;
        let message = match kind {
            // The y-protocols message starts at the type byte (the same tags).
            SYNC | AWARENESS | QUERY_AWARENESS => y_message(message.slice(type_at..))?,
            SYNC_REPLY => {
                let mut sync = vec![0u8];
                sync.extend_from_slice(&message[reader.pos..]);
                y_message(Bytes::from(sync))?
            }
            AUTH => {
                if reader.var_uint()? != AUTH_TOKEN {
                    return Err(WireError("clients send only Auth tokens".into()));
                }
                let (token, _) = reader.var_string(message.len())?;
                let name = address.split('\0').next().unwrap_or_default();
                return Ok(match DocName::new(name) {
                    Ok(doc) => Incoming::Open {
                        address,
                        doc,
                        token: Some(token.to_owned()),
                    },
                    Err(error) => Incoming::Refuse {
                        address,
                        reason: error.to_string(),
                    },
                });
            }
            STATELESS => {
                let (_, start) = reader.var_string(message.len())?;
                ClientMessage::Stateless(message.slice(start..reader.pos))
            }
            BROADCAST_STATELESS => {
                return Err(WireError(
                    "BroadcastStateless is server-internal; clients send Stateless".into(),
                ))
            }
            CLOSE => return Ok(Incoming::Close { address }),
            other => return Err(WireError(format!("unknown message type {other}"))),
        };
        Ok(Incoming::Message { address, message })
    }

    fn frame(&self, address: &str, message: Bytes) -> Option<Framed> {
        // The body is the document's frame (or its tail): shared, never copied per client.
        let (kind, body): (&[u8], Bytes) = match message.first() {
            Some(&MSG_DURABLE) => (&[SYNC_STATUS, 1], Bytes::new()),
            Some(&MSG_STATELESS) => (&[STATELESS as u8], message.slice(1..)),
            // The document refused a read-only session's update: y-protocols' permission
            // denied (`2 0 reason`) becomes Hocuspocus's (`2 1 reason`).
            Some(&MSG_AUTH) if message.len() >= 2 => {
                (&[AUTH as u8, AUTH_PERMISSION_DENIED], message.slice(2..))
            }
            _ => (&[], message),
        };
        Some(Framed {
            prefix: addressed(address, kind),
            body,
        })
    }

    fn session_ended(&self, address: &str, reason: &CloseReason) -> SessionEnd {
        match reason {
            CloseReason::Deleted => SessionEnd::Session(Some(addressed_string(
                address,
                &[CLOSE as u8],
                "the document was deleted",
            ))),
            _ => SessionEnd::Connection,
        }
    }

    fn opened(&self, address: &str, read_only: bool) -> Option<Bytes> {
        let scope = if read_only { "readonly" } else { "read-write" };
        Some(addressed_string(
            address,
            &[AUTH as u8, AUTH_AUTHENTICATED],
            scope,
        ))
    }

    fn denied(&self, address: &str, reason: &str) -> Option<Bytes> {
        Some(addressed_string(
            address,
            &[AUTH as u8, AUTH_PERMISSION_DENIED],
            reason,
        ))
    }

    fn durable_acks(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(address: &str, body: &[u8]) -> Bytes {
        addressed(address, body)
    }

    #[test]
    fn auth_opens_with_the_token_and_bad_names_are_refused() {
        let mut wire = Hocuspocus::new();
        let mut body = vec![2, 0];
        write_var_string(&mut body, "tok");
        write_var_string(&mut body, "4.8.0");
        match wire.decode(message("notes\0s1", &body)).unwrap() {
            Incoming::Open {
                address,
                doc,
                token,
            } => {
                assert_eq!(&*address, "notes\0s1");
                assert_eq!(doc.as_str(), "notes");
                assert_eq!(token.as_deref(), Some("tok"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            wire.decode(message("", &body)).unwrap(),
            Incoming::Refuse { .. }
        ));
    }

    #[test]
    fn sync_messages_are_y_protocols_after_the_address() {
        let mut wire = Hocuspocus::new();
        match wire.decode(message("d", &[0, 0, 1, 0])).unwrap() {
            Incoming::Message {
                message: ClientMessage::SyncStep1(sv),
                ..
            } => assert!(sv.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            wire.decode(message("d", &[3])).unwrap(),
            Incoming::Message {
                message: ClientMessage::QueryAwareness,
                ..
            }
        ));
        assert!(matches!(
            wire.decode(message("d", &[7])).unwrap(),
            Incoming::Close { .. }
        ));
        assert!(matches!(
            wire.decode(Bytes::from_static(&[10])).unwrap(),
            Incoming::Nothing
        ));
    }

    #[test]
    fn hostile_messages_are_errors_not_panics() {
        let mut wire = Hocuspocus::new();
        for bad in [
            &[][..],
            &[0xff, 0xff, 0xff][..],
            &[5, b'a'][..],
            &[1, b'd'][..],
            &[1, b'd', 6, 1, b'x'][..],
            &[1, b'd', 99][..],
            &[1, b'd', 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f][..],
            &[
                1, b'd', 5, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ][..],
            &[2, 0xc3, 0x28, 0][..],
        ] {
            assert!(wire.decode(Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }

    fn whole(framed: Option<Framed>) -> Vec<u8> {
        let framed = framed.unwrap();
        [&framed.prefix[..], &framed.body[..]].concat()
    }

    #[test]
    fn weft_notices_become_hocuspocus_messages() {
        let wire = Hocuspocus::new();
        let durable = whole(wire.frame("d", weft_crdt::protocol::encode_durable()));
        assert_eq!(&durable[..], &[1, b'd', 8, 1]);
        let denied = weft_crdt::protocol::encode_permission_denied("ro");
        assert_eq!(
            whole(wire.frame("d", denied)),
            &[1, b'd', 2, 1, 2, b'r', b'o']
        );
        let stateless = weft_crdt::protocol::encode_stateless(&[2, b'h', b'i']);
        assert_eq!(
            whole(wire.frame("d", stateless)),
            &[1, b'd', 5, 2, b'h', b'i']
        );
        let opened = wire.opened("d", true).unwrap();
        assert_eq!(&opened[..4], &[1, b'd', 2, 2]);
    }
}

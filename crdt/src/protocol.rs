//! The y-websocket wire protocol: decoding what a client sends and encoding what the server sends.
//!
//! This is a thin, strict layer over yrs's own `sync` codec. One WebSocket binary frame carries
//! exactly one message (the JS client decodes one per frame), so decoding takes a whole frame and
//! rejects trailing bytes. Every decode is guarded: nothing a client sends may panic the server.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::sync::awareness::AwarenessUpdate;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
use yrs::{StateVector, Update};

/// Tag of a sync message (`SyncStep1`, `SyncStep2`, `Update`).
pub const MSG_SYNC: u8 = 0;
/// Tag of an awareness message.
pub const MSG_AWARENESS: u8 = 1;
/// Tag of an auth message (server to client: permission denied).
pub const MSG_AUTH: u8 = 2;
/// Tag of a query-awareness message.
pub const MSG_QUERY_AWARENESS: u8 = 3;
/// Tag of Weft's own "your update is durable" notice to a session that asked for them
/// ([`crate::SessionInfo::durable_acks`]). Not a y-protocols message: the wire protocol turns
/// it into its own (Hocuspocus: SyncStatus) or drops it (y-websocket).
pub const MSG_DURABLE: u8 = 100;
/// Tag of Weft's own stateless message, relayed between sessions: the tag, then the payload
/// as a lib0 string. Not a y-protocols message (Hocuspocus: Stateless; y-websocket: dropped).
pub const MSG_STATELESS: u8 = 101;

/// A decoded, validated message from a client.
#[derive(Debug)]
pub enum ClientMessage {
    /// The client's state vector: answer with the updates it is missing (SyncStep2).
    SyncStep1(StateVector),
    /// Document content from the client (SyncStep2 or Update): both are applied the same way.
    Update(IncomingUpdate),
    /// The client's presence states. `frame` is the original frame, relayed as it is.
    Awareness {
        /// The decoded update, already checked to carry valid JSON states.
        update: AwarenessUpdate,
        /// The whole frame as received, relayed to the other clients without re-encoding.
        frame: Bytes,
    },
    /// The client asks for every awareness state.
    QueryAwareness,
    /// An auth message; clients have no business sending one and it is ignored.
    Auth,
    /// A stateless message for the document's other sessions: the payload, a lib0 string as
    /// the client encoded it (length prefix included). Wire protocols that carry them produce
    /// it; y-protocols has no such message.
    Stateless(Bytes),
}

/// A document update received from a client: the raw v1 bytes (stored and relayed) and the
/// decoded form (applied).
#[derive(Debug)]
pub struct IncomingUpdate {
    /// The update exactly as the client encoded it (lib0 v1).
    pub bytes: Bytes,
    /// The decoded update, ready to apply.
    pub update: Update,
    /// Whether it arrived as SyncStep2 (true) or as an incremental Update (false).
    pub is_sync_step2: bool,
}

/// Why a frame could not be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// The frame ended early or a length/varint was invalid.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message tag (or sync sub-tag) is not one the protocol defines.
    #[error("unknown message type {0}")]
    UnknownType(u64),
    /// Bytes were left over after one complete message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// An awareness state was not valid JSON.
    #[error("awareness state of client {0} is not valid JSON")]
    InvalidAwarenessJson(u64),
    /// The update bytes did not decode as a Yjs v1 update.
    #[error("invalid update: {0}")]
    InvalidUpdate(String),
    /// The decoder panicked: the input is hostile or triggers a yrs bug.
    #[error("message could not be decoded")]
    DecoderPanic,
}

/// Decodes one frame into a validated [`ClientMessage`].
pub fn decode_client_message(frame: Bytes) -> Result<ClientMessage, ProtocolError> {
    match catch_unwind(AssertUnwindSafe(|| decode_unguarded(&frame))) {
        Ok(Ok(Decoded::Awareness(update))) => Ok(ClientMessage::Awareness { update, frame }),
        Ok(Ok(Decoded::Other(message))) => Ok(message),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(ProtocolError::DecoderPanic),
    }
}

enum Decoded {
    Awareness(AwarenessUpdate),
    Other(ClientMessage),
}

fn malformed(error: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Malformed(error.to_string())
}

fn decode_unguarded(frame: &[u8]) -> Result<Decoded, ProtocolError> {
    let mut cursor = Cursor::new(frame);
    let tag: u64 = cursor.read_var().map_err(malformed)?;
    let decoded = match tag {
        0 => {
            let sub_tag: u64 = cursor.read_var().map_err(malformed)?;
            let payload = cursor.read_buf().map_err(malformed)?;
            match sub_tag {
                0 => {
                    check_entry_count(payload, MIN_STATE_VECTOR_ENTRY_BYTES, "state vector")?;
                    Decoded::Other(ClientMessage::SyncStep1(
                        StateVector::decode_v1(payload).map_err(malformed)?,
                    ))
                }
                1 | 2 => {
                    Decoded::Other(ClientMessage::Update(decode_update(payload, sub_tag == 1)?))
                }
                other => return Err(ProtocolError::UnknownType(other)),
            }
        }
        1 => {
            let payload = cursor.read_buf().map_err(malformed)?;
            Decoded::Awareness(decode_awareness(payload)?)
        }
        2 => {
            // `permission(varuint) [reason(varstring)]`: read and ignore.
            let permission: u64 = cursor.read_var().map_err(malformed)?;
            if permission == 0 {
                cursor.read_string().map_err(malformed)?;
            }
            Decoded::Other(ClientMessage::Auth)
        }
        3 => Decoded::Other(ClientMessage::QueryAwareness),
        other => return Err(ProtocolError::UnknownType(other)),
    };
    let left = frame.len() - cursor.next;
    if left > 0 {
        return Err(ProtocolError::TrailingBytes(left));
    }
    Ok(decoded)
}

/// Smallest encoding of one client's entry in a v1 update: struct count, client id, clock.
const MIN_UPDATE_ENTRY_BYTES: usize = 3;

fn decode_update(payload: &[u8], is_sync_step2: bool) -> Result<IncomingUpdate, ProtocolError> {
    Ok(IncomingUpdate {
        update: decode_update_checked(payload)?,
        bytes: Bytes::copy_from_slice(payload),
        is_sync_step2,
    })
}

/// Every decode of a client's update goes through here: its entry count is checked before yrs
/// reserves room for it.
fn decode_update_checked(payload: &[u8]) -> Result<Update, ProtocolError> {
    check_entry_count(payload, MIN_UPDATE_ENTRY_BYTES, "update")?;
    Update::decode_v1(payload).map_err(|e| ProtocolError::InvalidUpdate(e.to_string()))
}

/// Decodes a bare v1 update (not wrapped in a message), e.g. one posted to the HTTP API, with
/// the same checks as an update in a message.
pub fn decode_bare_update(bytes: Bytes) -> Result<IncomingUpdate, ProtocolError> {
    match catch_unwind(AssertUnwindSafe(|| decode_update_checked(&bytes))) {
        Ok(Ok(update)) => Ok(IncomingUpdate {
            bytes,
            update,
            is_sync_step2: false,
        }),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(ProtocolError::DecoderPanic),
    }
}

/// Smallest encoding of one awareness entry: client id, clock and an empty string, a byte each.
const MIN_AWARENESS_ENTRY_BYTES: usize = 3;
/// Smallest encoding of one state vector entry: client id and clock, a byte each.
const MIN_STATE_VECTOR_ENTRY_BYTES: usize = 2;

/// Entry counts are attacker-controlled and yrs reserves room for them up front (a 20-byte
/// frame could ask for gigabytes): refuse counts the payload cannot possibly hold.
fn check_entry_count(
    payload: &[u8],
    min_entry_bytes: usize,
    what: &str,
) -> Result<(), ProtocolError> {
    let mut cursor = Cursor::new(payload);
    let count: u64 = cursor.read_var().map_err(malformed)?;
    let room = (payload.len() - cursor.next) / min_entry_bytes;
    if count > room as u64 {
        return Err(ProtocolError::Malformed(format!(
            "{what} claims {count} entries in {} bytes",
            payload.len()
        )));
    }
    Ok(())
}

fn decode_awareness(payload: &[u8]) -> Result<AwarenessUpdate, ProtocolError> {
    check_entry_count(payload, MIN_AWARENESS_ENTRY_BYTES, "awareness update")?;
    let mut decoder = DecoderV1::from(payload);
    let update = AwarenessUpdate::decode(&mut decoder).map_err(malformed)?;
    for (client, entry) in &update.clients {
        if serde_json::from_str::<serde::de::IgnoredAny>(&entry.json).is_err() {
            return Err(ProtocolError::InvalidAwarenessJson(client.get()));
        }
    }
    Ok(update)
}

/// Encodes a `Sync/SyncStep1` message carrying `state_vector`.
pub fn encode_sync_step1(state_vector: &StateVector) -> Bytes {
    encode_message(&Message::Sync(SyncMessage::SyncStep1(state_vector.clone())))
}

/// Encodes a `Sync/SyncStep2` message around an already encoded v1 update.
pub fn encode_sync_step2(update: &[u8]) -> Bytes {
    encode_sync(1, update)
}

/// Encodes a `Sync/Update` message around an already encoded v1 update.
pub fn encode_update(update: &[u8]) -> Bytes {
    encode_sync(2, update)
}

fn encode_sync(sub_tag: u8, update: &[u8]) -> Bytes {
    let mut encoder = EncoderV1::new();
    encoder.write_var(MSG_SYNC);
    encoder.write_var(sub_tag);
    encoder.write_buf(update);
    Bytes::from(encoder.to_vec())
}

/// Encodes an awareness message carrying `update`.
pub fn encode_awareness(update: &AwarenessUpdate) -> Bytes {
    let mut encoder = EncoderV1::new();
    encoder.write_var(MSG_AWARENESS);
    encoder.write_buf(update.encode_v1());
    Bytes::from(encoder.to_vec())
}

/// Encodes the y-protocols auth "permission denied" message with a human-readable reason.
pub fn encode_permission_denied(reason: &str) -> Bytes {
    encode_message(&Message::Auth(Some(reason.to_owned())))
}

/// The [`MSG_DURABLE`] notice (shared, never allocated).
pub fn encode_durable() -> Bytes {
    Bytes::from_static(&[MSG_DURABLE])
}

/// A [`MSG_STATELESS`] frame around `payload` (a lib0 string, length prefix included).
pub fn encode_stateless(payload: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(payload.len() + 1);
    frame.push(MSG_STATELESS);
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

/// Encodes a query-awareness message.
pub fn encode_query_awareness() -> Bytes {
    encode_message(&Message::AwarenessQuery)
}

fn encode_message(message: &Message) -> Bytes {
    Bytes::from(message.encode_v1())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Doc, GetString, ReadTxn, Text, Transact};

    fn text_update(content: &str) -> Vec<u8> {
        let doc = Doc::new();
        let text = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, content);
        txn.encode_state_as_update_v1(&StateVector::default())
    }

    #[test]
    fn decodes_update_and_keeps_raw_bytes() {
        let raw = text_update("hello");
        let frame = encode_update(&raw);
        match decode_client_message(frame).unwrap() {
            ClientMessage::Update(incoming) => {
                assert_eq!(&incoming.bytes[..], &raw[..]);
                assert!(!incoming.is_sync_step2);
                let doc = Doc::new();
                let text = doc.get_or_insert_text("t");
                doc.transact_mut().apply_update(incoming.update).unwrap();
                assert_eq!(text.get_string(&doc.transact()), "hello");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn sync_step1_round_trips() {
        let doc = Doc::new();
        doc.get_or_insert_text("t")
            .insert(&mut doc.transact_mut(), 0, "x");
        let sv = doc.transact().state_vector();
        match decode_client_message(encode_sync_step1(&sv)).unwrap() {
            ClientMessage::SyncStep1(decoded) => assert_eq!(decoded, sv),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_truncated_and_trailing_and_unknown() {
        let frame = encode_update(&text_update("hello"));
        for cut in 0..frame.len() {
            assert!(
                decode_client_message(frame.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        let mut long = frame.to_vec();
        long.push(0);
        assert_eq!(
            decode_client_message(Bytes::from(long)).unwrap_err(),
            ProtocolError::TrailingBytes(1)
        );
        assert_eq!(
            decode_client_message(Bytes::from_static(&[9, 0])).unwrap_err(),
            ProtocolError::UnknownType(9)
        );
        assert_eq!(
            decode_client_message(Bytes::from_static(&[0, 7, 0])).unwrap_err(),
            ProtocolError::UnknownType(7)
        );
        // A varint that never ends.
        assert!(decode_client_message(Bytes::from_static(&[0xff; 12])).is_err());
        // A length that points past the frame.
        assert!(decode_client_message(Bytes::from_static(&[0, 2, 100, 1, 2])).is_err());
    }

    #[test]
    fn rejects_awareness_with_bad_json_or_huge_count() {
        // count=1, client=5, clock=1, json="{oops"
        let mut payload = vec![1, 5, 1, 5];
        payload.extend_from_slice(b"{oops");
        let mut frame = vec![1, payload.len() as u8];
        frame.extend_from_slice(&payload);
        assert_eq!(
            decode_client_message(Bytes::from(frame)).unwrap_err(),
            ProtocolError::InvalidAwarenessJson(5)
        );
        // count = 2^32 in a 6-byte payload.
        let frame = vec![1, 6, 0x80, 0x80, 0x80, 0x80, 0x10, 0];
        assert!(matches!(
            decode_client_message(Bytes::from(frame)).unwrap_err(),
            ProtocolError::Malformed(_)
        ));
    }

    /// Found by `cargo fuzz run decode_message`: a 20-byte SyncStep1 whose state vector claims
    /// ~2^31 entries made yrs reserve gigabytes.
    #[test]
    fn fuzz_regression_state_vector_allocation_bomb() {
        let frame = [
            0, 0, 10, 246, 218, 218, 218, 146, 8, 0, 0, 246, 0, 10, 246, 146, 0, 0, 0, 251,
        ];
        assert!(matches!(
            decode_client_message(Bytes::copy_from_slice(&frame)).unwrap_err(),
            ProtocolError::Malformed(_)
        ));
    }

    /// A 5-byte update claiming 2^28 clients made yrs reserve half a gigabyte before it was
    /// refused, through the HTTP path, which skipped the entry-count check.
    #[test]
    fn a_bare_update_goes_through_the_same_checks() {
        let body = Bytes::from_static(&[0x80, 0x80, 0x80, 0x80, 0x01]);
        assert!(matches!(
            decode_bare_update(body).unwrap_err(),
            ProtocolError::Malformed(_)
        ));
    }

    /// Found by `cargo fuzz run decode_message`: an update claiming ~2^45 clients.
    #[test]
    fn fuzz_regression_update_with_absurd_client_count() {
        let frame = [0, 2, 8, 255, 255, 255, 241, 255, 255, 41, 0, 10];
        assert!(decode_client_message(Bytes::copy_from_slice(&frame)).is_err());
    }

    #[test]
    fn accepts_valid_awareness_and_keeps_frame() {
        let mut payload = vec![1, 5, 1, 2];
        payload.extend_from_slice(b"{}");
        let mut frame = vec![1, payload.len() as u8];
        frame.extend_from_slice(&payload);
        let frame = Bytes::from(frame);
        match decode_client_message(frame.clone()).unwrap() {
            ClientMessage::Awareness {
                update,
                frame: kept,
            } => {
                assert_eq!(kept, frame);
                assert_eq!(update.clients.len(), 1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

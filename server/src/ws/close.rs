//! How a WebSocket connection ends: [`End`], the close code each reason maps to, and the one
//! log line every connection ends with.

use actix_http::ws::{CloseCode, CloseReason as WsCloseReason, Parser, ProtocolError};
use bytes::BytesMut;
use weft_crdt::{CloseReason, ConnId, DocError};

/// Longest close reason sent (it shares the control frame with the 2-byte code).
const MAX_CLOSE_REASON: usize = 120;

/// Why a connection ended: what is logged and which close frame (if any) is sent.
#[derive(Debug)]
pub(crate) enum End {
    /// The client sent a close frame.
    ClientClosed,
    /// The client's connection is gone (closed, reset or dropped by the dispatcher).
    ClientGone,
    /// The server closes with this code and reason.
    Closed(CloseCode, String),
}

impl End {
    /// The close a document asked for.
    pub fn from_doc(reason: CloseReason) -> End {
        match reason {
            CloseReason::BadMessage(why) => End::Closed(CloseCode::Invalid, why),
            CloseReason::Refused(why) => End::Closed(CloseCode::Policy, why),
            CloseReason::TooSlow => End::Closed(
                CloseCode::Again,
                "client too slow: outgoing queue full; reconnect to resync".into(),
            ),
            CloseReason::Unavailable(why) => End::Closed(CloseCode::Error, why),
            CloseReason::Deleted => End::Closed(CloseCode::Normal, "document deleted".into()),
            CloseReason::ShuttingDown => {
                End::Closed(CloseCode::Away, "server shutting down".into())
            }
        }
    }

    /// A document that could not be joined.
    pub fn join_failed(error: &DocError) -> End {
        let code = match error {
            DocError::ShuttingDown => CloseCode::Away,
            _ => CloseCode::Again,
        };
        End::Closed(code, format!("could not open document: {error}"))
    }

    /// The client's token expired.
    pub fn token_expired() -> End {
        End::Closed(
            CloseCode::Other(super::connection::CLOSE_TOKEN_EXPIRED),
            "token expired".into(),
        )
    }

    /// Whether the client sent something invalid (counted against its address).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, End::Closed(CloseCode::Invalid, _))
    }

    /// The server's budget for large messages in flight is spent (1013: try again later).
    pub fn busy() -> End {
        End::Closed(
            CloseCode::Again,
            "too many large messages in flight; try again shortly".into(),
        )
    }

    /// A message over the size limit.
    pub fn too_large(max: usize) -> End {
        End::Closed(CloseCode::Size, format!("message over {max} bytes"))
    }

    /// What the WebSocket codec refused.
    pub fn protocol_error(error: ProtocolError, max: usize) -> End {
        match error {
            ProtocolError::Overflow => End::too_large(max),
            error => End::Closed(CloseCode::Protocol, error.to_string()),
        }
    }

    /// Writes this end's close frame (if any) into `buf`; a gone client gets nothing, and what
    /// was buffered for it is dropped.
    pub fn write_close(&self, buf: &mut BytesMut) {
        match self {
            End::Closed(code, why) => Parser::write_close(
                buf,
                Some(WsCloseReason {
                    code: *code,
                    description: Some(cut(why, MAX_CLOSE_REASON).to_string()),
                }),
                false,
            ),
            End::ClientClosed => Parser::write_close(buf, None, false),
            End::ClientGone => buf.clear(),
        }
    }

    /// The one log line of a connection's end.
    pub fn log(&self, conn: ConnId, docs: &str) {
        // A reason may quote what the client sent.
        let why = |why: &str| crate::telemetry::escape(why).into_owned();
        match self {
            End::ClientClosed | End::ClientGone => {
                tracing::info!(doc = %docs, %conn, reason = ?self, "client disconnected")
            }
            End::Closed(code, reason) => {
                let code_num: u16 = (*code).into();
                let reason = why(reason);
                if matches!(code, CloseCode::Normal | CloseCode::Away) {
                    tracing::info!(doc = %docs, %conn, code = code_num, %reason, "client disconnected");
                } else {
                    tracing::warn!(doc = %docs, %conn, code = code_num, %reason, "connection closed by server");
                }
            }
        }
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

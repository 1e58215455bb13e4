//! Speaking a server's framing: one WebSocket connection to one document ([`Conn`]), with
//! y-websocket's bare y-protocols messages or Hocuspocus's (every message prefixed with the
//! document name, an Auth handshake first, sync replies as type 4).

use std::time::Duration;

use clap::ValueEnum;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use weft_crdt::protocol;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::StateVector;

/// The framing a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// y-websocket: one document per connection, named by the URL; bare y-protocols messages.
    YWebsocket,
    /// Hocuspocus: every message prefixed with the document name; Auth message first.
    Hocuspocus,
}

/// Hocuspocus's Auth message type and its sub-types.
const HOCUSPOCUS_AUTH: u8 = 2;
const HOCUSPOCUS_AUTH_TOKEN: u8 = 0;
const HOCUSPOCUS_AUTHENTICATED: u8 = 2;
/// Hocuspocus's reply to a SyncStep1 (carries sync messages like type 0).
const HOCUSPOCUS_SYNC_REPLY: u8 = 4;

/// A client WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One connection to one document, speaking the server's framing.
pub struct Conn {
    pub ws: Ws,
    pub protocol: Protocol,
    /// The document name, lib0-encoded: Hocuspocus prefixes every message with it.
    pub prefix: Vec<u8>,
}

impl Conn {
    /// Opens a WebSocket to `url` for document `doc` (with TCP_NODELAY, as browsers do) and, for
    /// Hocuspocus, authenticates. `read_buffer` is tungstenite's read buffer size.
    pub async fn open(
        url: &str,
        doc: &str,
        protocol: Protocol,
        read_buffer: usize,
    ) -> Result<Conn, String> {
        let config = WebSocketConfig::default().read_buffer_size(read_buffer);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        Conn::from_ws(ws, doc, protocol).await
    }

    /// Wraps an upgraded WebSocket to document `doc` and, for Hocuspocus, authenticates.
    pub async fn from_ws(ws: Ws, doc: &str, protocol: Protocol) -> Result<Conn, String> {
        let mut prefix = Vec::new();
        prefix.write_string(doc);
        authenticate(Conn {
            ws,
            protocol,
            prefix,
        })
        .await
    }

    /// Sends SyncStep1 with `state_vector`.
    pub async fn send_step1(&mut self, state_vector: &StateVector) -> Result<(), String> {
        let step1 = self.frame(&protocol::encode_sync_step1(state_vector));
        self.ws.send(step1).await.map_err(|e| e.to_string())
    }

    /// Frames a y-protocols message for the wire.
    pub fn frame(&self, message: &[u8]) -> Message {
        frame(self.protocol, &self.prefix, message)
    }
}

/// Frames a y-protocols message for the wire (Hocuspocus: after the name prefix).
pub fn frame(protocol: Protocol, prefix: &[u8], message: &[u8]) -> Message {
    match protocol {
        Protocol::YWebsocket => Message::Binary(message.to_vec().into()),
        Protocol::Hocuspocus => {
            let mut framed = Vec::with_capacity(prefix.len() + message.len());
            framed.extend_from_slice(prefix);
            framed.extend_from_slice(message);
            Message::Binary(framed.into())
        }
    }
}

/// The message type and body inside a received frame (Hocuspocus: after the name prefix, with
/// SyncReply read as Sync).
pub fn unframe(protocol: Protocol, frame: &[u8]) -> Option<(u8, &[u8])> {
    let message = match protocol {
        Protocol::YWebsocket => frame,
        Protocol::Hocuspocus => {
            let mut cursor = Cursor::new(frame);
            cursor.read_string().ok()?;
            &frame[cursor.next..]
        }
    };
    match *message.first()? {
        HOCUSPOCUS_SYNC_REPLY if protocol == Protocol::Hocuspocus => Some((0, &message[1..])),
        kind => Some((kind, &message[1..])),
    }
}

/// Hocuspocus: sends the Auth message (empty token) and waits until the server says
/// "authenticated". y-websocket needs nothing.
async fn authenticate(mut conn: Conn) -> Result<Conn, String> {
    if conn.protocol == Protocol::YWebsocket {
        return Ok(conn);
    }
    let mut auth = vec![HOCUSPOCUS_AUTH, HOCUSPOCUS_AUTH_TOKEN];
    auth.write_string("");
    let message = conn.frame(&auth);
    conn.ws.send(message).await.map_err(|e| e.to_string())?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), conn.ws.next())
            .await
            .map_err(|_| "no answer to the Auth message".to_string())?;
        match next {
            Some(Ok(Message::Binary(received))) => match unframe(conn.protocol, &received) {
                Some((HOCUSPOCUS_AUTH, [HOCUSPOCUS_AUTHENTICATED, ..])) => return Ok(conn),
                Some((HOCUSPOCUS_AUTH, _)) => return Err("permission denied".into()),
                _ => continue,
            },
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error.to_string()),
            None => return Err("closed during authentication".into()),
        }
    }
}

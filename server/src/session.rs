//! WebSocket sessions: the upgrade handler and the loop that serves one connection.
//!
//! Before the upgrade: the document name is validated (400), the token checked (401/403) and a
//! connection slot taken (503). A read-only token gives a session whose updates the document
//! refuses with a y-protocols "permission denied" message.
//!
//! A session decodes each incoming binary frame (one y-protocols message per frame) and hands it
//! to the document actor. What the actor queues for the connection does not pass through the
//! session: the response body ([`OutboundBody`]) writes it to the socket. The session never
//! touches the document itself. It ends, with a WebSocket close code and one log line, when the
//! client leaves or misbehaves, when the document drops it (too slow, deleted), when the client
//! stops answering pings, or when the server shuts down.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason as WsCloseReason, ProtocolError};
use tokio::sync::{mpsc, oneshot, watch};
use weft_crdt::protocol::decode_client_message;
use weft_crdt::{CloseReason, ConnId, DocHandle, DocName, Outbound};

use crate::auth::{self, Permission};
use crate::error::ApiError;
use crate::limits::{ConnectionPermit, RateLimiter};
use crate::outbound::{DocEnded, OutboundBody};
use crate::state::AppState;

/// `GET /<doc-name>` with `Upgrade: websocket`: validates the name, upgrades, starts a session.
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = req.path().trim_start_matches('/');
    let name = DocName::new(raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let access = auth::authorize(state.auth.as_ref(), &req, Some(&name), Permission::Read)?;
    let permit = state.limits.acquire(&name).inspect_err(|error| {
        tracing::warn!(doc = %name, reason = %error, "connection refused");
    })?;
    let (response, ws, stream) = actix_ws::handle(&req, body)?;
    // The document's frames go straight into the response body; actix-ws's own body stays
    // inside it for the session's control frames.
    let (outbound, queue) = mpsc::channel(state.config.outbound_queue);
    let (ended_tx, ended) = oneshot::channel();
    let (response, control) = response.into_parts();
    let response = response
        .set_body(OutboundBody::new(queue, control, ended_tx))
        .map_into_boxed_body();
    let conn = uuid::Uuid::new_v4();
    let max = state.config.max_message_bytes;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let client = Client {
        name,
        conn,
        peer,
        user: access.sub,
        can_write: access.permission == Permission::Write,
        _permit: permit,
    };
    let channels = Channels {
        outbound,
        ended,
        ws,
        stream,
    };
    actix_web::rt::spawn(run(state.into_inner(), client, channels));
    Ok(response)
}

/// Why a session ended: what is logged and which close frame (if any) is sent.
#[derive(Debug)]
enum End {
    ClientClosed,
    ClientGone,
    Closed(CloseCode, String),
}

impl End {
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

    fn slow() -> End {
        End::Closed(
            CloseCode::Again,
            "client too slow: outgoing queue full; reconnect to resync".into(),
        )
    }
}

/// Who is on the other end of a session.
struct Client {
    name: DocName,
    conn: ConnId,
    peer: String,
    user: String,
    can_write: bool,
    /// Holds this connection's slot under the connection limits until the session ends.
    _permit: ConnectionPermit,
}

/// A session's ends of the connection.
struct Channels {
    /// Where the document queues frames for this connection (read by [`OutboundBody`]).
    outbound: mpsc::Sender<Outbound>,
    /// Hears from [`OutboundBody`] if the document lets go of the connection.
    ended: oneshot::Receiver<DocEnded>,
    /// Control frames: pings, pongs, the close frame.
    ws: actix_ws::Session,
    /// What the client sends.
    stream: actix_ws::AggregatedMessageStream,
}

async fn run(state: std::sync::Arc<AppState>, client: Client, channels: Channels) {
    let (name, conn, peer) = (&client.name, client.conn, &client.peer);
    let Channels {
        outbound,
        mut ended,
        mut ws,
        mut stream,
    } = channels;
    let doc = match state
        .registry
        .join(name, conn, outbound, client.can_write)
        .await
    {
        Ok(doc) => doc,
        Err(error) => {
            tracing::warn!(doc = %name, %conn, %error, "could not open document");
            let _ = ws
                .close(Some(ws_close(CloseCode::Again, &error.to_string())))
                .await;
            return;
        }
    };
    tracing::info!(doc = %name, %conn, %peer, user = %client.user, read_only = !client.can_write,
        "client connected");
    let mut shutdown = state.shutdown.clone();
    let end = serve(
        &state,
        &doc,
        conn,
        &mut ws,
        &mut stream,
        &mut ended,
        &mut shutdown,
    )
    .await;
    doc.leave(conn).await;
    match &end {
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
    let close = match end {
        End::Closed(code, why) => Some(ws_close(code, &why)),
        End::ClientClosed => None,
        End::ClientGone => return,
    };
    let _ = ws.close(close).await;
}

/// A close frame; the reason is cut to what fits in a control frame.
fn ws_close(code: CloseCode, reason: &str) -> WsCloseReason {
    let mut cut = reason.len().min(120);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    WsCloseReason {
        code,
        description: Some(reason[..cut].to_string()),
    }
}

async fn serve(
    state: &AppState,
    doc: &DocHandle,
    conn: ConnId,
    ws: &mut actix_ws::Session,
    stream: &mut actix_ws::AggregatedMessageStream,
    ended: &mut oneshot::Receiver<DocEnded>,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let mut last_heard = Instant::now();
    let mut rate = RateLimiter::new(state.config.max_messages_per_second);
    let bytes_in = metrics::counter!("weft_bytes_in_total");
    // The first ping is one period away. (Not `interval()` + an awaited first tick: that tick
    // waits for the timer wheel's next millisecond, which delayed every session's first message
    // by up to 1 ms — the client's SyncStep1, so every sync.)
    let period = state.config.ping_interval;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                return End::from_doc(CloseReason::ShuttingDown);
            }
            why = &mut *ended => {
                return match why {
                    Ok(DocEnded::Closed(reason)) => End::from_doc(reason),
                    // The document dropped this session: it could not keep up.
                    Ok(DocEnded::Dropped) => End::slow(),
                    // The response body is gone: so is the connection.
                    Err(_) => End::ClientGone,
                };
            }
            incoming = stream.recv() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(AggregatedMessage::Binary(frame))) => {
                        bytes_in.increment(frame.len() as u64);
                        if !rate.allow() {
                            return End::Closed(
                                CloseCode::Policy,
                                format!(
                                    "over {} messages per second",
                                    state.config.max_messages_per_second
                                ),
                            );
                        }
                        match decode_client_message(frame) {
                            Ok(message) => {
                                if !doc.message(conn, message).await {
                                    return End::from_doc(CloseReason::Unavailable(
                                        "document stopped".into(),
                                    ));
                                }
                            }
                            Err(error) => {
                                return End::Closed(CloseCode::Invalid, error.to_string());
                            }
                        }
                    }
                    Some(Ok(AggregatedMessage::Text(_))) => {
                        return End::Closed(
                            CloseCode::Unsupported,
                            "text frames are not part of the protocol".into(),
                        );
                    }
                    Some(Ok(AggregatedMessage::Ping(payload))) => {
                        if ws.pong(&payload).await.is_err() {
                            return End::ClientGone;
                        }
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => {}
                    Some(Ok(AggregatedMessage::Close(_))) => return End::ClientClosed,
                    Some(Err(ProtocolError::Overflow)) => {
                        return End::Closed(
                            CloseCode::Size,
                            format!("message over {} bytes", state.config.max_message_bytes),
                        );
                    }
                    Some(Err(error)) => {
                        return End::Closed(CloseCode::Protocol, error.to_string());
                    }
                    None => return End::ClientGone,
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > state.config.client_timeout {
                    return End::Closed(CloseCode::Away, "client timed out (no pong)".into());
                }
                if ws.ping(b"").await.is_err() {
                    return End::ClientGone;
                }
            }
        }
    }
}

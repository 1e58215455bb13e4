//! The WebSocket upgrade: everything checked before a connection is served.
//!
//! Before the upgrade: the document name is validated (400), the token checked (401/403) and a
//! connection slot taken (503). Then the session joins its document, and the 101 response's
//! body, a [`Connection`], serves the connection from there on. A read-only token gives a
//! session whose updates the document refuses with a y-protocols "permission denied" message.
//! A document that cannot be opened gets the upgrade and an immediate close frame (1013, or
//! 1001 while the server shuts down), which y-websocket clients answer by reconnecting later.

use actix_http::ws::CloseCode;
use actix_http::ResponseBuilder;
use actix_web::body::{BodyStream, MessageBody};
use actix_web::{web, HttpRequest, HttpResponse};
use tokio::sync::mpsc;
use weft_crdt::{DocError, DocName, SessionMailbox};

use crate::auth::{self, Permission};
use crate::connection::{close_frame, Connection, Peer};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /<doc-name>` with `Upgrade: websocket`: validates the name, joins the document and
/// upgrades; the response body serves the connection.
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = req.path().trim_start_matches('/');
    let name = DocName::new(raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let access = auth::authorize(state.auth.as_ref(), &req, Some(&name), Permission::Read)?;
    let mut handshake = actix_http::ws::handshake(req.head())
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    let permit = state.limits.acquire(&name).inspect_err(|error| {
        tracing::warn!(doc = %name, reason = %error, "connection refused");
    })?;
    let conn = uuid::Uuid::new_v4();
    let can_write = access.permission == Permission::Write;
    let (outbound, queue) = mpsc::channel(state.config.outbound_queue);
    let doc = match state.registry.join(&name, conn, outbound, can_write).await {
        Ok(doc) => doc,
        Err(error) => {
            tracing::warn!(doc = %name, %conn, %error, "could not open document");
            let code = match error {
                DocError::ShuttingDown => CloseCode::Away,
                _ => CloseCode::Again,
            };
            let close = close_frame(code, &error.to_string());
            let body = BodyStream::new(futures_util::stream::once(async move {
                Ok::<_, std::convert::Infallible>(close)
            }));
            return Ok(respond(&mut handshake, body));
        }
    };
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(doc = %name, %conn, %peer, user = %access.sub, read_only = !can_write,
        "client connected");
    let mailbox = SessionMailbox::new(&doc, conn);
    let connection = Connection::new(
        state.into_inner(),
        Peer { name, conn },
        mailbox,
        body.into_inner(),
        queue,
        permit,
    );
    Ok(respond(&mut handshake, connection))
}

/// The 101 response with `body` as the connection's frames.
fn respond(handshake: &mut ResponseBuilder, body: impl MessageBody + 'static) -> HttpResponse {
    HttpResponse::from(handshake.body(body).map_into_boxed_body())
}

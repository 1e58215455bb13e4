//! The WebSocket upgrade: everything checked before a connection is served.
//!
//! Before the upgrade: the document name is validated (400), the page's origin checked (403), the
//! token checked (401/403), a deleted document refused (410), and a connection slot taken (503
//! when the server or document is full, 429 when this address or user has its share or keeps
//! sending invalid messages). The 101 response's body, a [`Connection`], then joins the
//! document and serves the connection from there on; the client gets its 101 at once and sends
//! its SyncStep1 while the session joins. A read-only token gives a session whose updates the
//! document refuses with a y-protocols "permission denied" message. A document that cannot be
//! opened closes the connection right after the upgrade (1013, or 1001 while the server shuts
//! down), which y-websocket clients answer by reconnecting later.
//!
//! `/hocuspocus` is the Hocuspocus endpoint: the origin is checked and a connection slot taken
//! (total and per address) before its upgrade; each document on it is checked, and takes a slot
//! of its own, when the client's Auth opens it.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use weft_crdt::store::DocStatus;
use weft_crdt::DocName;

use super::connection::{Client, Connection};
use super::slot::{DocSlot, Joiner};
use crate::auth::{self, Permission};
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{Hocuspocus, YWebsocket};

/// `GET /<doc-name>` with `Upgrade: websocket`: validates the name, takes a connection slot and
/// upgrades; the response body joins the document and serves the connection (y-websocket).
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = req.path().trim_start_matches('/');
    if raw == HOCUSPOCUS_PATH {
        return upgrade_hocuspocus(req, body, state);
    }
    let name = DocName::new(raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state.origins.check(&req)?;
    let access = auth::authorize(state.auth.as_ref(), &req, Some(&name), Permission::Read)?;
    let mut handshake = actix_http::ws::handshake(req.head())
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    refuse_deleted(&state, &name).await?;
    let ip = req
        .peer_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let permit = state
        .limits
        .acquire(&name, ip, access.counted_user())
        .inspect_err(|error| {
            tracing::warn!(doc = %name, reason = %error, "connection refused");
        })?;
    let conn = uuid::Uuid::new_v4();
    let expires_at = access.expires_at();
    let state = state.into_inner();
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let joiner = Joiner {
        state: &state,
        conn,
        access: &access,
        peer: peer.clone(),
        durable_acks: false,
        check_deleted: false,
    };
    let slot = DocSlot::join(joiner, Arc::from(name.as_str()), name.clone(), permit);
    let connection = Connection::new(
        state,
        Client {
            conn,
            ip,
            peer,
            expires_at,
        },
        Box::new(YWebsocket::new(&name)),
        vec![slot],
        body.into_inner(),
    );
    Ok(HttpResponse::from(
        handshake.body(connection).map_into_boxed_body(),
    ))
}

/// The path Hocuspocus providers connect to (`ws://host/hocuspocus`); a y-websocket client
/// cannot open a document of this name.
pub const HOCUSPOCUS_PATH: &str = "hocuspocus";

/// `GET /hocuspocus` with `Upgrade: websocket`: a Hocuspocus connection. Only the page's origin
/// and the address's penalty are checked here; each document is opened (its token checked, a
/// connection slot taken) by the client's Auth message for it, inside the connection.
fn upgrade_hocuspocus(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.origins.check(&req)?;
    let ip = req
        .peer_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let mut handshake = actix_http::ws::handshake(req.head())
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    // Counted like any connection until its first document is open (then that document's
    // session is what counts).
    let socket_permit = state.limits.acquire_socket(ip).inspect_err(|error| {
        tracing::warn!(reason = %error, "hocuspocus connection refused");
    })?;
    let mut connection = Connection::new(
        state.into_inner(),
        Client {
            conn: uuid::Uuid::new_v4(),
            ip,
            peer: req.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
            expires_at: None,
        },
        Box::new(Hocuspocus::new()),
        Vec::new(),
        body.into_inner(),
    );
    connection.hold_socket_permit(socket_permit);
    Ok(HttpResponse::from(
        handshake.body(connection).map_into_boxed_body(),
    ))
}

/// 410 if the document was deleted (and not created again): a client that still holds it must
/// not write it back. A loaded document is not deleted; otherwise the store knows.
pub(crate) async fn refuse_deleted(state: &AppState, name: &DocName) -> Result<(), ApiError> {
    if state.registry.is_loaded(name) {
        return Ok(());
    }
    let status = state
        .registry
        .store()
        .status(name)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if status == DocStatus::Deleted {
        return Err(ApiError::Gone(format!(
            "document {name} was deleted; create it again (PUT /api/docs/{name}) to use it"
        )));
    }
    Ok(())
}

//! The HTTP document API under `/api`: list, create, delete, read and write documents without a
//! WebSocket. Every write goes through the document actor like a WebSocket update (stored, then
//! broadcast to connected clients). Errors are JSON `{ "error": "..." }` with a proper status.
//!
//! | method and path | needs | answer |
//! |---|---|---|
//! | `GET /api/docs` | read | `[{name, sizeBytes, updatedAt}]` (only documents the token covers) |
//! | `PUT /api/docs/{name}` | write | 201 (also for a deleted document: it comes back, empty), or 409 if it exists |
//! | `DELETE /api/docs/{name}` | write | 204 (clients are disconnected; it stays deleted), or 404 |
//! | `GET /api/docs/{name}/update` | read | the full state, a binary Yjs v1 update |
//! | `POST /api/docs/{name}/update` | write | 204 once stored and broadcast; 400 if not an update; 410 if deleted |
//! | `GET /api/docs/{name}/json` | read | the root types rendered as JSON |
//!
//! Writes from a web page of another origin are refused (403, see `origin`). A request's body is
//! read only once the request is authorised, at most `--max-message-bytes` of it, within
//! `--body-timeout`.

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Serialize;
use weft_crdt::store::DocStatus;
use yrs::types::ToJson;
use yrs::{
    Any, Array, ArrayRef, GetString, Map, MapRef, Out, ReadTxn, StateVector, TextRef, Transact,
    XmlFragmentRef,
};

use crate::auth::{self, Permission};
use crate::error::ApiError;
use crate::state::AppState;
use weft_crdt::DocName;

/// Registers the API routes on `/api`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .route("/docs", web::get().to(list))
            // Before the routes below: a name may contain `/`, and `{name:.*}/json` would
            // also match `<name>/versions/<id>/json`.
            .configure(crate::versions::routes)
            .route("/docs/{name:.*}/update", web::get().to(get_update))
            .route("/docs/{name:.*}/update", web::post().to(post_update))
            .route("/docs/{name:.*}/json", web::get().to(get_json))
            .route("/docs/{name:.*}", web::put().to(create))
            .route("/docs/{name:.*}", web::delete().to(delete)),
    );
}

/// Validates the document name of the path and checks the request may use it with `needed`
/// (a write also needs an allowed origin).
fn authorized_doc(
    req: &HttpRequest,
    path: &str,
    state: &AppState,
    needed: Permission,
) -> Result<DocName, ApiError> {
    authorized_access(req, path, state, needed).map(|(name, _)| name)
}

/// [`authorized_doc`], with who is asking.
pub(crate) fn authorized_access(
    req: &HttpRequest,
    path: &str,
    state: &AppState,
    needed: Permission,
) -> Result<(DocName, auth::Access), ApiError> {
    let name = DocName::new(path).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if needed == Permission::Write {
        state.origins.check(req)?;
    }
    let access = auth::authorize(state.auth.as_ref(), req, Some(&name), needed)?;
    Ok((name, access))
}

/// Reads a request's body (after it was authorised): at most `--max-message-bytes`, within
/// `--body-timeout`, and within the in-flight budget; with the budget it holds.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    state: &AppState,
) -> Result<(Bytes, crate::inflight::Reservation), ApiError> {
    let limit = state.config.max_message_bytes;
    let timeout = state.config.body_timeout;
    let too_large = || ApiError::TooLarge(format!("the body is over {limit} bytes"));
    let busy = || ApiError::Busy("too many large messages in flight; try again shortly".into());
    // Large bodies share one budget with large WebSocket messages (see `inflight`).
    let mut reservation = state.inflight.reservation();
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    if let Some(len) = declared {
        if !reservation.grow_to(len as usize) {
            return Err(busy());
        }
    }
    let held = &mut reservation;
    let read = async move {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadRequest(e.to_string()))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            if !held.grow_to(body.len() + chunk.len()) {
                return Err(busy());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    let body = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::Timeout("the body took too long to arrive".into()))??;
    Ok((body, reservation))
}

/// One entry of `GET /api/docs`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DocListing {
    name: String,
    size_bytes: u64,
    /// Milliseconds since the Unix epoch.
    updated_at: u64,
    /// Whether the document is in memory now.
    loaded: bool,
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let access = auth::authorize(state.auth.as_ref(), &req, None, Permission::Read)?;
    let docs = state
        .registry
        .store()
        .list()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let listing: Vec<DocListing> = docs
        .into_iter()
        .filter(|d| access.covers(&d.name))
        .map(|d| DocListing {
            loaded: DocName::new(&d.name).is_ok_and(|n| state.registry.is_loaded(&n)),
            name: d.name,
            size_bytes: d.size_bytes,
            updated_at: d.updated_at_ms,
        })
        .collect();
    Ok(HttpResponse::Ok().json(listing))
}

async fn create(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = authorized_doc(&req, &path, &state, Permission::Write)?;
    // A deleted document is created again (empty); a loaded one exists.
    let created = !state.registry.is_loaded(&name)
        && state
            .registry
            .store()
            .create(&name)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !created {
        return Err(ApiError::Conflict(format!(
            "document {name} already exists"
        )));
    }
    tracing::info!(doc = %name, "document created over HTTP");
    Ok(HttpResponse::Created().json(serde_json::json!({ "name": name.as_str() })))
}

async fn delete(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = authorized_doc(&req, &path, &state, Permission::Write)?;
    // Nothing to delete (and no tombstone to leave) unless it is stored or open somewhere here.
    let status = state
        .registry
        .store()
        .status(&name)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if status != DocStatus::Exists && !state.registry.is_loaded(&name) {
        return Err(ApiError::NotFound(format!("no document {name}")));
    }
    state.registry.delete(&name).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// 404 unless the document is stored or loaded, so reads never create documents.
pub(crate) async fn require_existing(state: &AppState, name: &DocName) -> Result<(), ApiError> {
    let exists = state.registry.is_loaded(name)
        || state
            .registry
            .store()
            .status(name)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            == DocStatus::Exists;
    if exists {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no document {name}")))
    }
}

async fn get_update(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = authorized_doc(&req, &path, &state, Permission::Read)?;
    require_existing(&state, &name).await?;
    let update = state
        .registry
        .read(&name, |doc| {
            doc.transact()
                .encode_state_as_update_v1(&StateVector::default())
        })
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(update))
}

async fn post_update(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (name, access) = authorized_access(&req, &path, &state, Permission::Write)?;
    let ip = req.peer_addr().map(|a| a.ip());
    if let Some(ip) = ip {
        state.limits.check_penalty(ip)?;
    }
    // The reservation is held until the update has been handed on.
    let (body, _reservation) = read_body(&req, payload, &state).await?;
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the body must be a binary Yjs update".into(),
        ));
    }
    match state
        .registry
        .apply_update(&name, body, access.author())
        .await
    {
        Ok(()) => Ok(HttpResponse::NoContent().finish()),
        Err(error @ weft_crdt::DocError::Refused(_)) => {
            // Counted against the address, as an invalid WebSocket message is.
            if let Some(ip) = ip {
                state.limits.penalize(ip);
            }
            Err(error.into())
        }
        Err(error) => Err(error.into()),
    }
}

async fn get_json(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = authorized_doc(&req, &path, &state, Permission::Read)?;
    require_existing(&state, &name).await?;
    let json = state.registry.read(&name, render_json).await?;
    Ok(HttpResponse::Ok().json(json))
}

/// Renders every root type: text as a string, map as an object, array as an array, XML as a
/// string. Root types arrive untyped from clients, so their kind is inferred from content.
pub fn render_json(doc: &yrs::Doc) -> serde_json::Value {
    let txn = doc.transact();
    let mut out = serde_json::Map::new();
    for (name, root) in txn.root_refs() {
        let value = match root {
            Out::UndefinedRef(branch) => {
                let map = MapRef::from(branch);
                if map.len(&txn) > 0 {
                    map.to_json(&txn)
                } else {
                    let array = ArrayRef::from(branch);
                    // A root whose string is as long as the root is a text (checked first:
                    // collecting a long text element by element cost 11 ms for a
                    // 100,000-character document).
                    let len = array.len(&txn) as usize;
                    let text = TextRef::from(branch).get_string(&txn);
                    let is_text = len > 0
                        && (text.len() == len
                            || text.encode_utf16().count() == len
                            || text.chars().count() == len);
                    let items: Vec<Out> = match is_text {
                        true => Vec::new(),
                        false => array.iter(&txn).collect(),
                    };
                    if is_text {
                        Any::from(text)
                    } else if items.is_empty() {
                        Any::Null
                    } else if items.iter().all(|v| matches!(v, Out::Any(Any::String(_)))) {
                        Any::from(TextRef::from(branch).get_string(&txn))
                    } else if items
                        .iter()
                        .any(|v| matches!(v, Out::YXmlElement(_) | Out::YXmlText(_)))
                    {
                        Any::from(XmlFragmentRef::from(branch).get_string(&txn))
                    } else {
                        array.to_json(&txn)
                    }
                }
            }
            typed => typed.to_json(&txn),
        };
        out.insert(
            name.to_string(),
            serde_json::to_value(&value).unwrap_or(serde_json::Value::Null),
        );
    }
    serde_json::Value::Object(out)
}

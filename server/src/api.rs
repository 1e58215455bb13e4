//! The HTTP document API under `/api`: list, create, delete, read and write documents without a
//! WebSocket. Every write goes through the document actor like a WebSocket update (stored, then
//! broadcast to connected clients). Errors are JSON `{ "error": "..." }` with a proper status.
//!
//! | method and path | needs | answer |
//! |---|---|---|
//! | `GET /api/docs` | read | `[{name, sizeBytes, updatedAt}]` (only documents the token covers) |
//! | `PUT /api/docs/{name}` | write | 201, or 409 if it exists |
//! | `DELETE /api/docs/{name}` | write | 204 (clients are disconnected), or 404 |
//! | `GET /api/docs/{name}/update` | read | the full state, a binary Yjs v1 update |
//! | `POST /api/docs/{name}/update` | write | 204 once stored and broadcast; 400 if not an update |
//! | `GET /api/docs/{name}/json` | read | the root types rendered as JSON |

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Serialize;
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
            .route("/docs/{name:.*}/update", web::get().to(get_update))
            .route("/docs/{name:.*}/update", web::post().to(post_update))
            .route("/docs/{name:.*}/json", web::get().to(get_json))
            .route("/docs/{name:.*}", web::put().to(create))
            .route("/docs/{name:.*}", web::delete().to(delete)),
    );
}

/// Validates the document name of the path and checks the request may use it with `needed`.
fn authorized_doc(
    req: &HttpRequest,
    path: &str,
    state: &AppState,
    needed: Permission,
) -> Result<DocName, ApiError> {
    let name = DocName::new(path).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    auth::authorize(state.auth.as_ref(), req, Some(&name), needed)?;
    Ok(name)
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
    if state.registry.delete(&name).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!("no document {name}")))
    }
}

/// 404 unless the document is stored or loaded, so reads never create documents.
async fn require_existing(state: &AppState, name: &DocName) -> Result<(), ApiError> {
    let exists = state.registry.is_loaded(name)
        || state
            .registry
            .store()
            .exists(name)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
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
    body: Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = authorized_doc(&req, &path, &state, Permission::Write)?;
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the body must be a binary Yjs update".into(),
        ));
    }
    state.registry.apply_update(&name, body).await?;
    Ok(HttpResponse::NoContent().finish())
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
                    let items: Vec<Out> = array.iter(&txn).collect();
                    if items.is_empty() {
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

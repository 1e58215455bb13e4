//! The version-history part of the HTTP API (see README "History"):
//!
//! | method and path | needs | answer |
//! |---|---|---|
//! | `GET /api/docs/{name}/versions` | read | `[{id, at, label, authors, sizeBytes}]`, newest first; header `X-Weft-Permission: read\|write` |
//! | `POST /api/docs/{name}/versions` `{"label"}` | write | 201, the named version (kept whatever the retention) |
//! | `GET /api/docs/{name}/versions/{id}/update` | read | the state at that version, one binary Yjs v1 update |
//! | `GET /api/docs/{name}/versions/{id}/json` | read | that state rendered like `/json` |
//! | `GET /api/docs/{name}/versions/{id}/changes?since={id}` | read | each text's runs kept, inserted, deleted, with author and time |
//! | `POST /api/docs/{name}/restore` `{"version"}` | write | 200 `{restored, before}` once every client has the restored content |
//!
//! With history off (`--history-retention 0s`) every one answers 404. Versions are read from the
//! store, never from the live document, so reading history does not hold editing up; the CPU
//! work (merging a chain, comparing two versions, computing a restore) runs on the blocking
//! pool.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use weft_crdt::history::{self, HistoryError, VersionMeta};
use weft_crdt::store::VersionSeq;
use weft_crdt::DocName;
use yrs::{ReadTxn, StateVector, Transact};

use crate::api::{authorized_access, read_body, render_json, require_existing};
use crate::auth::Permission;
use crate::error::ApiError;
use crate::state::AppState;

/// The longest label a named version may have, in characters.
const MAX_LABEL_CHARS: usize = 200;

/// History requests doing CPU work at once (the others wait, up to [`HISTORY_WAIT`]).
pub const HISTORY_WORKERS: usize = 2;

/// How long a history request waits for its turn before it is told to retry (503).
const HISTORY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A turn at history CPU work.
async fn turn(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let permit = state.history_work.clone().acquire_owned();
    match tokio::time::timeout(HISTORY_WAIT, permit).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(ApiError::Busy(
            "too many version-history requests at once; try again shortly".into(),
        )),
    }
}

/// Registers the routes (inside the `/api` scope, before the document routes).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/docs/{name:.*}/versions", web::get().to(list))
        .route("/docs/{name:.*}/versions", web::post().to(name_version))
        .route(
            "/docs/{name:.*}/versions/{id:[0-9]+}/update",
            web::get().to(version_update),
        )
        .route(
            "/docs/{name:.*}/versions/{id:[0-9]+}/json",
            web::get().to(version_json),
        )
        .route(
            "/docs/{name:.*}/versions/{id:[0-9]+}/changes",
            web::get().to(version_changes),
        )
        .route("/docs/{name:.*}/restore", web::post().to(restore));
}

/// One version, as the API lists it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VersionJson {
    id: String,
    /// Milliseconds since the Unix epoch.
    at: u64,
    label: Option<String>,
    authors: Vec<String>,
    size_bytes: u64,
}

impl From<&VersionMeta> for VersionJson {
    fn from(meta: &VersionMeta) -> Self {
        VersionJson {
            id: meta.seq.to_string(),
            at: meta.at,
            label: meta.label.clone(),
            authors: meta
                .authors
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            size_bytes: meta.size,
        }
    }
}

fn history_on(state: &AppState) -> Result<(), ApiError> {
    if state.config.history_retention.is_zero() {
        return Err(ApiError::NotFound(
            "version history is off (--history-retention 0s)".into(),
        ));
    }
    Ok(())
}

fn history_error(error: HistoryError) -> ApiError {
    match error {
        HistoryError::NotFound => ApiError::NotFound("no such version".into()),
        HistoryError::Store(error) => ApiError::Unavailable(error.to_string()),
        HistoryError::Unreadable(why) => ApiError::Internal(why),
    }
}

/// Checks access, that history is on and that the document exists.
async fn open(
    req: &HttpRequest,
    path: &str,
    state: &AppState,
    needed: Permission,
) -> Result<(DocName, crate::auth::Access), ApiError> {
    let (name, access) = authorized_access(req, path, state, needed)?;
    history_on(state)?;
    require_existing(state, &name).await?;
    Ok((name, access))
}

async fn list(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (name, access) = open(&req, &path, &state, Permission::Read).await?;
    let metas = history::list(state.registry.store().as_ref(), &name)
        .await
        .map_err(history_error)?;
    let listing: Vec<VersionJson> = metas.iter().rev().map(VersionJson::from).collect();
    let permission = match access.permission {
        Permission::Write => "write",
        Permission::Read => "read",
    };
    Ok(HttpResponse::Ok()
        .insert_header(("X-Weft-Permission", permission))
        .json(listing))
}

/// A request's JSON body (read within the API's limits), with the in-flight budget it holds;
/// `shape` names what was expected in the refusal.
async fn json_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    shape: &str,
) -> Result<(T, crate::inflight::Reservation), ApiError> {
    let (body, reservation) = read_body(req, payload, state).await?;
    let request = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {shape}: {e}")))?;
    Ok((request, reservation))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameRequest {
    label: String,
}

async fn name_version(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (name, _) = open(&req, &path, &state, Permission::Write).await?;
    let (request, _reservation): (NameRequest, _) =
        json_body(&req, payload, &state, "{\"label\": \"...\"}").await?;
    let label = request.label.trim().to_string();
    if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
        return Err(ApiError::BadRequest(format!(
            "a label is 1 to {MAX_LABEL_CHARS} characters"
        )));
    }
    // No control characters (NUL, escapes, line breaks) and no bidirectional overrides, which
    // would make a label display as something else.
    let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if label.chars().any(|c| c.is_control() || bidi(c)) {
        return Err(ApiError::BadRequest(
            "a label may not hold control or bidirectional-override characters".into(),
        ));
    }
    let kept = state.registry.keep_version(&name, Some(label)).await?;
    let meta = kept.ok_or_else(|| ApiError::Internal("no version was kept".into()))?;
    Ok(HttpResponse::Created().json(VersionJson::from(&meta)))
}

/// A version id as the API writes them (`01` or `+1` name no version).
fn version_id(id: &str) -> Result<VersionSeq, ApiError> {
    id.parse::<VersionSeq>()
        .ok()
        .filter(|seq| seq.to_string() == id)
        .ok_or_else(|| ApiError::NotFound("no such version".into()))
}

/// Runs history work (store reads, then CPU work that grows with the document) on the blocking
/// pool, so a long one never holds up the HTTP and WebSocket workers.
async fn off_the_workers<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(work))
        .await
        .map_err(|_| ApiError::Internal("the work panicked".into()))?
}

/// The state at a version, read from the store (off the workers: merging a long chain is CPU
/// work).
async fn state_at(
    state: &AppState,
    name: &DocName,
    id: VersionSeq,
) -> Result<(VersionMeta, bytes::Bytes), ApiError> {
    let store = state.registry.store().clone();
    let name = name.clone();
    off_the_workers(async move {
        history::version_update(store.as_ref(), &name, id)
            .await
            .map_err(history_error)
    })
    .await
}

async fn version_update(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (path, id) = path.into_inner();
    let (name, _) = open(&req, &path, &state, Permission::Read).await?;
    let _turn = turn(&state).await?;
    let (_, update) = state_at(&state, &name, version_id(&id)?).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(update))
}

async fn version_json(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (path, id) = path.into_inner();
    let (name, _) = open(&req, &path, &state, Permission::Read).await?;
    let _turn = turn(&state).await?;
    let (_, update) = state_at(&state, &name, version_id(&id)?).await?;
    let json = blocking(move || {
        let doc = history::version_doc(&update, false).map_err(history_error)?;
        Ok(render_json(&doc))
    })
    .await?;
    Ok(HttpResponse::Ok().json(json))
}

async fn version_changes(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (path, id) = path.into_inner();
    let (name, _) = open(&req, &path, &state, Permission::Read).await?;
    let version = version_id(&id)?;
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("bad query: {e}")))?;
    let mut since_values = query.iter().filter(|(key, _)| key == "since");
    let since = since_values.next().map(|(_, value)| value.as_str());
    if since_values.next().is_some() {
        return Err(ApiError::BadRequest("since given more than once".into()));
    }
    let since = match since {
        None | Some("") => None,
        Some(since) => Some(version_id(since).map_err(|_| {
            ApiError::BadRequest("since must be the id of an older version".into())
        })?),
    };
    if since.is_some_and(|since| since >= version) {
        return Err(ApiError::BadRequest(
            "since must be the id of an older version".into(),
        ));
    }
    let _turn = turn(&state).await?;
    let store = state.registry.store().clone();
    let changes = off_the_workers(async move {
        history::changes::changes(store.as_ref(), &name, version, since)
            .await
            .map_err(history_error)
    })
    .await?;
    Ok(HttpResponse::Ok().json(changes))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreRequest {
    version: String,
}

#[derive(Serialize)]
struct Restored {
    restored: String,
    before: Option<String>,
}

async fn restore(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (name, access) = open(&req, &path, &state, Permission::Write).await?;
    let (request, _reservation): (RestoreRequest, _) =
        json_body(&req, payload, &state, "{\"version\": \"<id>\"}").await?;
    let version = version_id(&request.version)?;
    // One restore at a time: each keeps the state it replaces as its `before`, which a
    // concurrent restore would change under it.
    let _one = state.restoring.lock().await;
    let _turn = turn(&state).await?;
    let (_, target) = state_at(&state, &name, version).await?;
    // The state before the restore is kept (named, unless a version holds it already), so
    // the restore can be undone.
    let before = state
        .registry
        .ensure_version(&name, format!("Before restoring version {version}"))
        .await?;
    let (current, roots) = state
        .registry
        .read(&name, |doc| {
            let txn = doc.transact();
            let roots: Vec<String> = txn.root_refs().map(|(n, _)| n.to_string()).collect();
            (
                txn.encode_state_as_update_v1(&StateVector::default()),
                roots,
            )
        })
        .await?;
    let revert = blocking(move || {
        history::revert_update(&target, &current, &roots, yrs::block::ClientID::random())
            .map_err(history_error)
    })
    .await?;
    if let Some(revert) = revert {
        state
            .registry
            .apply_update(&name, revert, access.author())
            .await?;
    }
    tracing::info!(doc = %name, version, "version restored");
    Ok(HttpResponse::Ok().json(Restored {
        restored: version.to_string(),
        before: before.map(|m| m.seq.to_string()),
    }))
}

/// Runs CPU work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::Internal("the work panicked".into()))?
}

//! The browser editor, embedded in the binary from `web/dist` (built by `npm run build` in
//! `web/` and committed, so building Weft needs no Node).
//!
//! URLs: `/` (home), `/d/<name>` (the editor on document <name>), `/assets/<file>` (hashed,
//! immutable bundles). WebSocket upgrades never reach these handlers (see `startup`).

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{web, HttpResponse};
use rust_embed::RustEmbed;

use crate::error::ApiError;

#[derive(RustEmbed)]
#[folder = "../web/dist"]
struct Dist;

fn serve(path: &str, cache: CacheControl) -> Result<HttpResponse, ApiError> {
    let file =
        Dist::get(path).ok_or_else(|| ApiError::NotFound(format!("no such file: /{path}")))?;
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let content_type = match (mime.type_(), mime.subtype().as_str()) {
        (mime_guess::mime::TEXT, _) | (_, "javascript") => format!("{mime}; charset=utf-8"),
        _ => mime.to_string(),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header(cache)
        .insert_header((
            header::ETAG,
            format!("\"{}\"", hex(&file.metadata.sha256_hash()[..8])),
        ))
        .body(file.data.into_owned()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /` and `GET /d/<name>`: the single-page editor. Revalidated on every load so a new
/// release is picked up at once.
pub async fn index() -> Result<HttpResponse, ApiError> {
    serve("index.html", CacheControl(vec![CacheDirective::NoCache]))
}

/// `GET /assets/<file>`: content-hashed bundles, cached for a year.
pub async fn asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve(
        &format!("assets/{}", file.into_inner()),
        CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(31_536_000),
            CacheDirective::Extension("immutable".into(), None),
        ]),
    )
}

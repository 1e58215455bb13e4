//! Plain HTTP routes: health checks and the 404 fallback.

use actix_web::{web, HttpResponse};

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /readyz`: the store answers (checked at most once a second, see `readiness`) and the
/// server is not shutting down.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if *state.shutdown.borrow() {
        return HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "stopping" }));
    }
    match state.readiness.check(state.registry.store().as_ref()).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(error) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "store unavailable", "error": error })),
    }
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Anything no route matched.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

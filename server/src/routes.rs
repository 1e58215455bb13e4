//! Plain HTTP routes: health checks and the 404 fallback.

use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// How long a readiness answer is reused: `/readyz` is unauthenticated, and each check goes
/// through the store (a flush for sled), so a flood of probes must not become a flood of checks.
const READINESS_TTL: Duration = Duration::from_secs(1);

/// The last store check and when it was made. Probes arriving together wait for one check.
#[derive(Default)]
pub struct Readiness(tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>);

/// `GET /readyz`: the store answers and the server is not shutting down.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if *state.shutdown.borrow() {
        return HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "stopping" }));
    }
    let checked = {
        let mut last = state.readiness.0.lock().await;
        match last.as_ref() {
            Some((at, result)) if at.elapsed() < READINESS_TTL => result.clone(),
            _ => {
                metrics::counter!("weft_readiness_checks_total").increment(1);
                let result = state
                    .registry
                    .store()
                    .check()
                    .await
                    .map_err(|e| e.to_string());
                *last = Some((Instant::now(), result.clone()));
                result
            }
        }
    };
    match checked {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(error) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "store unavailable", "error": error })),
    }
}

/// Anything no route matched.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

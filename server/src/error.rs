//! HTTP errors: one enum mapped to a status code and a JSON body `{ "error": "..." }`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use weft_crdt::DocError;

/// An error answered to an HTTP request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or bad ones (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that do not allow this (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such thing (404).
    #[error("{0}")]
    NotFound(String),
    /// The request took too long to send its body (408).
    #[error("{0}")]
    Timeout(String),
    /// It already exists (409).
    #[error("{0}")]
    Conflict(String),
    /// It was deleted (410).
    #[error("{0}")]
    Gone(String),
    /// The body is over a limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// Too many requests or connections (429).
    #[error("{0}")]
    TooMany(String),
    /// The server cannot serve this now (503).
    #[error("{0}")]
    Unavailable(String),
    /// The server is too busy for this now; try again shortly (503 with `Retry-After`).
    #[error("{0}")]
    Busy(String),
    /// Something failed inside the server (500).
    #[error("{0}")]
    Internal(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::Busy(_) = self {
            response.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
        }
        response.json(serde_json::json!({ "error": self.to_string() }))
    }
}

impl From<actix_web::Error> for ApiError {
    fn from(error: actix_web::Error) -> Self {
        ApiError::BadRequest(error.to_string())
    }
}

impl From<DocError> for ApiError {
    fn from(error: DocError) -> Self {
        match error {
            DocError::Refused(why) => ApiError::BadRequest(why),
            DocError::Conflict(why) => ApiError::Conflict(why),
            DocError::ShuttingDown => ApiError::Unavailable(error.to_string()),
            DocError::Unavailable(_) | DocError::Unloaded => {
                ApiError::Unavailable(error.to_string())
            }
            DocError::Deleted => {
                ApiError::Gone("the document was deleted; create it again (PUT) to use it".into())
            }
            DocError::Store(e) => ApiError::Internal(e.to_string()),
        }
    }
}

//! Small helpers every part of the PostgreSQL store uses.

use std::time::{SystemTime, UNIX_EPOCH};

use weft_crdt::store::StoreError;

/// A PostgreSQL (or pool) error as the store contract names it: the database could not be
/// used right now. The causes are spelled out (tokio-postgres says only "db error" itself).
pub(crate) fn postgres_error(error: impl std::error::Error) -> StoreError {
    let mut text = format!("postgres: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    StoreError::Unavailable(text)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

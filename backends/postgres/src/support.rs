//! Small helpers every part of the PostgreSQL store uses.

use std::time::{SystemTime, UNIX_EPOCH};

use weft_crdt::store::StoreError;

/// A PostgreSQL (or pool) error as the store contract names it: the database could not be
/// used right now.
pub(crate) fn postgres_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("postgres: {error}"))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

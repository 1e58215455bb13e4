//! What a document operation can end with.

use crate::store::StoreError;

/// Errors a document operation can end with.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// The actor was unloading; the registry retries with a fresh actor.
    #[error("document is unloading")]
    Unloaded,
    /// The store failed.
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    /// The document is unavailable (failed to load, or stopped after an error).
    #[error("document unavailable: {0}")]
    Unavailable(String),
    /// The update was rejected (malformed, or over a limit).
    #[error("update refused: {0}")]
    Refused(String),
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The request conflicts with the document's state (e.g. a version already names it).
    #[error("{0}")]
    Conflict(String),
    /// The document was deleted (and not created again since).
    #[error("document was deleted")]
    Deleted,
}

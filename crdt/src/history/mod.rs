//! Version history: what a document looked like at each kept version, who changed what between
//! two versions, and the edit that brings an old version back.
//!
//! Each version is stored (see [`crate::store::DocStore::add_version`]) as a small [`VersionMeta`]
//! (time, label, authors, the state vector) and a [`VersionData`]: what changed since the
//! version before it, as parts (lib0 v2 updates): the blocks added, as the live document holds
//! them (squashed), credited through their client ids, and each author's deletions (a version
//! written when that was not possible holds each author's updates merged). Reading version *n*
//! merges the chain from
//! the nearest earlier *full* version (one that also holds the whole state) up to *n*: the
//! first version of a document is full by construction (its updates start from nothing), and
//! retention, when it drops the versions older than `--history-retention`, rewrites the oldest
//! version it keeps (and every named version it passes) as full. The live document is never
//! involved: history costs the store bytes, not memory, and reading it never stops editing.
//!
//! The actor part that keeps versions is `actor/history.rs`.
//!
//! # Layout
//! - [`record`]: [`VersionMeta`] and [`VersionData`], and how they are encoded.
//! - [`read`]: listing versions and rebuilding one (as an update, or a `yrs::Doc`).
//! - [`changes`]: what changed in each text between two versions, run by run, with author
//!   and time.
//! - [`revert`]: the edit that makes a document's content equal to a version's again.

pub mod changes;
pub mod read;
pub mod record;
pub mod revert;

use std::sync::Arc;
use std::time::Duration;

pub use changes::{Change, ChangeKind, Changes};
pub use read::{list, version_doc, version_update, HistoryError};
pub use record::{Part, VersionData, VersionMeta};
pub use revert::revert_update;

/// The author recorded for updates whose author is not known (written before a crash, in the
/// interval that no version covered yet, or merged from several authors on another node).
pub const UNKNOWN_AUTHOR: &str = "";

/// Who sent an update (`verified`: an authenticated subject, bound to the client ids it
/// writes under).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// The token's subject, or a name the client chose when auth is off.
    pub name: Arc<str>,
    /// Whether `name` was authenticated.
    pub verified: bool,
}

impl Author {
    /// An author nobody authenticated.
    pub fn named(name: &str) -> Self {
        Author {
            name: Arc::from(name),
            verified: false,
        }
    }
}

/// How versions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// While a document changes, a version is kept at least this often.
    pub interval: Duration,
    /// Unnamed versions older than this are dropped; zero turns history off.
    pub retention: Duration,
}

impl HistoryConfig {
    /// History off.
    pub const OFF: HistoryConfig = HistoryConfig {
        interval: Duration::from_secs(60),
        retention: Duration::ZERO,
    };

    /// Whether versions are kept at all.
    pub fn enabled(&self) -> bool {
        !self.retention.is_zero()
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            interval: Duration::from_secs(60),
            retention: Duration::from_secs(30 * 86_400),
        }
    }
}

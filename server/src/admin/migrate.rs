//! `weft migrate`: copies every document from one store to another (sled to PostgreSQL or
//! back), each one verified by reading it back from the destination, with its version
//! history, and every deletion
//! (tombstone), so that nothing deleted in the source comes back in the destination.

use weft_crdt::recovery::Damage;
use weft_crdt::{DocName, DocStore};

use super::copy::{self, CopyError, Deletion};

/// What a migration did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Documents copied and verified.
    pub copied: usize,
    /// Versions copied and verified (all documents together).
    pub versions: usize,
    /// Documents whose damaged records were left out (copied without them).
    pub damaged: Vec<(String, Vec<Damage>)>,
    /// Deletions carried over (tombstones written).
    pub deleted: usize,
    /// Deleted in the source, but with content in the destination that `--merge` kept.
    pub kept: Vec<String>,
}

/// Copies every document of `from` into `to`. Without `merge`, nothing is written if any
/// document already has content in `to`; with it, such documents are merged (Yjs merges are
/// lossless). `progress` hears each document's name once it is verified.
pub async fn migrate(
    from: &dyn DocStore,
    to: &dyn DocStore,
    merge: bool,
    mut progress: impl FnMut(&str),
) -> Result<Report, CopyError> {
    let names: Vec<DocName> = from
        .list()
        .await?
        .into_iter()
        .filter_map(|info| match DocName::new(&info.name) {
            Ok(name) => Some(name),
            Err(error) => {
                tracing::warn!(doc = ?info.name, %error, "skipping a document with an invalid name");
                None
            }
        })
        .collect();
    let deletions = copy::tombstones(from).await?;
    if !merge {
        copy::refuse_existing(to, names.iter().chain(&deletions)).await?;
    }
    let mut report = Report::default();
    for name in names {
        let state = copy::read(from, &name).await?;
        copy::write(to, &name, &state).await?;
        report.versions += copy::copy_versions(from, to, &name).await?;
        if !state.damage.is_empty() {
            report.damaged.push((name.to_string(), state.damage));
        }
        report.copied += 1;
        progress(name.as_str());
    }
    for name in deletions {
        match copy::write_deletion(to, &name, merge).await? {
            Deletion::Deleted => report.deleted += 1,
            Deletion::Kept => report.kept.push(name.to_string()),
        }
    }
    Ok(report)
}

//! `weft export` / `weft import`: a store as a directory a backup tool can keep, and back.
//!
//! An export is a directory holding `docs/NNNNNN.yjs` (each document's whole state as one Yjs
//! v1 update, which any Yjs library can read: `Y.applyUpdate(doc, bytes)`) and `manifest.json`:
//!
//! ```json
//! {"format": "weft-export", "version": 1, "exportedAt": 1764000000000,
//!  "documents": [{"name": "team/plan", "file": "docs/000001.yjs", "bytes": 1234,
//!                 "sha256": "…", "empty": false}],
//!  "deleted": ["old/draft"]}
//! ```
//!
//! `deleted` names the store's deleted documents (tombstones), so that restoring an export
//! never brings a deleted document back (an export without it deletes nothing).
//!
//! Files are numbered rather than named after their documents: a document name may contain
//! `/` and `..`, which must never become a path. The manifest is written last, so an export that
//! stopped half way has none and cannot be imported by mistake. Import checks every file against
//! its checksum and that it decodes before it writes anything.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use weft_crdt::recovery::Damage;
use weft_crdt::store::StoreError;
use weft_crdt::{DocName, DocStore};

use super::copy::{self, CopyError, Deletion, DocState};

/// The manifest's `format`.
const FORMAT: &str = "weft-export";
/// The manifest's `version`.
const VERSION: u32 = 1;

/// `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always `weft-export`.
    pub format: String,
    /// Layout version (1).
    pub version: u32,
    /// When the export was made, in milliseconds since the Unix epoch.
    pub exported_at: u64,
    /// Every document.
    pub documents: Vec<Entry>,
    /// Every deleted document (tombstone).
    #[serde(default)]
    pub deleted: Vec<String>,
}

/// One document of an export.
#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    /// The document's name.
    pub name: String,
    /// Its file, relative to the export directory.
    pub file: String,
    /// The file's size.
    pub bytes: u64,
    /// The file's SHA-256, hex.
    pub sha256: String,
    /// Whether the document is empty (created, nothing written).
    #[serde(default)]
    pub empty: bool,
}

/// Why an export or import failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A store failed, or a document did not copy.
    #[error("{0}")]
    Copy(#[from] CopyError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The export directory is not a valid export (or not empty, for a new one).
    #[error("{0}")]
    Invalid(String),
}

impl From<StoreError> for ArchiveError {
    fn from(error: StoreError) -> Self {
        ArchiveError::Copy(CopyError::Store(error))
    }
}

/// What an export or import did.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Documents written and verified.
    pub documents: usize,
    /// Documents whose damaged records were left out.
    pub damaged: Vec<(String, Vec<Damage>)>,
    /// Deletions exported, or carried into the store.
    pub deleted: usize,
    /// Deleted in the export, but with content in the store that `--merge` kept.
    pub kept: Vec<String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes every document of `store` into `dir` (created; it must be empty if it exists).
pub async fn export(
    store: &dyn DocStore,
    dir: &Path,
    mut progress: impl FnMut(&str),
) -> Result<Report, ArchiveError> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io(dir))?;
        if entries.next().is_some() {
            return Err(ArchiveError::Invalid(format!(
                "{} is not empty: export into a new directory",
                dir.display()
            )));
        }
    }
    let docs_dir = dir.join("docs");
    std::fs::create_dir_all(&docs_dir).map_err(io(&docs_dir))?;
    let mut report = Report::default();
    let mut documents = Vec::new();
    for (i, info) in store.list().await?.into_iter().enumerate() {
        let Ok(name) = DocName::new(&info.name) else {
            tracing::warn!(doc = ?info.name, "skipping a document with an invalid name");
            continue;
        };
        let DocState {
            state,
            empty,
            damage,
        } = copy::read(store, &name).await?;
        let file = format!("docs/{:06}.yjs", i + 1);
        let path = dir.join(&file);
        std::fs::write(&path, &state).map_err(io(&path))?;
        // Read back what the disk holds, not what was meant to be written.
        let written = std::fs::read(&path).map_err(io(&path))?;
        if written != state {
            return Err(ArchiveError::Invalid(format!(
                "{file} did not read back as written"
            )));
        }
        documents.push(Entry {
            name: name.to_string(),
            file,
            bytes: state.len() as u64,
            sha256: sha256_hex(&state),
            empty,
        });
        if !damage.is_empty() {
            report.damaged.push((name.to_string(), damage));
        }
        report.documents += 1;
        progress(name.as_str());
    }
    let deleted: Vec<String> = copy::tombstones(store)
        .await?
        .into_iter()
        .map(|name| name.to_string())
        .collect();
    report.deleted = deleted.len();
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        exported_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        documents,
        deleted,
    };
    let path = dir.join("manifest.json");
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| ArchiveError::Invalid(format!("cannot encode the manifest: {e}")))?;
    std::fs::write(&path, json).map_err(io(&path))?;
    Ok(report)
}

/// What an export holds, checked: each document's name and state, and the deleted names.
struct Export {
    docs: Vec<(DocName, DocState)>,
    deleted: Vec<DocName>,
}

/// Reads and checks an export's manifest and files. Every name appears once (as a document or
/// as a deletion).
fn read_export(dir: &Path) -> Result<Export, ArchiveError> {
    let path = dir.join("manifest.json");
    let text = std::fs::read(&path).map_err(io(&path))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| ArchiveError::Invalid(format!("{}: {e}", path.display())))?;
    if manifest.format != FORMAT || manifest.version != VERSION {
        return Err(ArchiveError::Invalid(format!(
            "{} is not a weft export this build reads (format {:?}, version {})",
            path.display(),
            manifest.format,
            manifest.version
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut once = |name: &str| -> Result<DocName, ArchiveError> {
        let name =
            DocName::new(name).map_err(|e| ArchiveError::Invalid(format!("{name:?}: {e}")))?;
        if !seen.insert(name.to_string()) {
            return Err(ArchiveError::Invalid(format!(
                "{name} is named more than once in the manifest"
            )));
        }
        Ok(name)
    };
    let mut docs = Vec::with_capacity(manifest.documents.len());
    for entry in manifest.documents {
        let name = once(&entry.name)?;
        let file = PathBuf::from(&entry.file);
        // Only the files an export writes: never a path out of the directory.
        let plain = file.components().count() == 2
            && entry.file.starts_with("docs/")
            && !entry.file.contains("..");
        if !plain {
            return Err(ArchiveError::Invalid(format!(
                "{name}: unexpected file {:?}",
                entry.file
            )));
        }
        let path = dir.join(&file);
        let state = std::fs::read(&path).map_err(io(&path))?;
        if state.len() as u64 != entry.bytes || sha256_hex(&state) != entry.sha256 {
            return Err(ArchiveError::Invalid(format!(
                "{}: size or checksum does not match the manifest",
                entry.file
            )));
        }
        if !weft_crdt::recovery::covers(&state, &state) {
            return Err(ArchiveError::Invalid(format!(
                "{}: not a Yjs update",
                entry.file
            )));
        }
        docs.push((
            name,
            DocState {
                state,
                empty: entry.empty,
                damage: Vec::new(),
            },
        ));
    }
    let deleted = manifest
        .deleted
        .iter()
        .map(|name| once(name))
        .collect::<Result<_, _>>()?;
    Ok(Export { docs, deleted })
}

/// Writes every document of the export in `dir` into `store`, each verified, and its deletions.
/// Without `merge`, nothing is written if any document (or deleted name) already has content in
/// the store; with it, documents are merged and content under a deleted name is kept.
pub async fn import(
    store: &dyn DocStore,
    dir: &Path,
    merge: bool,
    mut progress: impl FnMut(&str),
) -> Result<Report, ArchiveError> {
    let Export { docs, deleted } = read_export(dir)?;
    if !merge {
        let names = docs.iter().map(|(name, _)| name).chain(&deleted);
        copy::refuse_existing(store, names).await?;
    }
    let mut report = Report::default();
    for (name, state) in docs {
        copy::write(store, &name, &state).await?;
        report.documents += 1;
        progress(name.as_str());
    }
    for name in deleted {
        match copy::write_deletion(store, &name, merge).await? {
            Deletion::Deleted => report.deleted += 1,
            Deletion::Kept => report.kept.push(name.to_string()),
        }
    }
    Ok(report)
}

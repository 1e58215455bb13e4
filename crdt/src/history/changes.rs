//! What changed between two versions, for an editor to render a coloured diff: for each root
//! `Y.Text`, the runs of its text in document order, each kept, inserted or deleted, with who
//! inserted or deleted it and in which version's interval.
//!
//! The two states are rebuilt in one document that keeps deleted content, with a snapshot of
//! each; yrs's snapshot diff marks every run as added or removed between them, and the parts of
//! the versions in between (blocks credited through their client ids' owners, deletions per
//! author) say whose edit it was.

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::Serialize;
use yrs::types::text::{ChangeKind as YChangeKind, YChange};
use yrs::updates::decoder::Decode;
use yrs::{Any, ClientID, IdSet, Out, ReadTxn, Text, TextRef, Transact, Update, ID};

use super::read::{self, apply_v2, chain, list, merge_chain, HistoryError};
use super::record::VersionMeta;
use super::UNKNOWN_AUTHOR;
use crate::name::DocName;
use crate::store::{DocStore, VersionSeq};

/// What happened to a run of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// In both versions.
    Keep,
    /// In the newer version only.
    Insert,
    /// In the older version only.
    Delete,
}

/// A run of text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What happened to it.
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    /// The text.
    pub text: String,
    /// Who inserted or deleted it (`None` for kept text, or when not known).
    pub author: Option<String>,
    /// When: the time of the version whose interval holds the edit (ms since the epoch).
    pub at: Option<u64>,
}

/// What changed between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// The newer version.
    #[serde(serialize_with = "as_string")]
    pub version: VersionSeq,
    /// The older version (`None`: from an empty document).
    #[serde(serialize_with = "opt_as_string")]
    pub since: Option<VersionSeq>,
    /// Runs of each root text, by root name.
    pub texts: BTreeMap<String, Vec<Change>>,
}

fn as_string<S: serde::Serializer>(seq: &VersionSeq, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&seq.to_string())
}

fn opt_as_string<S: serde::Serializer>(seq: &Option<VersionSeq>, s: S) -> Result<S::Ok, S::Error> {
    match seq {
        Some(seq) => s.serialize_str(&seq.to_string()),
        None => s.serialize_none(),
    }
}

/// Who made the edits of one part, and which.
struct Edits {
    author: String,
    at: u64,
    inserted: IdSet,
    deleted: IdSet,
}

/// What changed from version `since` (default: the one before `version`) to `version`.
/// `since` must be older than `version`.
pub async fn changes(
    store: &dyn DocStore,
    doc: &DocName,
    version: VersionSeq,
    since: Option<VersionSeq>,
) -> Result<Changes, HistoryError> {
    let metas = list(store, doc).await?;
    if !metas.iter().any(|m| m.seq == version) {
        return Err(HistoryError::NotFound);
    }
    let since = match since {
        Some(since) if since >= version || !metas.iter().any(|m| m.seq == since) => {
            return Err(HistoryError::NotFound)
        }
        Some(since) => Some(since),
        None => metas.iter().rfind(|m| m.seq < version).map(|m| m.seq),
    };
    let older = match since {
        Some(since) => Some(merge_chain(&chain(store, doc, &metas, since).await?)?),
        None => None,
    };
    let newer_chain = chain(store, doc, &metas, version).await?;
    let between = store
        .version_data(doc, since.map_or(0, |s| s + 1), version)
        .await?;
    let mut edits = Vec::new();
    for (seq, bytes) in between {
        let Some(meta) = metas.iter().find(|m| m.seq == seq) else {
            continue;
        };
        let data = super::VersionData::decode(&bytes)
            .map_err(|e| HistoryError::Unreadable(format!("version {seq}: {e}")))?;
        for part in data.parts {
            let Ok(update) = Update::decode_v2(&part.update) else {
                return Err(HistoryError::Unreadable(format!("version {seq}: bad part")));
            };
            edits.push(Edits {
                author: part.author,
                at: meta.at,
                inserted: update.insertions(true),
                deleted: update.delete_set().clone(),
            });
        }
    }
    let owners = owners(&metas);
    let newer = merge_chain(&newer_chain)?;
    let texts = catch_unwind(AssertUnwindSafe(|| {
        diff_texts(older.as_deref(), &newer, &edits, &owners)
    }))
    .map_err(|_| HistoryError::Unreadable("yrs panicked while comparing versions".into()))??;
    Ok(Changes {
        version,
        since,
        texts,
    })
}

/// Who wrote under each client id, from every version's meta.
fn owners(metas: &[VersionMeta]) -> HashMap<ClientID, String> {
    metas
        .iter()
        .flat_map(|m| m.clients.iter().cloned())
        .collect()
}

fn diff_texts(
    older: Option<&[u8]>,
    newer: &[u8],
    edits: &[Edits],
    owners: &HashMap<ClientID, String>,
) -> Result<BTreeMap<String, Vec<Change>>, HistoryError> {
    let doc = read::version_doc(yrs::Update::EMPTY_V1, true)?;
    if let Some(older) = older {
        apply_v2(&doc, older)?;
    }
    let lo = doc.transact().snapshot();
    apply_v2(&doc, newer)?;
    let hi = doc.transact().snapshot();
    let mut txn = doc.transact_mut();
    let roots: Vec<(String, Out)> = txn
        .root_refs()
        .map(|(name, out)| (name.to_string(), out))
        .collect();
    let mut texts = BTreeMap::new();
    for (name, out) in roots {
        let Some(text) = text_root(&out) else {
            continue;
        };
        let diff = text.diff_range(&mut txn, Some(&hi), Some(&lo), YChange::identity);
        let mut runs: Vec<Change> = Vec::new();
        let mut is_text = true;
        for chunk in diff {
            let Out::Any(Any::String(s)) = &chunk.insert else {
                is_text = false;
                break;
            };
            let change = describe(s, chunk.ychange.as_ref(), edits, owners);
            push_run(&mut runs, change);
        }
        if is_text && !runs.is_empty() {
            texts.insert(name, runs);
        }
    }
    Ok(texts)
}

/// The root as a text: a text, or a root no client has typed yet (a map's entries are not in
/// its text and an XML fragment's children are not strings: both come out empty or are skipped).
fn text_root(out: &Out) -> Option<TextRef> {
    match out {
        Out::YText(text) => Some(text.clone()),
        Out::UndefinedRef(branch) => Some(TextRef::from(*branch)),
        _ => None,
    }
}

fn describe(
    text: &str,
    change: Option<&YChange>,
    edits: &[Edits],
    owners: &HashMap<ClientID, String>,
) -> Change {
    let (kind, found) = match change {
        None => (ChangeKind::Keep, None),
        Some(YChange {
            kind: YChangeKind::Added,
            id,
        }) => (
            ChangeKind::Insert,
            edits.iter().find(|e| e.inserted.contains(id)),
        ),
        Some(YChange {
            kind: YChangeKind::Removed,
            id,
        }) => (
            ChangeKind::Delete,
            edits.iter().rev().find(|e| e.deleted.contains(id)),
        ),
    };
    let id: Option<&ID> = change.map(|c| &c.id);
    let author = match (kind, found) {
        (ChangeKind::Keep, _) => None,
        (_, Some(edit)) if edit.author != UNKNOWN_AUTHOR => Some(edit.author.clone()),
        // Inserted text is the writer of its client id's (deletions carry no client).
        (ChangeKind::Insert, _) => id.and_then(|id| owners.get(&id.client).cloned()),
        _ => None,
    };
    Change {
        kind,
        text: text.to_string(),
        author,
        at: found.map(|e| e.at),
    }
}

/// Appends a run, joining it to the previous one when nothing but the text differs.
fn push_run(runs: &mut Vec<Change>, change: Change) {
    if let Some(last) = runs.last_mut() {
        if last.kind == change.kind && last.author == change.author && last.at == change.at {
            last.text.push_str(&change.text);
            return;
        }
    }
    runs.push(change);
}

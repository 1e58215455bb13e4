//! The document's history, as this actor keeps it: [`Recorder`] collects every durable update
//! with its authors, keeps a version at least every `--history-interval` while the document
//! changes (and when asked: a named version, the last client leaving, unloading), drops
//! unnamed versions older than `--history-retention`, and knows which subject writes under
//! which Yjs client id (a subject may not write under another's).
//!
//! Only durable updates are recorded (after their batch's commit), so a version never holds
//! anything the store lost. What a crash loses is the attribution of the updates since the
//! last version: on load, whatever the document holds beyond its last version is recorded as
//! one update of unknown author (inserted text is still credited through its client id).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use yrs::{ClientID, StateVector, Update};

use super::durable::DurableDoc;
use crate::error::DocError;
use crate::history::read::list;
use crate::history::record::{sv_pairs, v1_to_v2};
use crate::history::{
    read, Author, HistoryConfig, HistoryError, Part, VersionData, VersionMeta, UNKNOWN_AUTHOR,
};
use crate::name::DocName;
use crate::store::{DocStore, VersionRecord, VersionSeq};

/// Recorded updates are merged per author once they hold this many bytes, so an interval of
/// heavy editing costs memory in proportion to its content, not its number of updates.
const MERGE_AT_BYTES: usize = 4 * 1024 * 1024;
/// ... or this many updates.
const MERGE_AT_UPDATES: usize = 4096;
/// A version is kept at once when the merged updates still hold this many bytes.
const CUT_AT_BYTES: usize = 32 * 1024 * 1024;
/// Attempts at keeping a version when other nodes take the numbers first.
const ATTEMPTS: usize = 5;
/// Most named versions a document keeps (retention never drops them, so a writer naming
/// versions in a loop must meet a bound).
pub const MAX_NAMED_VERSIONS: usize = 1000;

pub(super) struct Recorder {
    name: DocName,
    store: Arc<dyn DocStore>,
    config: HistoryConfig,
    /// Whether the stored history was read (after the document was installed).
    loaded: bool,
    /// The newest version this node knows of.
    last: Option<(VersionSeq, StateVector)>,
    /// Updates since `last`, each with its authors (several: merged on another node).
    updates: Vec<(Vec<Arc<str>>, Bytes)>,
    update_bytes: usize,
    /// When the first of `updates` was recorded.
    changed_at: Option<tokio::time::Instant>,
    /// Who writes under each client id.
    owners: HashMap<ClientID, Arc<str>>,
    /// Client ids first written since `last`.
    new_owners: BTreeMap<ClientID, Arc<str>>,
    /// When retention last ran.
    last_fold: Option<Instant>,
    /// A verified user claimed a client id since the last version: keep one at once, so the
    /// claim is durable (a crash would otherwise forget who owns the id, and another user
    /// could write under it and be credited with its text).
    claimed: bool,
    /// The recorded bytes at which they are merged next: twice what the last merge left, so
    /// content that does not shrink by merging is not merged again at every batch.
    merge_at: usize,
}

impl Recorder {
    pub fn new(name: DocName, store: Arc<dyn DocStore>, config: HistoryConfig) -> Self {
        Recorder {
            name,
            store,
            config,
            loaded: false,
            last: None,
            updates: Vec::new(),
            update_bytes: 0,
            changed_at: None,
            owners: HashMap::new(),
            new_owners: BTreeMap::new(),
            last_fold: None,
            claimed: false,
            merge_at: MERGE_AT_BYTES,
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }

    /// Reads the stored history once the document is installed: the newest version, who owns
    /// which client id, and what the document holds beyond that version (recorded with no
    /// known author: a crash lost who wrote it).
    pub async fn load(&mut self, doc: &DurableDoc) {
        if !self.enabled() || self.loaded {
            return;
        }
        let metas = match list(self.store.as_ref(), &self.name).await {
            Ok(metas) => metas,
            Err(error) => {
                tracing::warn!(doc = %self.name, %error, "cannot read the version history; retrying at the next version");
                return;
            }
        };
        self.loaded = true;
        for meta in &metas {
            for (client, owner) in &meta.clients {
                self.owners.insert(*client, Arc::from(owner.as_str()));
            }
        }
        let last_sv = metas.last().map(|m| m.state_vector()).unwrap_or_default();
        let last_deleted = metas.last().map_or(0, |m| m.deleted);
        self.last = metas.last().map(|m| (m.seq, last_sv.clone()));
        // Deletions only grow, so the same clocks and the same number of deleted elements mean
        // the same state.
        if doc.state_vector() != last_sv || doc.deleted_count() != last_deleted {
            let beyond = doc.encode_diff(&last_sv);
            self.record_one(Vec::new(), Bytes::from(beyond));
        }
    }

    /// Checks that `author` may write `update` (it must not add blocks under a client id
    /// another verified subject writes under) and binds the client ids it adds blocks under
    /// to `author`. `clock` gives the document's clock of a client.
    pub fn claim(
        &mut self,
        author: &Author,
        update: &Update,
        clock: impl Fn(&ClientID) -> u32,
    ) -> Result<(), String> {
        if !author.verified {
            return Ok(());
        }
        let mut claims = Vec::new();
        for (client, upper) in &upper_clocks(update) {
            match self.owners.get(client) {
                Some(owner) if *owner == author.name => {}
                Some(_) if *upper <= clock(client) => {}
                Some(_) => {
                    return Err(format!(
                        "update writes under client id {client}, which another user writes under"
                    ))
                }
                None if *upper > clock(client) => claims.push(*client),
                None => {}
            }
        }
        for client in claims {
            self.owners.insert(client, author.name.clone());
            self.new_owners.insert(client, author.name.clone());
            self.claimed = true;
        }
        Ok(())
    }

    /// Records durable updates with their authors.
    pub fn record(&mut self, written: Vec<(Vec<Arc<str>>, Bytes)>) {
        if !self.enabled() {
            return;
        }
        for (authors, update) in written {
            self.record_one(authors, update);
        }
        if self.update_bytes >= self.merge_at || self.updates.len() >= MERGE_AT_UPDATES {
            self.merge_per_author();
            self.merge_at = MERGE_AT_BYTES.max(self.update_bytes.saturating_mul(2));
        }
    }

    fn record_one(&mut self, authors: Vec<Arc<str>>, update: Bytes) {
        // Who first writes under a client id is credited with what is inserted under it
        // (a verified user also owns it: see `claim`).
        if let [author] = authors.as_slice() {
            if let Ok(decoded) = <Update as yrs::updates::decoder::Decode>::decode_v1(&update) {
                for (client, _) in upper_clocks(&decoded) {
                    if let std::collections::hash_map::Entry::Vacant(owner) =
                        self.owners.entry(client)
                    {
                        owner.insert(author.clone());
                        self.new_owners.insert(client, author.clone());
                    }
                }
            }
        }
        if self.changed_at.is_none() {
            self.changed_at = Some(tokio::time::Instant::now());
        }
        self.update_bytes += update.len();
        self.updates.push((authors, update));
    }

    /// Merges the recorded updates into one per author (the same content, fewer bytes).
    fn merge_per_author(&mut self) {
        let parts = self.parts();
        self.update_bytes = parts.iter().map(|p| p.update.len()).sum();
        self.updates = parts
            .into_iter()
            .map(|p| {
                let authors = match p.author.as_str() {
                    UNKNOWN_AUTHOR => Vec::new(),
                    name => vec![Arc::from(name)],
                };
                (authors, p.update)
            })
            .collect();
    }

    /// When the next automatic version is due (`None`: nothing changed since the last).
    pub fn due(&self) -> Option<tokio::time::Instant> {
        if !self.enabled() {
            return None;
        }
        let changed = self.changed_at?;
        if self.update_bytes >= CUT_AT_BYTES {
            return Some(changed);
        }
        Some(changed + self.config.interval)
    }

    /// Whether anything was recorded since the last version.
    pub fn has_changes(&self) -> bool {
        !self.updates.is_empty()
    }

    /// Whether a verified user claimed a client id since the last version (see `claimed`).
    pub fn has_new_claims(&self) -> bool {
        self.enabled() && self.claimed && self.has_changes()
    }

    /// The recorded updates as one merged update (lib0 v1) per author.
    fn parts(&self) -> Vec<Part> {
        let mut by_author: BTreeMap<&str, Vec<&Bytes>> = BTreeMap::new();
        for (authors, update) in &self.updates {
            let author = match authors.as_slice() {
                [one] => one.as_ref(),
                _ => UNKNOWN_AUTHOR,
            };
            by_author.entry(author).or_default().push(update);
        }
        let mut parts = Vec::new();
        for (author, updates) in by_author {
            match yrs::merge_updates_v1(updates.iter().map(|u| u.as_ref())) {
                Ok(merged) => parts.push(Part {
                    author: author.to_string(),
                    update: Bytes::from(merged),
                }),
                // Every update applied to the document, so this is not expected: keep them
                // as they are.
                Err(error) => {
                    tracing::warn!(doc = %self.name, %error, "could not merge recorded updates");
                    parts.extend(updates.into_iter().map(|u| Part {
                        author: author.to_string(),
                        update: u.clone(),
                    }));
                }
            }
        }
        parts
    }

    /// The recorded updates as the live document holds them: one update of the blocks added
    /// since the last version, squashed as the document squashed them (a run of typing is one
    /// block, not one per keystroke: rebuilding a version then integrates a few blocks instead
    /// of every keystroke), credited through its client ids' owners; and one update per author
    /// of what that author deleted. `None` if the document's encoding is not laid out as
    /// expected (the per-author merge then stands in).
    fn squashed_parts(&self, doc: &DurableDoc) -> Option<Vec<Part>> {
        let since = self
            .last
            .as_ref()
            .map(|(_, sv)| sv.clone())
            .unwrap_or_default();
        let diff = doc.encode_diff(&since);
        let deletes = doc.delete_set_v1();
        let blocks_len = diff.len().checked_sub(deletes.len())?;
        if !diff.ends_with(&deletes) {
            return None;
        }
        let mut blocks = diff[..blocks_len].to_vec();
        blocks.push(0); // An empty delete set.
        let mut parts = vec![Part {
            author: UNKNOWN_AUTHOR.to_string(),
            update: Bytes::from(blocks),
        }];
        let mut deleted: BTreeMap<&str, yrs::IdSet> = BTreeMap::new();
        for (authors, update) in &self.updates {
            let author = match authors.as_slice() {
                [one] => one.as_ref(),
                _ => UNKNOWN_AUTHOR,
            };
            let update = <Update as yrs::updates::decoder::Decode>::decode_v1(update).ok()?;
            if !update.delete_set().is_empty() {
                deleted
                    .entry(author)
                    .or_default()
                    .merge_with(update.delete_set().clone());
            }
        }
        for (author, set) in deleted {
            let mut update = vec![0]; // No blocks.
            update.extend_from_slice(&yrs::updates::encoder::Encode::encode_v1(&set));
            parts.push(Part {
                author: author.to_string(),
                update: Bytes::from(update),
            });
        }
        Some(parts)
    }

    /// Everyone whose edits were recorded since the last version.
    fn authors(&self) -> Vec<String> {
        let mut authors: BTreeSet<String> = self
            .updates
            .iter()
            .flat_map(|(authors, _)| authors.iter().map(|a| a.to_string()))
            .collect();
        // Updates without an author are credited to whoever owns the client ids they add to.
        for (names, update) in &self.updates {
            if !names.is_empty() {
                continue;
            }
            let Ok(update) = <Update as yrs::updates::decoder::Decode>::decode_v1(update) else {
                continue;
            };
            let since = self
                .last
                .as_ref()
                .map(|(_, sv)| sv.clone())
                .unwrap_or_default();
            for (client, upper) in &upper_clocks(&update) {
                if *upper > since.get(client) {
                    if let Some(owner) = self.owners.get(client) {
                        authors.insert(owner.to_string());
                    }
                }
            }
        }
        authors.into_iter().collect()
    }

    /// Keeps a version of the document now (named if `label`): what was recorded since the
    /// last one. Without changes, an unnamed version is not kept (`None`).
    pub async fn cut(
        &mut self,
        doc: &DurableDoc,
        label: Option<String>,
    ) -> Result<Option<VersionMeta>, DocError> {
        if !self.enabled() {
            return Err(DocError::Refused("version history is off".into()));
        }
        self.load(doc).await;
        if !self.loaded {
            return Err(DocError::Unavailable(
                "the version history cannot be read".into(),
            ));
        }
        if self.updates.is_empty() && label.is_none() {
            return Ok(None);
        }
        if let Some(label) = &label {
            if let Some(named) = self.name_only(label).await? {
                return Ok(Some(named));
            }
        }
        let mut parts = self.squashed_parts(doc).unwrap_or_else(|| self.parts());
        for part in &mut parts {
            part.update = v1_to_v2(&part.update)
                .map_err(|e| DocError::Unavailable(format!("cannot encode a version: {e}")))?;
        }
        let data = VersionData { state: None, parts }.encode();
        let sv = doc.state_vector();
        let mut meta = VersionMeta {
            seq: 0,
            at: now_ms(),
            label,
            authors: self.authors(),
            size: data.len() as u64,
            sv: sv_pairs(&sv),
            full: false,
            deleted: doc.deleted_count(),
            clients: self
                .new_owners
                .iter()
                .map(|(c, o)| (*c, o.to_string()))
                .collect(),
        };
        for _ in 0..ATTEMPTS {
            meta.seq = self.last.as_ref().map_or(1, |(seq, _)| seq + 1);
            let record = VersionRecord {
                seq: meta.seq,
                meta: meta.encode(),
                data: data.clone(),
            };
            if self.store.add_version(&self.name, record).await? {
                tracing::debug!(doc = %self.name, version = meta.seq, bytes = meta.size, "version kept");
                self.last = Some((meta.seq, sv));
                self.updates.clear();
                self.update_bytes = 0;
                self.changed_at = None;
                self.new_owners.clear();
                self.claimed = false;
                self.merge_at = MERGE_AT_BYTES;
                self.retain().await;
                return Ok(Some(meta));
            }
            // Another node kept a version under that number: go after its newest. What this
            // node recorded may overlap it; a version holding some updates twice is still
            // the same document.
            let metas = list(self.store.as_ref(), &self.name)
                .await
                .map_err(history_error)?;
            self.last = metas.last().map(|m| (m.seq, m.state_vector()));
        }
        Err(DocError::Unavailable(
            "other nodes keep taking the version numbers; try again".into(),
        ))
    }

    /// A version holding the document as it is now: the last one if nothing changed since,
    /// else a new one named `label` (what a restore keeps of the state it replaces).
    pub async fn ensure(
        &mut self,
        doc: &DurableDoc,
        label: Option<String>,
    ) -> Result<Option<VersionMeta>, DocError> {
        self.load(doc).await;
        if self.loaded && self.updates.is_empty() {
            if let Some((seq, _)) = &self.last {
                let seq = *seq;
                let metas = list(self.store.as_ref(), &self.name)
                    .await
                    .map_err(history_error)?;
                if metas.last().is_some_and(|m| m.seq == seq) {
                    return Ok(metas.into_iter().next_back());
                }
            }
        }
        self.cut(doc, label).await
    }

    /// Naming when nothing changed since the last version: that version gets the label (if it
    /// has none: `Some`), or the request conflicts. Also refuses a name beyond
    /// [`MAX_NAMED_VERSIONS`]. `None`: a new version is to be kept.
    async fn name_only(&mut self, label: &str) -> Result<Option<VersionMeta>, DocError> {
        let metas = list(self.store.as_ref(), &self.name)
            .await
            .map_err(history_error)?;
        if metas.iter().filter(|m| m.label.is_some()).count() >= MAX_NAMED_VERSIONS {
            return Err(DocError::Conflict(format!(
                "a document keeps at most {MAX_NAMED_VERSIONS} named versions"
            )));
        }
        let Some(last) = metas.last() else {
            return Ok(None);
        };
        let unchanged =
            self.updates.is_empty() && self.last.as_ref().is_some_and(|(seq, _)| *seq == last.seq);
        if !unchanged {
            return Ok(None);
        }
        if let Some(existing) = &last.label {
            return Err(DocError::Conflict(format!(
                "nothing changed since version {}, named {existing:?}",
                last.seq
            )));
        }
        let named = VersionMeta {
            label: Some(label.to_string()),
            ..last.clone()
        };
        let data = self
            .store
            .version_data(&self.name, last.seq, last.seq)
            .await?
            .into_iter()
            .next()
            .map(|(_, data)| data)
            .ok_or_else(|| DocError::Unavailable("the version changed meanwhile".into()))?;
        let record = VersionRecord {
            seq: named.seq,
            meta: named.encode(),
            data,
        };
        self.store
            .rewrite_versions(&self.name, &[], vec![record])
            .await?;
        Ok(Some(named))
    }

    /// Drops unnamed versions older than the retention, rewriting as full every version whose
    /// chain they started (see `history`). Runs at most every twentieth of the retention.
    async fn retain(&mut self) {
        let every = self.config.retention / 20;
        if self.last_fold.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.last_fold = Some(Instant::now());
        if let Err(error) = self.fold().await {
            tracing::warn!(doc = %self.name, %error, "could not drop old versions; will retry");
        }
    }

    async fn fold(&self) -> Result<(), HistoryError> {
        let store = self.store.as_ref();
        let metas = list(store, &self.name).await?;
        let cutoff = now_ms().saturating_sub(self.config.retention.as_millis() as u64);
        let newest = metas.last().map_or(0, |m| m.seq);
        let dropped = |m: &VersionMeta| m.at < cutoff && m.label.is_none() && m.seq != newest;
        let drop: Vec<VersionSeq> = metas.iter().filter(|m| dropped(m)).map(|m| m.seq).collect();
        if drop.is_empty() {
            return Ok(());
        }
        let mut put = Vec::new();
        for pair in metas.windows(2) {
            let (before, version) = (&pair[0], &pair[1]);
            if !dropped(before) || dropped(version) || version.full {
                continue;
            }
            let chain = read::chain(store, &self.name, &metas, version.seq).await?;
            let state = read::merge_chain(&chain)?;
            let Some((meta, data)) = chain.into_iter().last() else {
                continue;
            };
            let data = VersionData {
                state: Some(state),
                parts: data.parts,
            }
            .encode();
            let meta = VersionMeta {
                full: true,
                size: data.len() as u64,
                ..meta
            };
            put.push(VersionRecord {
                seq: meta.seq,
                meta: meta.encode(),
                data,
            });
        }
        store.rewrite_versions(&self.name, &drop, put).await?;
        tracing::debug!(doc = %self.name, dropped = drop.len(), "old versions dropped");
        Ok(())
    }
}

/// The clock after the last block an update inserts, per client. (`Update::state_vector`
/// counts only clients whose blocks start at clock 0, so it misses incremental updates.)
fn upper_clocks(update: &Update) -> Vec<(ClientID, u32)> {
    update
        .insertions(true)
        .iter()
        .filter_map(|(client, ranges)| {
            let end = ranges.into_iter().map(|r| r.end).max()?;
            Some((*client, end))
        })
        .collect()
}

fn history_error(error: HistoryError) -> DocError {
    match error {
        HistoryError::Store(error) => error.into(),
        other => DocError::Unavailable(other.to_string()),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

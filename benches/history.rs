//! Version history (issue 20) with the automerge-paper trace (`benches/data/README.md`):
//!
//! 1. **Storage.** The trace is replayed through a [`Registry`] under tokio's paused clock, one
//!    session (durable acks on) sending each edit as a y-websocket Update at typing speed, the
//!    259,778 edits spread evenly over 10 hours of virtual time, with history on at the default
//!    `--history-interval` (1 minute) and `--history-retention` (30 days); then the session
//!    leaves (a version is kept) and the document unloads (compacted). The same replay with
//!    history off gives the compacted size to compare with. Printed: the stored bytes
//!    (snapshot, log, every version's meta and data), the ratio, what the versions' data is made
//!    of, where rendering the newest version goes, and the same parts squashed for comparison.
//! 2. **Memory.** The same document loaded from a sled store in a fresh process (this binary,
//!    re-run with `WEFT_HISTORY_RSS_CHILD`), history on and off: process RSS before the load,
//!    once the document is in memory, and after one interval of typing (433 keystrokes).
//! 3. **Speed.** The stored document copied into a sled store (temp dir), exactly as the
//!    replay left it: every tenth version and the newest rendered once (the spread; every
//!    version with `WEFT_HISTORY_ALL_VERSIONS=1`), then criterion: listing the
//!    versions, rendering the newest (longest chain), a middle and the first version the way
//!    `GET .../versions/<id>/json` does (`history::version_update`, `history::version_doc`,
//!    `render_json`, serialising the JSON), and `history::changes::changes` between the last
//!    two versions; the list and the newest also over the in-memory store.
//!
//! Run with `cargo bench --bench history` (criterion options after `--`, e.g.
//! `cargo bench --bench history -- render`; the report parts always run, about 4 minutes,
//! and the criterion part about 5 more). The client types under a fixed 32-bit client id, as a
//! browser's Yjs does; sizes vary by a few bytes between runs (where the version cuts fall).
//! Compare times only against runs made in the same session on the same machine.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode};
use weft_crdt::history::{self, HistoryConfig, VersionData, VersionMeta};
use weft_crdt::protocol::{self, decode_client_message, MSG_DURABLE};
use weft_crdt::store::{StoredDoc, VersionRecord, VersionSeq};
use weft_crdt::{
    session_queue, DocConfig, DocName, DocStore, MemoryStore, Outbox, QueueLimits, Registry,
    Session, SessionInfo,
};
use weft_server::api::render_json;
use weft_store_sled::SledStore;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Array, Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

const TRACE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/data/automerge-paper.json.gz"
);
/// Virtual time the trace's edits are spread over.
const SIMULATED: Duration = Duration::from_secs(10 * 3600);
const DOC: &str = "automerge-paper";
const AUTHOR: &str = "kleppmann";
/// The client id the trace is typed under: a random-looking 32-bit one, as Yjs clients in a
/// browser pick (five bytes as a varint; a yrs client's 53-bit random id takes eight).
const CLIENT_ID: u64 = 0x9E37_79B9;
/// Set (to `on` or `off`) when this binary runs as the memory probe.
const RSS_CHILD: &str = "WEFT_HISTORY_RSS_CHILD";
/// The sled directory the memory probe loads from.
const RSS_DIR: &str = "WEFT_HISTORY_RSS_DIR";
/// Memory probe runs per mode.
const RSS_RUNS: usize = 5;
/// Set to render every version in the spread (default: every tenth and the newest).
const ALL_VERSIONS: &str = "WEFT_HISTORY_ALL_VERSIONS";
/// Keystrokes the memory probe types after loading: one interval at the replay's pace.
const TYPED: usize = 433;

fn name() -> DocName {
    DocName::new(DOC).expect("name")
}

/// One patch of the trace: at `pos` (code points; the text is ASCII), delete `del`, insert
/// `ins`.
struct Edit {
    pos: u32,
    del: u32,
    ins: String,
}

struct Trace {
    edits: Vec<Edit>,
    end: String,
}

fn read_trace() -> Trace {
    let file = std::fs::File::open(TRACE).expect("open the trace");
    let mut json = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut json)
        .expect("gunzip the trace");
    let trace: serde_json::Value = serde_json::from_str(&json).expect("trace JSON");
    let mut edits = Vec::new();
    for txn in trace["txns"].as_array().expect("txns") {
        for patch in txn["patches"].as_array().expect("patches") {
            edits.push(Edit {
                pos: patch[0].as_u64().expect("pos") as u32,
                del: patch[1].as_u64().expect("del") as u32,
                ins: patch[2].as_str().expect("ins").to_string(),
            });
        }
    }
    let end = trace["endContent"]
        .as_str()
        .expect("endContent")
        .to_string();
    assert!(
        end.is_ascii(),
        "byte offsets equal code points only for ASCII"
    );
    Trace { edits, end }
}

/// What one replay left in its store.
struct Replayed {
    store: Arc<MemoryStore>,
    stored: StoredDoc,
    metas: Vec<(VersionSeq, Bytes)>,
    data: Vec<(VersionSeq, Bytes)>,
    /// Wall time the replay took.
    took: Duration,
    /// The server's text at the end.
    text: String,
    /// Bytes of the updates the client sent.
    sent: u64,
}

impl Replayed {
    fn stored_bytes(&self) -> u64 {
        self.stored.size_bytes()
    }
    fn meta_bytes(&self) -> u64 {
        self.metas.iter().map(|(_, m)| m.len() as u64).sum()
    }
    fn data_bytes(&self) -> u64 {
        self.data.iter().map(|(_, d)| d.len() as u64).sum()
    }
    fn total(&self) -> u64 {
        self.stored_bytes() + self.meta_bytes() + self.data_bytes()
    }
}

fn session_info(conn: u128) -> SessionInfo {
    SessionInfo {
        conn: uuid::Uuid::from_u128(conn),
        user: AUTHOR.into(),
        can_write: true,
        authenticated: true,
        durable_acks: true,
        stateless: false,
    }
}

async fn join(registry: &Registry, conn: u128) -> (Session, Outbox) {
    let (queue, outbox) = session_queue(QueueLimits {
        frames: 1 << 16,
        bytes: usize::MAX,
    });
    let session = registry
        .join(&name(), session_info(conn), queue)
        .await
        .expect("join");
    (session, outbox)
}

/// Sends `update` as an Update frame and waits until the document says it is durable.
async fn send_durably(session: &mut Session, outbox: &mut Outbox, update: Vec<u8>) {
    let message = decode_client_message(protocol::encode_update(&update)).expect("valid frame");
    session
        .send_async(message)
        .await
        .expect("the document takes it");
    loop {
        match outbox.recv().await {
            Some(frame) if frame.as_ref() == [MSG_DURABLE] => return,
            Some(_) => continue,
            None => panic!("session closed: {:?}", outbox.end_reason()),
        }
    }
}

/// A client's copy of the document, with a fixed client id (so that every run encodes the same
/// bytes: ids are variable-length integers in every block).
fn client_doc(id: u64) -> Doc {
    Doc::with_options(yrs::Options {
        client_id: yrs::ClientID::new(id),
        ..yrs::Options::default()
    })
}

/// Applies `edit` to the client's copy and returns the update it made: the transaction's own
/// update (its new blocks and what it deleted), what a Yjs client's `update` event carries and
/// y-websocket sends. (`encode_state_as_update_v1(&before)` would carry the document's whole
/// delete set every time.)
fn client_edit(doc: &Doc, edit: &Edit) -> Vec<u8> {
    let text = doc.get_or_insert_text("text");
    let mut txn = doc.transact_mut();
    if edit.del > 0 {
        text.remove_range(&mut txn, edit.pos, edit.del);
    }
    if !edit.ins.is_empty() {
        text.insert(&mut txn, edit.pos, &edit.ins);
    }
    txn.encode_update_v1()
}

/// Replays the trace at typing speed over [`SIMULATED`] under a paused clock, then lets the
/// session leave and the document unload.
fn replay(trace: &Trace, history: HistoryConfig) -> Replayed {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let started = Instant::now();
    let store = Arc::new(MemoryStore::new());
    let name = name();
    let mut sent = 0u64;
    let text = rt.block_on(async {
        let config = DocConfig {
            history,
            ..DocConfig::default()
        };
        let registry = Registry::new(store.clone(), config, tokio::runtime::Handle::current());
        let (mut session, mut outbox) = join(&registry, 1).await;
        let client = client_doc(CLIENT_ID);
        let step = SIMULATED / trace.edits.len() as u32;
        for edit in &trace.edits {
            tokio::time::advance(step).await;
            let update = client_edit(&client, edit);
            sent += update.len() as u64;
            send_durably(&mut session, &mut outbox, update).await;
        }
        let text = registry
            .read(&name, |doc| {
                doc.get_or_insert_text("text").get_string(&doc.transact())
            })
            .await
            .expect("read");
        // The last client leaves (a version is kept), then the idle unload compacts.
        drop(session);
        drop(outbox);
        for _ in 0..1000 {
            if !registry.is_loaded(&name) {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(!registry.is_loaded(&name), "the document did not unload");
        text
    });
    let (stored, metas, data) = rt.block_on(async {
        (
            store.load(&name).await.expect("load"),
            store.versions(&name).await.expect("versions"),
            store
                .version_data(&name, 0, u64::MAX)
                .await
                .expect("version data"),
        )
    });
    Replayed {
        store,
        stored,
        metas,
        data,
        took: started.elapsed(),
        text,
        sent,
    }
}

fn kb(bytes: u64) -> String {
    format!("{:.1} kB", bytes as f64 / 1000.0)
}

/// Prints the storage comparison and what the versions' data is made of.
fn report_storage(trace: &Trace, on: &Replayed, off: &Replayed) {
    assert_eq!(on.text, trace.end, "history on: the replay diverged");
    assert_eq!(off.text, trace.end, "history off: the replay diverged");
    assert!(off.metas.is_empty(), "history off kept versions");
    let metas: Vec<VersionMeta> = on
        .metas
        .iter()
        .map(|(seq, m)| VersionMeta::decode(*seq, m).expect("meta"))
        .collect();
    // Stored as lib0 v2; the breakdown below looks at the same updates in v1 (what clients
    // send, and what the parts were stored as before v2: the comparison it prints).
    let datas: Vec<VersionData> = on
        .data
        .iter()
        .map(|(_, d)| {
            let mut data = VersionData::decode(d).expect("data");
            let v1 = |u: &Bytes| history::record::v2_to_v1(u).expect("v2 update");
            data.state = data.state.as_ref().map(v1);
            for part in &mut data.parts {
                part.update = v1(&part.update);
            }
            data
        })
        .collect();
    println!("\n== Storage: automerge-paper over 10 h of virtual time, history interval 60 s ==");
    println!(
        "replay wall time: history on {:.1} s, off {:.1} s",
        on.took.as_secs_f64(),
        off.took.as_secs_f64()
    );
    println!(
        "history off: snapshot {} + log {} ({} records) = {}",
        off.stored.snapshot.as_ref().map_or(0, |s| s.len()),
        off.stored.log_bytes(),
        off.stored.log.len(),
        kb(off.stored_bytes())
    );
    println!(
        "history on:  snapshot {} + log {} ({} records) + {} versions: meta {} + data {} = {}",
        on.stored.snapshot.as_ref().map_or(0, |s| s.len()),
        on.stored.log_bytes(),
        on.stored.log.len(),
        on.metas.len(),
        on.meta_bytes(),
        on.data_bytes(),
        kb(on.total())
    );
    println!(
        "ratio (history on total / history off): {:.2}x (target <= 3x)",
        on.total() as f64 / off.stored_bytes() as f64
    );
    println!(
        "versions' share: {:.2}x the compacted document",
        (on.meta_bytes() + on.data_bytes()) as f64 / off.stored_bytes() as f64
    );

    // Intervals between versions.
    let full = metas.iter().filter(|m| m.full).count();
    let parts: usize = datas.iter().map(|d| d.parts.len()).sum();
    println!(
        "versions: {} (full: {full}), parts (one per author per version): {parts}",
        metas.len()
    );
    let mut sizes: Vec<u64> = on.data.iter().map(|(_, d)| d.len() as u64).collect();
    sizes.sort_unstable();
    println!(
        "data per version: median {} B, max {} B, min {} B; meta per version: median {} B",
        sizes[sizes.len() / 2],
        sizes[sizes.len() - 1],
        sizes[0],
        {
            let mut m: Vec<usize> = on.metas.iter().map(|(_, m)| m.len()).collect();
            m.sort_unstable();
            m[m.len() / 2]
        }
    );

    // What the data is made of.
    let mut update_bytes = 0u64;
    let mut delete_set_bytes = 0u64;
    let mut v2_bytes = 0u64;
    let mut all_parts: Vec<&[u8]> = Vec::new();
    for data in &datas {
        if let Some(state) = &data.state {
            all_parts.push(state);
        }
        for part in &data.parts {
            update_bytes += part.update.len() as u64;
            let update = Update::decode_v1(&part.update).expect("part decodes");
            delete_set_bytes += update.delete_set().encode_v1().len() as u64;
            v2_bytes += update.encode_v2().len() as u64;
            all_parts.push(&part.update);
        }
    }
    let inserted: u64 = trace.edits.iter().map(|e| e.ins.len() as u64).sum();
    println!(
        "data: parts' updates as v1 {update_bytes} B (of which delete sets {delete_set_bytes} B)"
    );
    println!(
        "text ever inserted: {inserted} B; final text {} B; the client sent {} updates, {} B \
         ({:.1} B each; one interval's worth, what the recorder holds, about {})",
        trace.end.len(),
        trace.edits.len(),
        on.sent,
        on.sent as f64 / trace.edits.len() as f64,
        kb(on.sent / on.metas.len().max(1) as u64)
    );
    let merged = yrs::merge_updates_v1(all_parts.iter().copied()).expect("merge");
    let merged_v2 = Update::decode_v1(&merged).expect("merged").encode_v2();
    println!(
        "every part merged into one update (the whole edit history, deleted text kept): {} B \
         ({:.2}x the compacted document); v2-encoded: {} B",
        merged.len(),
        merged.len() as f64 / off.stored_bytes() as f64,
        merged_v2.len()
    );
    println!("the parts as stored (v2): {v2_bytes} B (v1 would be {update_bytes} B)");
    let doc = history::version_doc(&merged, false).expect("doc");
    let gc = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    println!(
        "that history re-encoded with deleted content collected: {} B (the snapshot is {} B)",
        gc.len(),
        on.stored.snapshot.as_ref().map_or(0, |s| s.len())
    );
    report_squashed(trace, on, off, &datas);
}

/// Median wall time of `runs` calls of `f`, in ms, and the results (kept, so that dropping
/// them is not timed).
fn timed<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, Vec<T>) {
    let mut times = Vec::with_capacity(runs);
    let mut results = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        results.push(f());
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (quantile(&times, 0.5), results)
}

fn text_of(doc: &Doc) -> String {
    doc.get_or_insert_text("text").get_string(&doc.transact())
}

/// Why the versions are that big and slow to render: where rendering the newest goes, and the
/// same parts squashed (adjacent blocks of one run of typing joined, as the live document does)
/// rebuilt through a document that keeps deleted content.
fn report_squashed(trace: &Trace, on: &Replayed, off: &Replayed, datas: &[VersionData]) {
    let parts: Vec<&[u8]> = datas
        .iter()
        .flat_map(|d| d.updates().map(|u| u.as_ref()))
        .collect();
    println!("\n-- rendering the newest version, split (in memory, median of 3) --");
    let (merge_ms, merged) = timed(3, || {
        yrs::merge_updates_v1(parts.iter().copied()).expect("merge")
    });
    let merged = &merged[0];
    let (apply_ms, docs) = timed(3, || history::version_doc(merged, false).expect("doc"));
    let (render_ms, json) = timed(3, || {
        serde_json::to_vec(&render_json(&docs[0])).expect("json")
    });
    assert_eq!(text_of(&docs[0]), trace.end);
    drop(docs);
    println!(
        "merge the {} parts ({} B) into one: {merge_ms:.1} ms; apply it to a new document \
         (version_doc): {apply_ms:.1} ms; render_json + serialise ({} B): {render_ms:.1} ms",
        parts.len(),
        parts.iter().map(|p| p.len()).sum::<usize>(),
        json[0].len()
    );
    let (one_by_one_ms, _) = timed(1, || {
        let doc = Doc::new();
        for part in &parts {
            doc.transact_mut()
                .apply_update(Update::decode_v1(part).expect("part"))
                .expect("apply");
        }
        doc
    });
    println!(
        "instead of merging: the {} parts applied one by one, one transaction each: \
         {one_by_one_ms:.1} ms",
        parts.len()
    );
    let snapshot = on.stored.snapshot.clone().expect("snapshot");
    let (state_ms, docs) = timed(3, || history::version_doc(&snapshot, false).expect("doc"));
    let (json_ms, _) = timed(3, || {
        serde_json::to_vec(&render_json(&docs[0])).expect("json")
    });
    let (fresh_ms, fresh) = timed(3, || history::version_doc(&snapshot, false).expect("doc"));
    let mut fresh = fresh.into_iter();
    let (string_ms, _) = timed(3, || {
        let doc = fresh.next().expect("doc");
        let text = doc.get_or_insert_text("text").get_string(&doc.transact());
        (doc, text)
    });
    let fresh = history::version_doc(&snapshot, false).expect("doc");
    let (items_ms, _) = timed(1, || {
        let txn = fresh.transact();
        let roots: Vec<yrs::Out> = txn.root_refs().map(|(_, root)| root).collect();
        roots
            .into_iter()
            .map(|root| match root {
                yrs::Out::UndefinedRef(branch) => yrs::ArrayRef::from(branch).iter(&txn).count(),
                _ => 0,
            })
            .sum::<usize>()
    });
    drop(fresh);
    println!(
        "render_json on a root no client typed yet first collects it as an array: that alone \
         takes {items_ms:.1} ms here"
    );
    println!(
        "for comparison, the compacted state ({} B, what a full version without deleted content \
         would hold): version_doc {state_ms:.1} ms (again: {fresh_ms:.1} ms), render_json + \
         serialise {json_ms:.1} ms (get_string of the text alone: {string_ms:.1} ms)",
        snapshot.len()
    );

    // The same parts squashed: each applied in order to a document that keeps deleted
    // content, and re-encoded as what it added (blocks) plus what it deleted.
    let doc = Doc::with_options(yrs::Options {
        skip_gc: true,
        ..yrs::Options::default()
    });
    let mut squashed: Vec<Vec<u8>> = Vec::with_capacity(parts.len());
    for part in &parts {
        let update = Update::decode_v1(part).expect("part");
        let own_deletes = update.delete_set().encode_v1();
        let before = doc.transact().state_vector();
        doc.transact_mut().apply_update(update).expect("apply");
        let txn = doc.transact();
        let diff = txn.encode_state_as_update_v1(&before);
        // No blocks, then the document's whole delete set.
        let deletes_only = txn.encode_state_as_update_v1(&txn.state_vector());
        let whole_deletes = &deletes_only[1..];
        assert!(diff.ends_with(whole_deletes), "unexpected v1 layout");
        let mut part = diff[..diff.len() - whole_deletes.len()].to_vec();
        part.extend_from_slice(&own_deletes);
        squashed.push(part);
    }
    let squashed_bytes: u64 = squashed.iter().map(|p| p.len() as u64).sum();
    let squashed_v2: u64 = squashed
        .iter()
        .map(|p| Update::decode_v1(p).expect("squashed").encode_v2().len() as u64)
        .sum();
    let stored_parts: u64 = datas
        .iter()
        .flat_map(|d| d.updates())
        .map(|u| Update::decode_v1(u).expect("part").encode_v2().len() as u64)
        .sum();
    let others = on.stored_bytes() + on.meta_bytes() + on.data_bytes() - stored_parts;
    println!("\n-- the same parts squashed --");
    println!(
        "squashed parts: {squashed_bytes} B v1 (total {:.2}x), {squashed_v2} B v2 (total {:.2}x)",
        (others + squashed_bytes) as f64 / off.stored_bytes() as f64,
        (others + squashed_v2) as f64 / off.stored_bytes() as f64
    );
    let (merge_ms, merged) = timed(3, || {
        yrs::merge_updates_v1(squashed.iter().map(|p| p.as_slice())).expect("merge")
    });
    let merged = &merged[0];
    let (apply_ms, docs) = timed(3, || history::version_doc(merged, false).expect("doc"));
    let (render_ms, _) = timed(3, || {
        serde_json::to_vec(&render_json(&docs[0])).expect("json")
    });
    assert_eq!(text_of(&docs[0]), trace.end, "the squashed parts diverged");
    println!(
        "rendering the newest from them: merge {merge_ms:.1} ms ({} B) + apply {apply_ms:.1} ms \
         + render {render_ms:.1} ms",
        merged.len()
    );
}

/// Copies what `from` holds of the document into `to`, versions included, byte for byte.
async fn copy_to(from: &Replayed, to: &dyn DocStore) {
    let name = name();
    to.create(&name).await.expect("create");
    if let Some(snapshot) = &from.stored.snapshot {
        let pos = to
            .append(&name, vec![snapshot.clone()])
            .await
            .expect("append");
        to.compact(&name, snapshot.clone(), pos)
            .await
            .expect("compact");
    }
    if !from.stored.log.is_empty() {
        let log = from.stored.log.iter().map(|e| e.update.clone()).collect();
        to.append(&name, log).await.expect("append the log");
    }
    for ((seq, meta), (data_seq, data)) in from.metas.iter().zip(&from.data) {
        assert_eq!(seq, data_seq);
        let record = VersionRecord {
            seq: *seq,
            meta: meta.clone(),
            data: data.clone(),
        };
        assert!(to.add_version(&name, record).await.expect("add version"));
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                total += dir_bytes(&path);
            } else if let Ok(meta) = entry.metadata() {
                total += meta.len();
            }
        }
    }
    total
}

/// What `GET .../versions` does after its checks: list, and serialise as the server's
/// `VersionJson` (newest first).
async fn list_json(store: &dyn DocStore) -> Vec<u8> {
    let metas = history::list(store, &name()).await.expect("list");
    let listing: Vec<serde_json::Value> = metas
        .iter()
        .rev()
        .map(|m| {
            serde_json::json!({
                "id": m.seq.to_string(),
                "at": m.at,
                "label": m.label,
                "authors": m.authors.iter().filter(|a| !a.is_empty()).collect::<Vec<_>>(),
                "sizeBytes": m.size,
            })
        })
        .collect();
    serde_json::to_vec(&listing).expect("json")
}

/// What `GET .../versions/<id>/json` does after its checks.
async fn render(store: &dyn DocStore, version: VersionSeq) -> Vec<u8> {
    let (_, update) = history::version_update(store, &name(), version)
        .await
        .expect("version update");
    let doc = history::version_doc(&update, false).expect("version doc");
    serde_json::to_vec(&render_json(&doc)).expect("json")
}

/// What `GET .../versions/<id>/changes` does after its checks (since: the version before).
async fn changes_json(store: &dyn DocStore, version: VersionSeq) -> Vec<u8> {
    let changes = history::changes::changes(store, &name(), version, None)
        .await
        .expect("changes");
    serde_json::to_vec(&changes).expect("json")
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Renders every version once and prints the spread.
fn render_every_version(rt: &tokio::runtime::Runtime, store: &dyn DocStore, seqs: &[VersionSeq]) {
    let mut times = Vec::with_capacity(seqs.len());
    let mut worst = (0.0, 0);
    for &seq in seqs {
        let started = Instant::now();
        let json = rt.block_on(render(store, seq));
        let ms = started.elapsed().as_secs_f64() * 1e3;
        assert!(!json.is_empty());
        if ms > worst.0 {
            worst = (ms, seq);
        }
        times.push(ms);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "render (version_update + version_doc + render_json + serialise) of {} versions \
         once each, sled: median {:.1} ms, p95 {:.1} ms, max {:.1} ms (version {})",
        seqs.len(),
        quantile(&times, 0.5),
        quantile(&times, 0.95),
        worst.0,
        worst.1
    );
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The memory probe: loads the document from the sled store at `dir` into a registry with
/// history `mode` and prints RSS (KiB) before, loaded, and after typing one interval.
fn rss_child(mode: &str, dir: &Path) {
    let history = match mode {
        "on" => HistoryConfig::default(),
        _ => HistoryConfig::OFF,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = Arc::new(SledStore::open(dir).expect("sled"));
        // The client's copy, made before the baseline so that it counts in neither delta.
        let stored = store.load(&name()).await.expect("load");
        let client = client_doc(CLIENT_ID + 1);
        for update in stored
            .snapshot
            .iter()
            .chain(stored.log.iter().map(|e| &e.update))
        {
            client
                .transact_mut()
                .apply_update(Update::decode_v1(update).expect("decode"))
                .expect("apply");
        }
        drop(stored);
        let config = DocConfig {
            history,
            ..DocConfig::default()
        };
        let registry = Registry::new(store, config, tokio::runtime::Handle::current());
        let before = rss_kib();
        let (mut session, mut outbox) = join(&registry, 2).await;
        // A read needs the whole document in memory (the restore may serve the stored state
        // without decoding it first), and runs after the history was read.
        let len = registry
            .read(&name(), |doc| {
                doc.get_or_insert_text("text").len(&doc.transact())
            })
            .await
            .expect("read");
        assert!(len > 100_000);
        let loaded = rss_kib();
        for i in 0..TYPED {
            let end = client.get_or_insert_text("text").len(&client.transact());
            let edit = Edit {
                pos: end,
                del: 0,
                ins: ((b'a' + (i % 26) as u8) as char).to_string(),
            };
            let update = client_edit(&client, &edit);
            send_durably(&mut session, &mut outbox, update).await;
        }
        let typed = rss_kib();
        println!("rss {before} {loaded} {typed}");
    });
}

/// Runs the memory probe `RSS_RUNS` times per mode, alternating, and prints the medians.
fn report_rss(dir: &Path) {
    let exe = std::env::current_exe().expect("current exe");
    let mut results: Vec<(&str, Vec<[u64; 3]>)> = vec![("off", Vec::new()), ("on", Vec::new())];
    for _ in 0..RSS_RUNS {
        for (mode, runs) in &mut results {
            let output = Command::new(&exe)
                .env(RSS_CHILD, *mode)
                .env(RSS_DIR, dir)
                .output()
                .expect("run the memory probe");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let line = stdout
                .lines()
                .find_map(|l| l.strip_prefix("rss "))
                .unwrap_or_else(|| {
                    panic!(
                        "memory probe failed: {}",
                        String::from_utf8_lossy(&output.stderr)
                    )
                });
            let v: Vec<u64> = line
                .split(' ')
                .map(|n| n.parse().expect("number"))
                .collect();
            runs.push([v[0], v[1], v[2]]);
        }
    }
    println!(
        "\n== Memory: the document loaded from sled in a fresh process ({RSS_RUNS} runs per \
         mode; RSS in KiB) =="
    );
    let mut medians = Vec::new();
    for (mode, runs) in &results {
        let median = |f: &dyn Fn(&[u64; 3]) -> i64| {
            let mut v: Vec<i64> = runs.iter().map(f).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        let loaded = median(&|r| r[1] as i64 - r[0] as i64);
        let typed = median(&|r| r[2] as i64 - r[0] as i64);
        let typed_min = runs
            .iter()
            .map(|r| r[2] as i64 - r[0] as i64)
            .min()
            .unwrap_or(0);
        println!(
            "history {mode:>3}: runs (before, loaded, typed) {runs:?}; median delta loaded \
             {loaded} KiB, after {TYPED} keystrokes {typed} KiB (least {typed_min} KiB)"
        );
        medians.push((loaded, typed));
    }
    println!(
        "ratio on/off: loaded {:.2}x, after typing {:.2}x (target <= 1.5x)",
        medians[1].0 as f64 / medians[0].0 as f64,
        medians[1].1 as f64 / medians[0].1 as f64
    );
}

fn benches(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    sled: &dyn DocStore,
    memory: &dyn DocStore,
    seqs: &[VersionSeq],
) {
    let newest = *seqs.last().expect("versions");
    let middle = seqs[seqs.len() / 2];
    let first = seqs[0];
    let before_newest = seqs[seqs.len() - 2];
    let mut group = c.benchmark_group(format!(
        "history of automerge-paper ({} versions)",
        seqs.len()
    ));
    // Flat: a render of the newest takes seconds; ten of them are enough.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function("sled: list versions (+ JSON)", |b| {
        b.iter(|| rt.block_on(list_json(sled)))
    });
    group.bench_function(format!("sled: render newest (v{newest}) as JSON"), |b| {
        b.iter(|| rt.block_on(render(sled, newest)))
    });
    group.bench_function(format!("sled: render middle (v{middle}) as JSON"), |b| {
        b.iter(|| rt.block_on(render(sled, middle)))
    });
    group.bench_function(format!("sled: render first (v{first}) as JSON"), |b| {
        b.iter(|| rt.block_on(render(sled, first)))
    });
    group.bench_function(
        format!("sled: version_update only, newest (v{newest})"),
        |b| {
            b.iter(|| {
                rt.block_on(history::version_update(sled, &name(), newest))
                    .expect("version update")
            })
        },
    );
    group.bench_function(
        format!("sled: changes v{before_newest} -> v{newest} (+ JSON)"),
        |b| b.iter(|| rt.block_on(changes_json(sled, newest))),
    );
    group.bench_function("memory: list versions (+ JSON)", |b| {
        b.iter(|| rt.block_on(list_json(memory)))
    });
    group.bench_function(format!("memory: render newest (v{newest}) as JSON"), |b| {
        b.iter(|| rt.block_on(render(memory, newest)))
    });
    group.bench_function(
        format!("memory: changes v{before_newest} -> v{newest} (+ JSON)"),
        |b| b.iter(|| rt.block_on(changes_json(memory, newest))),
    );
    group.finish();
}

fn main() {
    if let Ok(mode) = std::env::var(RSS_CHILD) {
        let dir = PathBuf::from(std::env::var(RSS_DIR).expect("WEFT_HISTORY_RSS_DIR"));
        rss_child(&mode, &dir);
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    let trace = read_trace();
    println!("trace: {} edits", trace.edits.len());
    let on = replay(&trace, HistoryConfig::default());
    let off = replay(&trace, HistoryConfig::OFF);
    report_storage(&trace, &on, &off);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");

    // The memory probe's store: its own directory, closed before the probes open it.
    let rss_dir = tempfile::tempdir().expect("tempdir");
    {
        let store = SledStore::open(rss_dir.path()).expect("sled");
        rt.block_on(copy_to(&on, &store));
    }
    // sled lets go of its lock once its writer thread has ended.
    std::thread::sleep(Duration::from_millis(500));
    report_rss(rss_dir.path());

    let dir = tempfile::tempdir().expect("tempdir");
    let sled = SledStore::open(dir.path()).expect("sled");
    rt.block_on(copy_to(&on, &sled));
    println!(
        "\nsled directory after the copy: {} (sled's files, not the stored bytes above)",
        kb(dir_bytes(dir.path()))
    );
    let seqs: Vec<VersionSeq> = on.metas.iter().map(|(seq, _)| *seq).collect();
    println!("\n== Speed ==");
    let swept: Vec<VersionSeq> = if std::env::var_os(ALL_VERSIONS).is_some() {
        seqs.clone()
    } else {
        let mut every_tenth: Vec<VersionSeq> = seqs.iter().copied().step_by(10).collect();
        every_tenth.extend(seqs.last().filter(|s| every_tenth.last() != Some(*s)));
        every_tenth
    };
    render_every_version(&rt, &sled, &swept);
    benches(&mut criterion, &rt, &sled, on.store.as_ref(), &seqs);
    criterion.final_summary();
}

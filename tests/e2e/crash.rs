//! Crash safety: the real `weft` binary is killed with SIGKILL at random moments while clients
//! write continuously; after every restart, every update any client received from the server
//! must still be there. The server compacts every 15 updates and unloads idle documents after
//! 30 ms while churning clients open and leave other documents, so kills regularly land during
//! compaction and during idle unload. Versions are kept every 50 ms of editing (and whenever a
//! churning client leaves): every version listed before a kill must still be listed, unchanged,
//! after it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use yrs::{Map, Text, Transact, WriteTxn};

use crate::helpers::*;

const DOCS: usize = 3;
const WRITERS_PER_DOC: usize = 2;
const KILLS: usize = 22;

/// Markers per document: written by writers, seen by readers (= acknowledged by the server).
#[derive(Default)]
struct Ledger {
    written: HashMap<usize, BTreeSet<String>>,
    acked: HashMap<usize, BTreeSet<String>>,
}

fn doc_name(doc: usize) -> String {
    format!("crash/doc-{doc}")
}

fn markers(client: &TestClient) -> BTreeSet<String> {
    let map = client.doc.get_or_insert_map("m");
    let txn = client.doc.transact();
    map.keys(&txn).map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_update_is_lost_across_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--compact-after-updates",
        "15",
        "--idle-unload",
        "30ms",
        "--history-interval",
        "50ms",
    ];
    let http = reqwest::Client::new();
    // Every version seen listed so far: (document, id) -> (listing entry, state).
    let mut versions: BTreeMap<(String, String), (serde_json::Value, Vec<u8>)> = BTreeMap::new();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    // Writers keep their documents across rounds, like y-websocket clients across reconnects:
    // whatever the server lost unacknowledged they resend on the next sync.
    let mut writer_docs: Vec<Option<TestClient>> =
        (0..DOCS * WRITERS_PER_DOC).map(|_| None).collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next_random = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut total_recovered = 0;

    for round in 0..=KILLS {
        let server = WeftProcess::start(dir.path(), &args);

        // Verify: a fresh client of every document sees every acknowledged marker.
        for doc in 0..DOCS {
            let check = TestClient::connect_synced(&server.ws_url(&doc_name(doc))).await;
            let present = markers(&check);
            let ledger = ledger.lock().unwrap();
            let acked = ledger.acked.get(&doc).cloned().unwrap_or_default();
            let lost: Vec<&String> = acked.difference(&present).collect();
            assert!(
                lost.is_empty(),
                "round {round}: doc {doc} lost acknowledged updates {lost:?}"
            );
            if round == KILLS {
                total_recovered += present.len();
            }
        }
        // No listed version is lost or changed.
        for name in (0..DOCS).flat_map(|d| [doc_name(d), format!("crash/churn-{d}")]) {
            let listed = listed_versions(&http, &server, &name).await;
            for ((doc, id), seen) in versions.iter().filter(|((doc, _), _)| *doc == name) {
                assert_eq!(
                    listed.get(id),
                    Some(seen),
                    "round {round}: version {id} of {doc} lost or changed"
                );
            }
            for (id, version) in listed {
                versions.insert((name.clone(), id), version);
            }
        }
        if round == KILLS {
            assert_eq!(server.terminate(), Some(0), "clean exit on SIGTERM");
            break;
        }

        // Write for a random while, then kill -9.
        let stop = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for doc in 0..DOCS {
            // A reader: what it receives counts as acknowledged.
            let url = server.ws_url(&doc_name(doc));
            let ledger_r = ledger.clone();
            let stop_r = stop.clone();
            tasks.push(tokio::spawn(async move {
                let Ok(mut reader) = TestClient::try_connect(&url).await else {
                    return None;
                };
                loop {
                    tokio::select! {
                        alive = reader.pump_one(Duration::from_millis(20)) => {
                            let seen = markers(&reader);
                            ledger_r.lock().unwrap().acked.entry(doc).or_default().extend(seen);
                            if !alive { break; }
                        }
                        _ = stop_r.notified() => break,
                    }
                }
                None
            }));
            for w in 0..WRITERS_PER_DOC {
                let slot = doc * WRITERS_PER_DOC + w;
                let url = server.ws_url(&doc_name(doc));
                let previous = writer_docs[slot].take();
                let ledger_w = ledger.clone();
                tasks.push(tokio::spawn(async move {
                    let mut writer = match TestClient::try_connect(&url).await {
                        Ok(writer) => writer,
                        Err(_) => return previous.map(|p| (slot, p)),
                    };
                    if let Some(previous) = previous {
                        writer.doc = previous.doc;
                    }
                    let mut n = 0;
                    loop {
                        let marker = format!("r{round}-w{slot}-{n}");
                        n += 1;
                        ledger_w
                            .lock()
                            .unwrap()
                            .written
                            .entry(doc)
                            .or_default()
                            .insert(marker.clone());
                        let key = marker.clone();
                        let sent = writer
                            .change(|txn| {
                                txn.get_or_insert_map("m").insert(txn, key, true);
                            })
                            .await;
                        // Answer the server's SyncStep1 (resending what it lost) and notice a kill.
                        if !sent || !writer.pump_one(Duration::from_millis(2)).await {
                            break;
                        }
                    }
                    Some((slot, writer))
                }));
            }
            // A client that comes and goes, so the document unloads (and compacts) now and then.
            let url = server.ws_url(&format!("crash/churn-{doc}"));
            tasks.push(tokio::spawn(async move {
                for i in 0..1000 {
                    let Ok(mut c) = TestClient::try_connect(&url).await else {
                        break;
                    };
                    let sent = c
                        .change(|txn| txn.get_or_insert_text("text").push(txn, &format!("{i}.")))
                        .await;
                    drop(c);
                    if !sent {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
                None
            }));
        }
        let run_ms = 80 + next_random() % 420;
        tokio::time::sleep(Duration::from_millis(run_ms)).await;
        server.kill9();
        stop.notify_waiters();
        for task in tasks {
            if let Ok(Ok(Some((slot, writer)))) = tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .map(|r| r.map_err(|_| ()))
            {
                writer_docs[slot] = Some(writer);
            }
        }
    }

    let ledger = ledger.lock().unwrap();
    let written: usize = ledger.written.values().map(BTreeSet::len).sum();
    let acked: usize = ledger.acked.values().map(BTreeSet::len).sum();
    println!("crash test: {KILLS} SIGKILLs, {written} updates written, {acked} acknowledged, {total_recovered} recovered, 0 lost; {} versions kept, none lost or changed", versions.len());
    assert!(
        versions.len() > 10,
        "the test must keep versions ({})",
        versions.len()
    );
    assert!(
        acked > 100,
        "the test must exercise real traffic (acked {acked})"
    );
}

/// Every version of `doc` the server lists, by id, with its state.
async fn listed_versions(
    http: &reqwest::Client,
    server: &WeftProcess,
    doc: &str,
) -> BTreeMap<String, (serde_json::Value, Vec<u8>)> {
    let base = server.http_url(&format!("/api/docs/{doc}/versions"));
    let response = http.get(&base).send().await.unwrap();
    if response.status() == 404 {
        return BTreeMap::new(); // Not created yet.
    }
    let listed: serde_json::Value = response.json().await.unwrap();
    let mut out = BTreeMap::new();
    for version in listed.as_array().unwrap() {
        let id = version["id"].as_str().unwrap().to_string();
        let state = http
            .get(format!("{base}/{id}/update"))
            .send()
            .await
            .unwrap();
        assert_eq!(state.status(), 200, "version {id} of {doc} unreadable");
        out.insert(id, (version.clone(), state.bytes().await.unwrap().to_vec()));
    }
    out
}

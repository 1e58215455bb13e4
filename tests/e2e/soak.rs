//! Soak: hundreds of connections churn (connect, edit, disconnect) across many documents for a
//! bounded time against the real binary; afterwards every document unloads and memory returns
//! to its baseline (no leaked documents, sessions, observers or tasks).
//! `WEFT_SOAK_SECS` sets the total churn time (default 30 s: a warm-up and a measured half).

use std::time::{Duration, Instant};

use yrs::{Text, WriteTxn};

use crate::helpers::*;

const CLIENTS: usize = 250;
const DOCS: usize = 60;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Clients connecting, editing and leaving until `until`; returns the sessions completed.
async fn churn(addr: &str, until: Instant) -> usize {
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let addr = addr.to_string();
            tokio::spawn(async move {
                let mut sessions = 0u32;
                let mut n = i;
                // Like a real user, each task keeps its document (and so its client id) across
                // reconnects, and overwrites its own keys: the documents stay the same size, so
                // any growth in the server's memory is the server's fault, not the data's.
                let mut docs: std::collections::HashMap<usize, yrs::Doc> = Default::default();
                while Instant::now() < until {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let doc = (n >> 33) % DOCS;
                    let url = format!("ws://{addr}/soak/doc-{doc}");
                    let Ok(mut client) = TestClient::try_connect(&url).await else {
                        continue;
                    };
                    if let Some(saved) = docs.remove(&doc) {
                        client.doc = saved;
                    }
                    let clock = 2 * sessions + 1;
                    client
                        .send(awareness_frame(
                            1 + i as u64,
                            clock,
                            r#"{"user":{"name":"soak"}}"#,
                        ))
                        .await;
                    let edits = if std::env::var("WEFT_SOAK_NO_EDITS").is_ok() {
                        0
                    } else {
                        1 + (n >> 40) % 4
                    };
                    for k in 0..edits {
                        // Type a few characters at the end of this client's own text and delete
                        // what it typed before: tombstones of one author merge, so the
                        // document stays small however long the soak runs.
                        client
                            .change(|txn| {
                                let text = txn.get_or_insert_text(format!("t{i}"));
                                let len = text.len(txn);
                                text.insert(txn, len, &format!("{k}ab"));
                                if len > 0 {
                                    text.remove_range(txn, 0, len);
                                }
                            })
                            .await;
                        client.pump_one(Duration::from_millis(5)).await;
                    }
                    docs.insert(doc, client.doc);
                    sessions += 1;
                }
                sessions as usize
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap_or(0);
    }
    total
}

async fn stored_kib(addr: &str) -> u64 {
    let docs: serde_json::Value = reqwest::get(format!("http://{addr}/api/docs"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    docs.as_array()
        .unwrap()
        .iter()
        .map(|d| d["sizeBytes"].as_u64().unwrap_or(0))
        .sum::<u64>()
        / 1024
}

async fn wait_until_idle(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let loaded = metric(addr, "weft_documents_loaded").await;
        let connections = metric(addr, "weft_connections").await;
        if loaded == 0.0 && connections == 0.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {loaded} documents loaded and {connections} connections after the clients left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the server has returned freed memory to the OS once more (it does within 5 s of
/// documents unloading).
async fn wait_for_trim(addr: &str, trims_before: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(addr, "weft_memory_trims_total").await <= trims_before {
        assert!(
            Instant::now() < deadline,
            "freed memory never returned to the OS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_returns_to_baseline_after_churn() {
    let secs: u64 = std::env::var("WEFT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    // A small page cache, so it reaches its size during the warm-up.
    let server = WeftProcess::start(
        dir.path(),
        &["--idle-unload", "300ms", "--cache-bytes", "4000000"],
    );
    let pid = server.child.id();
    let addr = server.addr.clone();

    // Warm-up as long as the measured run, so allocator pools and the store's page cache are at
    // their working size: what remains after the second run on top of the first is a leak.
    // (The server returns freed memory to the OS within 5 s of documents unloading.)
    let trims = metric(&addr, "weft_memory_trims_total").await;
    let warm = churn(&addr, Instant::now() + Duration::from_secs(secs / 2)).await;
    wait_until_idle(&addr).await;
    wait_for_trim(&addr, trims).await;
    let baseline = rss_kib(pid);
    let stored_before = stored_kib(&addr).await;

    let trims = metric(&addr, "weft_memory_trims_total").await;
    let sessions = churn(&addr, Instant::now() + Duration::from_secs(secs / 2)).await;
    let peak = rss_kib(pid);
    wait_until_idle(&addr).await;
    wait_for_trim(&addr, trims).await;
    let after = rss_kib(pid);
    let stored_after = stored_kib(&addr).await;
    println!(
        "soak: {warm} warm-up + {sessions} sessions over {DOCS} documents; RSS baseline {} MiB, \
         peak {} MiB, after {} MiB; stored data {stored_before} KiB -> {stored_after} KiB",
        baseline / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(
        sessions > 1000 && warm > 1000,
        "the soak must churn for real ({sessions} sessions)"
    );
    assert!(
        after <= baseline + baseline / 10 + 8 * 1024,
        "memory did not return to baseline: {baseline} KiB before, {after} KiB after"
    );
    assert_eq!(server.terminate(), Some(0));
}

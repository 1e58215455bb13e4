//! The document actor's life, without sockets and mostly under a paused clock: loading
//! (answering from the stored records, then rebuilding after the grace period), idle unload,
//! an update yrs rejects, an actor that panics, shutdown racing joins, the size limit.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use support::*;
use weft_crdt::protocol::{self, ClientMessage};
use weft_crdt::store::{DocInfo, LogPos, StoreError, StoredDoc};
use weft_crdt::{CloseReason, DocConfig, DocError, DocName, DocStore, MemoryStore};

#[tokio::test(start_paused = true)]
async fn a_new_client_is_answered_from_the_records_and_the_rebuild_follows_the_grace() {
    let store = Arc::new(MemoryStore::new());
    store
        .append(
            &name("restore"),
            vec![
                Bytes::from(text_update(1, "one ")),
                Bytes::from(text_update(2, "two ")),
            ],
        )
        .await
        .unwrap();
    let h = harness_with(DocConfig::default(), store, None);
    let started = tokio::time::Instant::now();
    let mut client = h.join("restore", "a", 64).await;
    client.sync().await;
    // The full state from the records, before the document is rebuilt ...
    client
        .until("the stored state", |c| c.text().len() == 8)
        .await;
    assert!(tokio::time::Instant::now() - started < Duration::from_millis(5));
    // ... whose SyncStep1 (the server's state vector) follows once it is.
    loop {
        if let ClientMessage::SyncStep1(sv) = client.next().await.expect("open") {
            if sv.len() == 2 {
                break;
            }
        }
    }
    assert!(tokio::time::Instant::now() - started >= Duration::from_millis(5));
}

#[tokio::test(start_paused = true)]
async fn a_client_answered_from_a_damaged_record_is_told_to_reconnect() {
    let store = Arc::new(MemoryStore::new());
    store
        .append(
            &name("torn"),
            vec![Bytes::from_static(b"\xff\xfe torn write")],
        )
        .await
        .unwrap();
    let h = harness_with(DocConfig::default(), store, None);
    let mut client = h.join("torn", "a", 64).await;
    client.sync().await;
    match client.ended().await {
        CloseReason::Unavailable(why) => assert!(why.contains("damaged"), "{why}"),
        other => panic!("closed for {other:?}"),
    }
    // A new client gets the rebuilt (empty) document and can write.
    let mut again = h.join("torn", "b", 64).await;
    again.type_text("fresh").await;
    again.sync().await;
    again
        .until("its own edit back", |c| c.update_frames > 0)
        .await;
    assert_eq!(stored_text(h.store.as_ref(), "torn").await, "fresh");
}

#[tokio::test(start_paused = true)]
async fn an_idle_document_is_compacted_and_unloaded() {
    let config = DocConfig {
        idle_unload: Duration::from_secs(30),
        ..DocConfig::default()
    };
    let h = harness(config);
    let mut client = h.join("idle", "a", 64).await;
    client.type_text("keep me").await;
    client.sync().await;
    client.until("synced", |c| c.update_frames > 0).await;
    drop(client);
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(h.registry.is_loaded(&name("idle")), "unloaded too early");
    eventually("unloaded", || !h.registry.is_loaded(&name("idle"))).await;
    let stored = h.store.load(&name("idle")).await.unwrap();
    assert!(
        stored.snapshot.is_some() && stored.log.is_empty(),
        "compacted"
    );
    assert_eq!(stored_text(h.store.as_ref(), "idle").await, "keep me");
    assert_eq!(h.hooks.count("loaded idle"), 1);
    assert_eq!(h.hooks.count("unloaded idle"), 1);
    assert_eq!(h.hooks.count("compacted idle"), 1);
}

/// The two updates of `tests/e2e/hostile.rs`: yrs integrates part of the second one (client
/// 69's blocks) before it rejects it.
fn half_applied_pair() -> (Bytes, Bytes) {
    let accepted = vec![
        0, 2, 31, 2, 2, 65, 65, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 233, 255, 255, 41, 1, 1, 65, 1, 1,
        1, 1, 115, 241, 1, 169, 39,
    ];
    let rejected = vec![
        0, 2, 31, 2, 2, 69, 0, 0, 69, 1, 1, 1, 1, 1, 1, 1, 1, 52, 1, 0, 2, 1, 1, 1, 33, 1, 33, 1,
        1, 1, 1, 1, 169, 0,
    ];
    (Bytes::from(accepted), Bytes::from(rejected))
}

#[tokio::test(start_paused = true)]
async fn an_update_yrs_rejects_is_never_stored_or_served() {
    let h = harness(DocConfig::default());
    let mut writer = h.join("half", "writer", 64).await;
    writer.type_text("base").await;
    writer.sync().await;
    writer.until("synced", |c| c.update_frames > 0).await;
    let mut evil = h.join("half", "evil", 64).await;
    let (accepted, rejected) = half_applied_pair();
    evil.send_frame(accepted).await;
    evil.send_frame(rejected).await;
    assert!(matches!(evil.ended().await, CloseReason::BadMessage(_)));
    let state = h
        .registry
        .read(&name("half"), |doc| {
            use yrs::{ReadTxn, Transact};
            doc.transact().state_vector()
        })
        .await
        .expect("read");
    assert_eq!(state.get(&yrs::ClientID::new(69)), 0, "the half was served");
    let stored = h.store.load(&name("half")).await.unwrap();
    let rebuilt = weft_crdt::recovery::rebuild(&stored);
    assert!(rebuilt.damage.is_empty());
    assert!(stored_text(h.store.as_ref(), "half").await.contains("base"));
}

/// A store whose `load` panics: the actor dies while loading.
#[derive(Default)]
struct PanickingStore;

#[async_trait]
impl DocStore for PanickingStore {
    async fn load(&self, _doc: &DocName) -> Result<StoredDoc, StoreError> {
        panic!("a bug while loading");
    }
    async fn append(&self, _doc: &DocName, _records: Vec<Bytes>) -> Result<LogPos, StoreError> {
        Ok(0)
    }
    async fn compact(&self, _: &DocName, _: Bytes, _: LogPos) -> Result<(), StoreError> {
        Ok(())
    }
    async fn create(&self, _doc: &DocName) -> Result<bool, StoreError> {
        Ok(true)
    }
    async fn status(&self, _doc: &DocName) -> Result<weft_crdt::store::DocStatus, StoreError> {
        Ok(weft_crdt::store::DocStatus::Absent)
    }
    async fn delete(&self, _doc: &DocName) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn list(&self) -> Result<Vec<DocInfo>, StoreError> {
        Ok(Vec::new())
    }

    async fn deleted(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
    async fn add_version(
        &self,
        _: &DocName,
        _: weft_crdt::store::VersionRecord,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }
    async fn versions(&self, _: &DocName) -> Result<Vec<(u64, Bytes)>, StoreError> {
        Ok(Vec::new())
    }
    async fn version_data(
        &self,
        _: &DocName,
        _: u64,
        _: u64,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        Ok(Vec::new())
    }
    async fn rewrite_versions(
        &self,
        _: &DocName,
        _: &[u64],
        _: Vec<weft_crdt::store::VersionRecord>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

/// An actor that panics must not leave callers retrying forever, a document counted as loaded,
/// or a registry entry behind.
#[tokio::test(start_paused = true)]
async fn an_actor_that_panics_fails_its_callers_and_cleans_up() {
    let h = harness_with(DocConfig::default(), Arc::new(PanickingStore), None);
    let (queue, _outbox) = weft_crdt::session_queue(weft_crdt::QueueLimits {
        frames: 8,
        bytes: usize::MAX,
    });
    let info = weft_crdt::SessionInfo {
        conn: uuid::Uuid::new_v4(),
        user: "a".into(),
        can_write: true,
        authenticated: false,
        durable_acks: false,
        stateless: false,
    };
    let joined = tokio::time::timeout(WAIT, h.registry.join(&name("bug"), info, queue))
        .await
        .expect("the join ends instead of retrying forever");
    assert!(
        matches!(joined, Err(DocError::Unavailable(_))),
        "{:?}",
        joined.err()
    );
    assert!(!h.registry.is_loaded(&name("bug")));
    assert_eq!(h.hooks.count("loaded bug"), h.hooks.count("unloaded bug"));
}

/// A document created while the registry shuts down is either refused or stopped: none is
/// left running (the stop flag used to be checked outside the registry's lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_document_running() {
    for round in 0..20 {
        let h = harness(DocConfig::default());
        let mut joins = Vec::new();
        for i in 0..50 {
            let registry = h.registry.clone();
            joins.push(tokio::spawn(async move {
                let (queue, mut outbox) = weft_crdt::session_queue(weft_crdt::QueueLimits {
                    frames: 64,
                    bytes: usize::MAX,
                });
                let info = weft_crdt::SessionInfo {
                    conn: uuid::Uuid::new_v4(),
                    user: "racer".into(),
                    can_write: true,
                    authenticated: false,
                    durable_acks: false,
                    stateless: false,
                };
                let doc = name(&format!("race-{round}-{i}"));
                match registry.join(&doc, info, queue).await {
                    Err(error) => assert!(matches!(error, DocError::ShuttingDown), "{error}"),
                    Ok(session) => {
                        // Joined: the shutdown closes it.
                        let ended = tokio::time::timeout(WAIT, async {
                            while outbox.recv().await.is_some() {}
                        })
                        .await;
                        assert!(ended.is_ok(), "a session outlived the shutdown");
                        drop(session);
                    }
                }
            }));
        }
        tokio::task::yield_now().await;
        h.registry.shutdown().await;
        for join in joins {
            join.await.expect("join task");
        }
        assert_eq!(h.registry.loaded_count(), 0, "round {round}");
    }
}

/// A client's empty SyncStep2 on connect is nothing to store: it is never refused for the
/// size limit, even when the document is at the limit.
#[tokio::test(start_paused = true)]
async fn an_empty_update_is_not_refused_at_the_size_limit() {
    let store = Arc::new(MemoryStore::new());
    let state = Bytes::from(text_update(1, "exactly at the limit"));
    store
        .append(&name("full"), vec![state.clone()])
        .await
        .unwrap();
    let config = DocConfig {
        max_doc_bytes: state.len() as u64 + 1,
        ..DocConfig::default()
    };
    let h = harness_with(config, store, None);
    let mut client = h.join("full", "a", 64).await;
    client.sync().await;
    client.until("synced", |c| c.update_frames > 0).await;
    // What a y-websocket client sends after syncing when it has nothing new.
    client
        .send_frame(protocol::encode_sync_step2(&[0, 0]))
        .await;
    let answered = client.update_frames;
    client.sync().await;
    client
        .until("an answer: still open", |c| c.update_frames > answered)
        .await;
    assert_eq!(client.outbox.end_reason(), None);
    // A real update past the limit is refused.
    client.type_text("more").await;
    assert!(matches!(client.ended().await, CloseReason::Refused(_)));
}

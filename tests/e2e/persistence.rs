//! Durability: restarts, compaction, idle unload.

use std::time::Duration;

use weft_crdt::{DocName, DocStore};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_every_update() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let mut a = TestClient::connect_synced(&app.ws_url("durable")).await;
    let mut b = TestClient::connect_synced(&app.ws_url("durable")).await;
    for i in 0..200 {
        a.insert(0, &format!("{i};")).await;
    }
    let expected = a.text();
    b.pump_until("all edits", |c| c.text() == expected).await;
    drop((a, b));
    app.stop().await;

    let app = spawn_app(test_config(dir.path())).await;
    let c = TestClient::connect_synced(&app.ws_url("durable")).await;
    assert_eq!(c.text(), expected);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_state_and_shrinks_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.compact_after_updates = 25;
    let app = spawn_app(config).await;
    let mut a = TestClient::connect_synced(&app.ws_url("compact")).await;
    let mut b = TestClient::connect_synced(&app.ws_url("compact")).await;
    for i in 0..110 {
        a.insert(0, &format!("{i} ")).await;
        // One update per batch, so the log really counts 110 appends.
        b.pump_until("edit", |c| c.text().len() == a.text().len())
            .await;
    }
    let expected = a.state();
    drop((a, b));
    app.stop().await;

    let store = open_store(dir.path()).await;
    let stored = store.load(&DocName::new("compact").unwrap()).await.unwrap();
    assert!(stored.snapshot.is_some(), "compacted into a snapshot");
    assert!(
        stored.log.len() < 25,
        "log shrank to {} entries",
        stored.log.len()
    );
    assert_eq!(stored.next_pos, 110, "every append counted");
    drop(store);

    let app = spawn_app(test_config(dir.path())).await;
    let c = TestClient::connect_synced(&app.ws_url("compact")).await;
    assert_eq!(text_of(&c.state()), text_of(&expected));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_documents_unload_and_reload_identically() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.idle_unload = Duration::from_millis(200);
    let app = spawn_app(config).await;
    let name = DocName::new("idle").unwrap();
    let mut a = TestClient::connect_synced(&app.ws_url("idle")).await;
    let mut b = TestClient::connect_synced(&app.ws_url("idle")).await;
    a.insert(0, "remember me").await;
    b.pump_until("edit", |c| c.text() == "remember me").await;
    assert!(app.registry.is_loaded(&name));
    let before = a.state();
    drop((a, b));

    let deadline = tokio::time::Instant::now() + WAIT;
    while app.registry.is_loaded(&name) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "document never unloaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Unloading compacted the log into a snapshot.
    let stored = app.registry.store().load(&name).await.unwrap();
    assert!(stored.snapshot.is_some() && stored.log.is_empty());

    let c = TestClient::connect_synced(&app.ws_url("idle")).await;
    assert!(app.registry.is_loaded(&name));
    assert_eq!(text_of(&c.state()), text_of(&before));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_racing_to_open_a_document_load_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let mut first = TestClient::connect_synced(&app.ws_url("race")).await;
    let mut confirm = TestClient::connect_synced(&app.ws_url("race")).await;
    first.insert(0, "seed").await;
    confirm.pump_until("seed", |c| c.text() == "seed").await;
    drop((first, confirm));
    app.stop().await;

    let app = spawn_app(test_config(dir.path())).await;
    let url = app.ws_url("race");
    let clients = futures_util::future::join_all((0..20).map(|i| {
        let url = url.clone();
        async move {
            let mut c = TestClient::connect_synced(&url).await;
            c.insert(0, &format!("<{i}>")).await;
            c
        }
    }))
    .await;
    let mut clients = clients;
    for c in &mut clients {
        c.pump_until("all 20 edits", |c| c.text().matches('<').count() == 20)
            .await;
    }
    let text = clients[0].text();
    assert!(text.ends_with("seed"));
    assert!(clients.iter().all(|c| c.text() == text));
    assert_eq!(app.registry.loaded_count(), 1);
    app.stop().await;
}

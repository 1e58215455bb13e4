//! Collaboration: convergence, late joiners, awareness relay and removal, merged broadcasts.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_converge() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let url = app.ws_url("shared/notes");
    let mut a = TestClient::connect_synced(&url).await;
    let mut b = TestClient::connect_synced(&url).await;
    a.insert(0, "hello").await;
    b.insert(0, "world").await;
    a.pump_until("a sees b", |c| c.text().len() == 10).await;
    b.pump_until("b sees a", |c| c.text().len() == 10).await;
    assert_eq!(a.text(), b.text());
    assert!(a.text().contains("hello") && a.text().contains("world"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_receives_full_state() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let url = app.ws_url("late");
    let mut a = TestClient::connect_synced(&url).await;
    for i in 0..50 {
        a.insert(0, &format!("{i},")).await;
    }
    // Wait until the server has everything: a second client sees it all.
    let expected = a.text();
    let mut b = TestClient::connect_synced(&url).await;
    b.pump_until("all 50 edits", |c| c.text() == expected).await;
    let c = TestClient::connect_synced(&url).await;
    assert_eq!(c.text(), expected, "SyncStep2 alone carries the full state");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let mut a = TestClient::connect_synced(&app.ws_url("a")).await;
    let mut ab = TestClient::connect_synced(&app.ws_url("ab")).await;
    a.insert(0, "only in a").await;
    ab.insert(0, "only in ab").await;
    let late_a = TestClient::connect_synced(&app.ws_url("a")).await;
    let mut late_ab = TestClient::connect_synced(&app.ws_url("ab")).await;
    // The late joiners may have connected before the edits landed; pump until they arrive.
    let mut late_a = late_a;
    late_a
        .pump_until("a's edit", |c| !c.text().is_empty())
        .await;
    late_ab
        .pump_until("ab's edit", |c| !c.text().is_empty())
        .await;
    assert_eq!(late_a.text(), "only in a");
    assert_eq!(late_ab.text(), "only in ab");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awareness_is_relayed_and_removed_on_disconnect() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let url = app.ws_url("presence");
    let mut a = TestClient::connect_synced(&url).await;
    let mut b = TestClient::connect_synced(&url).await;
    a.send(awareness_frame(1001, 1, r#"{"user":{"name":"Ada"}}"#))
        .await;
    b.pump_until("b sees Ada", |c| c.awareness_clients() == vec![1001])
        .await;
    // The sender gets its own state echoed (y-websocket clients count it as a sign of life).
    a.pump_until("a's echo", |c| c.awareness_clients() == vec![1001])
        .await;

    // A late joiner receives the current states on connect.
    let mut c = TestClient::connect_synced(&url).await;
    c.pump_until("c sees Ada", |c| c.awareness_clients() == vec![1001])
        .await;

    // Query-awareness is answered with every state.
    let mut d = TestClient::connect_synced(&url).await;
    d.pump_until("d sees Ada", |c| c.awareness_clients() == vec![1001])
        .await;
    d.awareness = yrs::sync::awareness::Awareness::new(yrs::Doc::new());
    d.send(weft_crdt::protocol::encode_query_awareness().to_vec())
        .await;
    d.pump_until("query answered", |c| c.awareness_clients() == vec![1001])
        .await;

    // Ada's connection goes away: everyone is told her state is gone.
    drop(a);
    b.pump_until("b sees Ada leave", |c| c.awareness_clients().is_empty())
        .await;
    c.pump_until("c sees Ada leave", |c| c.awareness_clients().is_empty())
        .await;
    app.stop().await;
}

/// New clients are answered from a cached full state: it must follow every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_always_gets_the_latest_state() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let url = app.ws_url("cached");
    let mut writer = TestClient::connect_synced(&url).await;
    let mut watcher = TestClient::connect_synced(&url).await;
    for round in 0..5 {
        writer.insert(0, &format!("<{round}>")).await;
        let expected = writer.text();
        watcher
            .pump_until("the edit", |c| c.text() == expected)
            .await;
        // Two fresh clients in a row: the first may fill the cache, the second reads it.
        for _ in 0..2 {
            let fresh = TestClient::connect_synced(&url).await;
            assert_eq!(fresh.text(), expected, "round {round}");
        }
    }
    drop((writer, watcher));
    app.stop().await;

    // After a restart the first answer comes straight from the stored records.
    let app = spawn_app(test_config(dir.path())).await;
    let mut fresh = TestClient::connect_synced(&app.ws_url("cached")).await;
    assert_eq!(fresh.text(), "<4><3><2><1><0>");
    let mut second = TestClient::connect_synced(&app.ws_url("cached")).await;
    second.insert(0, "+").await;
    fresh
        .pump_until("the new edit", |c| c.text().starts_with('+'))
        .await;
    let third = TestClient::connect_synced(&app.ws_url("cached")).await;
    assert_eq!(third.text(), "+<4><3><2><1><0>");
    app.stop().await;
}

/// A server whose broadcast pacing is 1 ms per client (so at most one broadcast per 20 ms for
/// these 20+ clients), and 20 synced readers of document `name` on it.
struct BusyDocument {
    _dir: tempfile::TempDir,
    app: TestApp,
    url: String,
    readers: Vec<TestClient>,
}

impl BusyDocument {
    async fn open(name: &str) -> BusyDocument {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.broadcast_pace = Duration::from_millis(1);
        let app = spawn_app(config).await;
        let url = app.ws_url(name);
        let mut readers = Vec::new();
        for _ in 0..20 {
            readers.push(TestClient::connect_synced(&url).await);
        }
        BusyDocument {
            _dir: dir,
            app,
            url,
            readers,
        }
    }
}

/// A document with many clients that gets an update every 2 ms sends them merged into a few
/// frames (broadcast pacing: here 1 ms per client, so at most one broadcast per 20 ms), and every
/// client gets every update. Without pacing each update would arrive at an idle document and go
/// out in a frame of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_document_merges_a_burst_into_few_frames() {
    const BURST: usize = 20;
    let BusyDocument {
        _dir,
        app,
        url,
        mut readers,
    } = BusyDocument::open("busy").await;
    let mut writer = TestClient::connect_synced(&url).await;
    for i in 0..BURST {
        writer.insert(0, &format!("{i};")).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let expected = writer.text();
    for (n, reader) in readers.iter_mut().enumerate() {
        let frames = reader
            .count_frames_until(|_| true, |r| r.text() == expected)
            .await;
        assert!(
            frames <= BURST / 2,
            "reader {n} got {BURST} updates in {frames} frames: not merged"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_document_merges_cursor_moves_into_few_frames() {
    const MOVES: u32 = 20;
    let BusyDocument {
        _dir,
        app,
        url,
        mut readers,
    } = BusyDocument::open("cursors").await;
    // Two people move their cursors, as an editor reports every move.
    let mut ada = TestClient::connect_synced(&url).await;
    let mut bob = TestClient::connect_synced(&url).await;
    for clock in 1..=MOVES {
        let cursor = format!(r#"{{"cursor":{clock}}}"#);
        ada.send(awareness_frame(5001, clock, &cursor)).await;
        bob.send(awareness_frame(5002, clock, &cursor)).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let last = |reader: &TestClient, id: u64| {
        let client = yrs::ClientID::new(id);
        let state: Option<serde_json::Value> = reader.awareness.state(client);
        reader.awareness.meta(client).map(|(clock, _)| clock) == Some(MOVES)
            && state == Some(serde_json::json!({ "cursor": MOVES }))
    };
    for (n, reader) in readers.iter_mut().enumerate() {
        let awareness = |frame: &[u8]| frame.first() == Some(&1);
        let frames = reader
            .count_frames_until(awareness, |r| last(r, 5001) && last(r, 5002))
            .await;
        assert!(
            frames <= MOVES as usize,
            "reader {n} got {} cursor moves in {frames} frames: not merged",
            2 * MOVES
        );
    }
    let merged = metric(&app.addr.to_string(), "weft_awareness_frames_merged_total").await;
    assert!(merged > 0.0, "no merged awareness relays counted");
    app.stop().await;
}

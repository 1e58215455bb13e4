//! Hostile and unusual input beyond malformed messages: missing dependencies, continuation
//! abuse, half-open connections, strange document names.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use yrs::{ReadTxn, Text, Transact};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_with_missing_dependencies_wait_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    // Two consecutive edits by one author; the second depends on the first.
    let author = yrs::Doc::new();
    let text = author.get_or_insert_text("text");
    let first = {
        let mut txn = author.transact_mut();
        text.insert(&mut txn, 0, "first ");
        txn.encode_update_v1()
    };
    let second = {
        let mut txn = author.transact_mut();
        text.insert(&mut txn, 6, "second");
        txn.encode_update_v1()
    };
    let mut sender = TestClient::connect_synced(&app.ws_url("deps")).await;
    let mut watcher = TestClient::connect_synced(&app.ws_url("deps")).await;
    sender
        .send(weft_crdt::protocol::encode_update(&second).to_vec())
        .await;
    // Once the sender's next request is answered, the document has handled the update (one
    // mailbox, in order): it keeps it pending; nobody is disconnected, nothing is visible yet.
    sender.synced = false;
    let sv = sender.doc.transact().state_vector();
    sender
        .send(weft_crdt::protocol::encode_sync_step1(&sv).to_vec())
        .await;
    sender.pump_until("the answer", |c| c.synced).await;
    let early = TestClient::connect_synced(&app.ws_url("deps")).await;
    assert_eq!(early.text(), "");
    sender
        .send(weft_crdt::protocol::encode_update(&first).to_vec())
        .await;
    watcher
        .pump_until("both edits", |c| c.text() == "first second")
        .await;
    let late = TestClient::connect_synced(&app.ws_url("deps")).await;
    assert_eq!(late.text(), "first second");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_abuse_closes_only_the_offender() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.max_message_bytes = 64 * 1024;
    let app = spawn_app(config).await;
    let mut writer = TestClient::connect_synced(&app.ws_url("frag")).await;
    let mut watcher = TestClient::connect_synced(&app.ws_url("frag")).await;
    writer.insert(0, "base").await;
    watcher.pump_until("base", |c| c.text() == "base").await;

    // A continuation with no message to continue.
    let mut stray = TestClient::connect_synced(&app.ws_url("frag")).await;
    let frame = Frame::message(vec![0u8; 10], OpCode::Data(Data::Continue), true);
    let _ = stray.send_message(Message::Frame(frame)).await;
    let code = stray.expect_close().await;
    assert!(
        matches!(code, Some(1002) | None),
        "stray continuation closed ({code:?})"
    );

    // Endless fragments adding up past the message limit.
    let mut endless = TestClient::connect_synced(&app.ws_url("frag")).await;
    let start = Frame::message(vec![0u8; 16 * 1024], OpCode::Data(Data::Binary), false);
    let _ = endless.send_message(Message::Frame(start)).await;
    for _ in 0..8 {
        let more = Frame::message(vec![0u8; 16 * 1024], OpCode::Data(Data::Continue), false);
        if endless.send_message(Message::Frame(more)).await.is_err() {
            break;
        }
    }
    let code = endless.expect_close().await;
    assert!(
        matches!(code, Some(1009) | Some(1002) | None),
        "oversized fragments closed ({code:?})"
    );

    // A valid fragmented message is fine.
    let mut fragmented = TestClient::connect_synced(&app.ws_url("frag")).await;
    let update = {
        let doc = yrs::Doc::new();
        let t = doc.get_or_insert_text("text");
        let mut txn = doc.transact_mut();
        t.insert(&mut txn, 0, "!");
        txn.encode_state_as_update_v1(&yrs::StateVector::default())
    };
    let message = weft_crdt::protocol::encode_update(&update).to_vec();
    let (a, b) = message.split_at(message.len() / 2);
    fragmented
        .send_message(Message::Frame(Frame::message(
            a.to_vec(),
            OpCode::Data(Data::Binary),
            false,
        )))
        .await
        .unwrap();
    fragmented
        .send_message(Message::Frame(Frame::message(
            b.to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .await
        .unwrap();
    watcher
        .pump_until("the fragmented update", |c| c.text().contains('!'))
        .await;
    let fresh = TestClient::connect_synced(&app.ws_url("frag")).await;
    assert_eq!(fresh.text().len(), 5);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_are_closed_by_the_ping_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.ping_interval = Duration::from_millis(100);
    config.client_timeout = Duration::from_millis(400);
    config.max_connections_per_doc = 1;
    let app = spawn_app(config).await;
    // Connects, then goes silent: never reads, so never answers a ping.
    let silent = TestClient::connect(&app.ws_url("ping")).await;
    assert_eq!(
        refused_status(&app.ws_url("ping")).await,
        503,
        "the slot is taken"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tokio_tungstenite::connect_async(&app.ws_url("ping"))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the silent client was never dropped"
        );
    }
    drop(silent);
    app.stop().await;
}

/// Sends a raw upgrade request for `path` (bytes, unescaped) and returns the status code.
async fn raw_upgrade_status(addr: std::net::SocketAddr, path: &[u8]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = b"GET /".to_vec();
    request.extend_from_slice(path);
    request.extend_from_slice(
        b" HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    stream.write_all(&request).await.unwrap();
    let mut response = vec![0u8; 64];
    let n = stream.read(&mut response).await.unwrap_or(0);
    let line = String::from_utf8_lossy(&response[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strange_document_names_are_refused_or_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    for path in [
        &b"a\x00b"[..],
        b"caf\xc3\xa9",
        b"bad\xff\xfe",
        b"%2e%2e/x",
        b"a%00b",
    ] {
        let status = raw_upgrade_status(app.addr, path).await;
        assert_eq!(status, 400, "{:?}", String::from_utf8_lossy(path));
    }
    // Path-like names are just names: stored safely, never touching the filesystem, and never
    // sharing state with a name that prefixes them.
    let mut dots = TestClient::connect_synced(&app.ws_url("a/..b")).await;
    dots.insert(0, "dots").await;
    let mut plain = TestClient::connect_synced(&app.ws_url("a")).await;
    plain.insert(0, "plain").await;
    let mut longer = TestClient::connect_synced(&app.ws_url("ab")).await;
    longer.insert(0, "longer").await;
    for (name, text) in [("a/..b", "dots"), ("a", "plain"), ("ab", "longer")] {
        let mut c = TestClient::connect_synced(&app.ws_url(name)).await;
        c.pump_until(name, |c| !c.text().is_empty()).await;
        assert_eq!(c.text(), text);
    }
    app.stop().await;
}

/// Found by `cargo fuzz run session`: two updates that decode but make yrs 0.28 panic while
/// applying the second (`BlockStore::push` unwraps a block lookup that fails). The offender is
/// closed, the document reloads from storage, the other clients reconnect and nothing stored is
/// lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_makes_yrs_panic_does_not_take_the_document_down() {
    let dir = tempfile::tempdir().unwrap();
    let (app, writer, watcher) = spawn_with_base(test_config(dir.path()), "poison").await;

    let frames = [
        vec![
            0, 2, 31, 2, 2, 65, 65, 0, 1, 1, 1, 1, 1, 1, 1, 1, 59, 1, 1, 0, 255, 255, 255, 255, 9,
            1, 1, 1, 1, 1, 1, 1, 169, 0,
        ],
        vec![
            0, 2, 31, 2, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 59, 1, 1, 0, 1, 1, 1, 1, 9, 1, 1, 1,
            1, 1, 1, 1, 169, 0,
        ],
    ];
    let mut evil = TestClient::connect_synced(&app.ws_url("poison")).await;
    for frame in frames {
        evil.send(frame).await;
    }
    let code = evil.expect_close().await;
    assert!(
        matches!(code, Some(1007) | Some(1011)),
        "offender closed ({code:?})"
    );

    // The document comes back from storage, unchanged; new edits flow again.
    let fresh = TestClient::connect_synced(&app.ws_url("poison")).await;
    assert_eq!(fresh.text(), "base");
    assert_edits_flow_after_reload(&app, "poison", fresh).await;
    drop((writer, watcher));
    app.stop().await;
}

/// Found by `cargo fuzz run session`: yrs integrates an update block by block and returns an
/// error at the first bad one (here an invalid parent), with the blocks before it already in the
/// document. That half was never stored nor broadcast, so it must never be served either: the
/// document reloads from storage, as after a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_applied_update_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (app, writer, watcher) = spawn_with_base(test_config(dir.path()), "half").await;

    let accepted = vec![
        0, 2, 31, 2, 2, 65, 65, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 233, 255, 255, 41, 1, 1, 65, 1, 1,
        1, 1, 115, 241, 1, 169, 39,
    ];
    let rejected = vec![
        0, 2, 31, 2, 2, 69, 0, 0, 69, 1, 1, 1, 1, 1, 1, 1, 1, 52, 1, 0, 2, 1, 1, 1, 33, 1, 33, 1,
        1, 1, 1, 1, 169, 0,
    ];
    let mut evil = TestClient::connect_synced(&app.ws_url("half")).await;
    evil.send(accepted).await;
    evil.send(rejected).await;
    let code = evil.expect_close().await;
    assert_eq!(
        code,
        Some(1007),
        "the offender is closed as sending invalid data"
    );

    // Client 69's blocks precede the bad one in the rejected update: yrs had integrated them.
    let fresh = TestClient::connect_synced(&app.ws_url("half")).await;
    assert_eq!(fresh.text(), "base");
    let served = fresh.doc.transact().state_vector();
    assert_eq!(
        served.get(&yrs::ClientID::new(69)),
        0,
        "nothing of the rejected update is served"
    );
    assert_edits_flow_after_reload(&app, "half", fresh).await;
    drop((writer, watcher));
    app.stop().await;
}

/// Found by `cargo fuzz run session`: an update that yrs accepts into its pending store, after
/// which it panics whenever it encodes the document with that pending part (it cannot decode its
/// own encoding of it). That used to take the document's actor down on the next client's sync.
/// Now a joining client gets the integrated state and everyone carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_state_yrs_cannot_encode_does_not_stop_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let (app, mut writer, mut watcher) = spawn_with_base(test_config(dir.path()), "pending").await;

    let mut evil = TestClient::connect_synced(&app.ws_url("pending")).await;
    evil.send(vec![
        0, 2, 31, 2, 2, 1, 1, 0, 69, 1, 1, 1, 1, 1, 1, 0, 59, 2, 65, 251, 65, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 169, 0,
    ])
    .await;
    // Let the update land before the next client asks for the whole document.
    evil.pump_one(Duration::from_millis(200)).await;

    let mut fresh = TestClient::connect_synced(&app.ws_url("pending")).await;
    assert_eq!(fresh.text(), "base");
    fresh.insert(4, "+after").await;
    watcher
        .pump_until("an edit after the sync", |c| c.text() == "base+after")
        .await;
    writer
        .pump_until("an edit after the sync", |c| c.text() == "base+after")
        .await;
    assert!(watcher.closed.is_none() && writer.closed.is_none());
    app.stop().await;
}

/// After a document reloaded from storage (its clients were closed): an edit from `fresh`, a
/// client that synced since, reaches another new client.
async fn assert_edits_flow_after_reload(app: &TestApp, doc: &str, mut fresh: TestClient) {
    let mut other = TestClient::connect_synced(&app.ws_url(doc)).await;
    fresh.insert(4, "+after").await;
    other
        .pump_until("a later edit", |c| c.text() == "base+after")
        .await;
}

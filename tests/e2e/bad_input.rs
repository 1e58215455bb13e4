//! Bad input closes only the offending connection; the document and other clients carry on.

use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_close_only_the_offender() {
    let dir = tempfile::tempdir().unwrap();
    let (app, mut writer, mut watcher) = spawn_with_base(test_config(dir.path()), "victim").await;
    let valid_update = {
        let doc = yrs::Doc::new();
        use yrs::{ReadTxn, Text, Transact};
        let text = doc.get_or_insert_text("text");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "EVIL");
        txn.encode_state_as_update_v1(&yrs::StateVector::default())
    };
    let mut truncated_update = weft_crdt::protocol::encode_update(&valid_update).to_vec();
    truncated_update.truncate(truncated_update.len() - 3);
    let mut trailing = weft_crdt::protocol::encode_update(&valid_update).to_vec();
    trailing.extend_from_slice(&[1, 2, 3]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty frame", vec![]),
        ("unknown message type", vec![7, 0]),
        ("unknown sync type", vec![0, 9, 0]),
        ("truncated varint", vec![0x80]),
        ("length past the frame", vec![0, 2, 0x7f, 1, 2, 3]),
        ("truncated update", truncated_update),
        ("trailing bytes", trailing),
        (
            "garbage update",
            vec![0, 2, 5, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
        (
            "awareness with invalid JSON",
            awareness_frame(7, 1, "{not json"),
        ),
        (
            "awareness with a gigantic count",
            vec![1, 6, 0xff, 0xff, 0xff, 0xff, 0x0f, 0],
        ),
    ];
    for (what, frame) in cases {
        let mut bad = TestClient::connect_synced(&app.ws_url("victim")).await;
        bad.send(frame).await;
        let code = bad.expect_close().await;
        assert_eq!(code, Some(1007), "{what}: closed with 'invalid payload'");
    }
    assert_unharmed(&app, "victim", &mut writer, &mut watcher).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_frames_and_oversize_frames_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.max_message_bytes = 64 * 1024;
    let (app, mut writer, mut watcher) = spawn_with_base(config, "limits").await;

    let mut bad = TestClient::connect_synced(&app.ws_url("limits")).await;
    bad.send_message(Message::Text("hello".into()))
        .await
        .unwrap();
    assert_eq!(bad.expect_close().await, Some(1003));

    let mut big = TestClient::connect_synced(&app.ws_url("limits")).await;
    let _ = big
        .send_message(Message::Binary(vec![0u8; 65 * 1024].into()))
        .await;
    assert_eq!(big.expect_close().await, Some(1009));

    assert_unharmed(&app, "limits", &mut writer, &mut watcher).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_document_names_are_refused_before_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let too_long = "x".repeat(257);
    for name in [
        "%2e%2e",
        "a%00b",
        "sp%20ace",
        "caf%C3%A9",
        too_long.as_str(),
        "",
    ] {
        let url = app.ws_url(name);
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 400, "{name:?}")
            }
            other => panic!("{name:?}: expected HTTP 400, got {:?}", other.map(|_| ())),
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_not_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.outbound_queue = 8;
    let (app, mut writer, mut watcher) = spawn_with_base(config, "slow").await;
    // Connects, then never reads again.
    let mut sleeper = TestClient::connect_synced(&app.ws_url("slow")).await;
    // Enough data to fill the socket buffers (about 10 MB on loopback) and then the 8-frame
    // queue. One edit at a time, so a busy machine cannot merge them into a few big frames.
    let chunk = "y".repeat(32 * 1024);
    let chunks = 800;
    for i in 1..=chunks {
        writer.insert(0, &chunk).await;
        let expected_len = 4 + i * chunk.len();
        watcher
            .pump_until("the edit", |c| c.text().len() == expected_len)
            .await;
    }
    // The sleeper was dropped by the document: its connection ends with 1013 (try again).
    let code = sleeper.expect_close().await;
    assert_eq!(code, Some(1013));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_keep_its_connection_slot() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.outbound_queue = 8;
    config.max_connections_per_doc = 3;
    config.client_timeout = std::time::Duration::from_secs(2);
    // No pings during the test: only the kernel can find the stuck client.
    config.ping_interval = std::time::Duration::from_secs(3600);
    let (app, mut writer, mut watcher) = spawn_with_base(config, "stuck").await;
    // Connects, then never reads nor closes.
    let _sleeper = TestClient::connect_synced(&app.ws_url("stuck")).await;
    assert_eq!(
        refused_status(&app.ws_url("stuck")).await,
        503,
        "document full"
    );
    // Fill the sleeper's socket buffers and its queue (as in the test above).
    let chunk = "z".repeat(32 * 1024);
    for i in 1..=800 {
        writer.insert(0, &chunk).await;
        let expected_len = 4 + i * chunk.len();
        watcher
            .pump_until("the edit", |c| c.text().len() == expected_len)
            .await;
    }
    // Nothing sent to the sleeper is acknowledged any more: soon after the client timeout the
    // kernel drops the connection (TCP_USER_TIMEOUT) and its slot is free for someone else.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match TestClient::try_connect(&app.ws_url("stuck")).await {
            Ok(_) => break,
            Err(error) if std::time::Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(error) => panic!("the stuck client still holds its slot: {error}"),
        }
    }
    app.stop().await;
}

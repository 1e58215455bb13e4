//! Damaged storage: records that do not decode are reported with the document's name and
//! skipped; the server serves every other document, and `weft fsck` lists the damage. A client
//! answered from a damaged record before the rebuild found it is closed and told to reconnect.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;
use weft_crdt::{protocol, DocName, DocStore};
use yrs::StateVector;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_records_are_skipped_reported_and_listed_by_fsck() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    for (doc, text) in [
        ("good", "all fine"),
        ("hurt", "mostly fine"),
        ("broken", "lost"),
    ] {
        let mut writer = TestClient::connect_synced(&app.ws_url(doc)).await;
        let mut reader = TestClient::connect_synced(&app.ws_url(doc)).await;
        writer.insert(0, text).await;
        reader.pump_until(doc, |c| c.text() == text).await;
    }
    app.stop().await;

    // Damage two documents directly in the store.
    {
        let store = open_store(dir.path()).await;
        let hurt = DocName::new("hurt").unwrap();
        store
            .append(&hurt, vec![Bytes::from_static(b"\xff\xfe torn write")])
            .await
            .unwrap();
        let broken = DocName::new("broken").unwrap();
        let next = store.load(&broken).await.unwrap().next_pos;
        store
            .compact(&broken, Bytes::from_static(b"not a snapshot"), next)
            .await
            .unwrap();
    }

    let fsck = |json: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_weft"));
        cmd.args(["fsck", "--data-dir"]).arg(dir.path());
        if json {
            cmd.arg("--json");
        }
        cmd.output().expect("run weft fsck")
    };
    let mut report = fsck(false);
    for _ in 0..50 {
        // The store lock may still be held for a moment by the stopped server's writer thread.
        if report.status.code() != Some(1) || !report.stdout.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        report = fsck(false);
    }
    let out = String::from_utf8_lossy(&report.stdout);
    assert_eq!(
        report.status.code(),
        Some(1),
        "fsck fails on damage:\n{out}"
    );
    assert!(out.contains("DAMAGED hurt"), "{out}");
    assert!(out.contains("DAMAGED broken"), "{out}");
    assert!(!out.contains("DAMAGED good"), "{out}");
    assert!(out.contains("3 documents checked, 2 damaged"), "{out}");
    let json: serde_json::Value = serde_json::from_slice(&fsck(true).stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);

    // The server starts and serves everything that can be served.
    let app = spawn_app(test_config(dir.path())).await;
    let good = TestClient::connect_synced(&app.ws_url("good")).await;
    assert_eq!(good.text(), "all fine");
    let mut hurt = TestClient::connect_synced(&app.ws_url("hurt")).await;
    assert_eq!(hurt.text(), "mostly fine", "the torn record is skipped");
    // A document held in one record is sent as stored, before it is decoded: the first client
    // gets the damaged bytes, then (once the rebuild finds them damaged) a close telling it to
    // reconnect; nothing else happens to it.
    let mut first = TestClient::connect(&app.ws_url("broken")).await;
    first
        .send(protocol::encode_sync_step1(&StateVector::default()).to_vec())
        .await;
    let mut got_stored_bytes = false;
    let close = loop {
        match first.next_raw().await {
            Some(Message::Binary(frame)) => {
                got_stored_bytes |= frame[..] == protocol::encode_sync_step2(b"not a snapshot")[..];
            }
            Some(Message::Close(frame)) => break frame,
            Some(_) => {}
            None => panic!("connection ended without a close frame"),
        }
    };
    assert!(got_stored_bytes, "answered from the stored record");
    let close = close.expect("a close frame with a reason");
    assert_eq!(u16::from(close.code), 1011);
    assert!(close.reason.contains("damaged"), "{}", close.reason);
    let broken = TestClient::connect_synced(&app.ws_url("broken")).await;
    assert_eq!(
        broken.text(),
        "",
        "what the damaged snapshot held is gone, nothing else"
    );
    let mut other = TestClient::connect_synced(&app.ws_url("hurt")).await;
    hurt.insert(0, "still ").await;
    other
        .pump_until("a new edit", |c| c.text() == "still mostly fine")
        .await;
    app.stop().await;
}

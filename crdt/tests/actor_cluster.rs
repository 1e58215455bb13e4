//! The document actor in a cluster, with a fake fan-out standing in for the other nodes (they
//! write to the shared store and say so through the document's inbox): resync after lost
//! messages, a damaged record met on resync, a full mailbox that must not hold up the
//! backend, compaction that keeps other nodes' records, publishing only what is durable.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use support::*;
use weft_crdt::fanout::{Delivered, RemoteEvent, RemoteMessage};
use weft_crdt::protocol;
use weft_crdt::{DocConfig, MemoryStore};
use yrs::updates::decoder::Decode;
use yrs::{ReadTxn, Transact};

fn cluster(config: DocConfig) -> (Harness, Arc<FakeCluster>) {
    let fake = Arc::new(FakeCluster::default());
    let h = harness_with(config, Arc::new(MemoryStore::new()), Some(fake.clone()));
    (h, fake)
}

/// "Another node" stores an update and tells this one about it.
async fn other_node_writes(
    h: &Harness,
    fake: &FakeCluster,
    doc: &str,
    update: Vec<u8>,
    tell: bool,
) {
    h.store
        .append(&name(doc), vec![Bytes::from(update.clone())])
        .await
        .expect("append");
    if tell {
        let event = RemoteEvent::Message {
            from: uuid::Uuid::from_u128(7),
            message: RemoteMessage::Protocol(protocol::encode_update(&update)),
        };
        assert_eq!(fake.inbox(doc).deliver(event), Delivered::Queued);
    }
}

#[tokio::test(start_paused = true)]
async fn another_nodes_updates_reach_local_sessions_and_resync_finds_lost_ones() {
    let (h, fake) = cluster(DocConfig::default());
    let mut local = h.join("shared", "local", 64).await;
    local.sync().await;
    other_node_writes(&h, &fake, "shared", text_update(70, "told "), true).await;
    local
        .until("the told update", |c| c.text().contains("told"))
        .await;
    // Published by the other node already: this node stores and publishes nothing of it.
    assert_eq!(h.store.load(&name("shared")).await.unwrap().log.len(), 1);
    assert!(fake.published.lock().unwrap().iter().all(|(_, m)| match m {
        RemoteMessage::Protocol(frame) => !frame.starts_with(&[0, 2]),
        RemoteMessage::Update { .. } => false,
        RemoteMessage::Deleted => true,
    }));
    // An update whose message was lost: a resync finds it in the store.
    other_node_writes(&h, &fake, "shared", text_update(71, "lost "), false).await;
    assert_eq!(
        fake.inbox("shared").deliver(RemoteEvent::Resync),
        Delivered::Queued
    );
    local
        .until("the lost update", |c| c.text().contains("lost"))
        .await;
}

/// A record yrs rejects after integrating part of it, met while re-reading the store, never
/// touches the live document (it used to be applied to it, half and all).
#[tokio::test(start_paused = true)]
async fn a_damaged_record_met_on_resync_is_left_out_whole() {
    let (h, fake) = cluster(DocConfig::default());
    let mut local = h.join("resync", "local", 64).await;
    local.sync().await;
    local.until("synced", |c| c.update_frames > 0).await;
    // The pair from tests/e2e/hostile.rs, as records another node's store might hold.
    let accepted: Vec<u8> = vec![
        0, 2, 31, 2, 2, 65, 65, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 233, 255, 255, 41, 1, 1, 65, 1, 1,
        1, 1, 115, 241, 1, 169, 39,
    ];
    let rejected: Vec<u8> = vec![
        0, 2, 31, 2, 2, 69, 0, 0, 69, 1, 1, 1, 1, 1, 1, 1, 1, 52, 1, 0, 2, 1, 1, 1, 33, 1, 33, 1,
        1, 1, 1, 1, 169, 0,
    ];
    for frame in [accepted, rejected] {
        // Stored as update records: the frame minus its 3-byte message header.
        other_node_writes(&h, &fake, "resync", frame[3..].to_vec(), false).await;
    }
    assert_eq!(
        fake.inbox("resync").deliver(RemoteEvent::Resync),
        Delivered::Queued
    );
    // Nothing of it anywhere in the document, pending updates included.
    let (integrated, encoded) = h
        .registry
        .read(&name("resync"), |doc| {
            let txn = doc.transact();
            let full = txn.encode_state_as_update_v1(&yrs::StateVector::default());
            let encoded = yrs::Update::decode_v1(&full)
                .expect("decodes")
                .state_vector();
            (txn.state_vector(), encoded)
        })
        .await
        .expect("read");
    let client = yrs::ClientID::new(69);
    assert_eq!(integrated.get(&client), 0, "half of the rejected record");
    assert_eq!(encoded.get(&client), 0, "half of the rejected record");
    // The session carries on.
    local.type_text("more ").await;
    local.sync().await;
    local.until("its edit", |c| c.text() == "more ").await;
}

/// The backend hands events over without waiting: a document whose mailbox is full does not
/// hold up another, and what it missed comes from the store once it has room.
#[tokio::test(start_paused = true)]
async fn a_full_mailbox_defers_to_a_resync_instead_of_blocking() {
    let config = DocConfig {
        mailbox: 4,
        max_batch: 4,
        ..DocConfig::default()
    };
    let (h, fake) = cluster(config);
    let mut busy = h.join("busy", "busy", 256).await;
    let mut calm = h.join("calm", "calm", 256).await;
    busy.sync().await;
    calm.sync().await;
    busy.until("synced", |c| c.update_frames > 0).await;
    calm.until("synced", |c| c.update_frames > 0).await;
    // Without yielding, the busy document's actor cannot run: its mailbox fills.
    let busy_inbox = fake.inbox("busy");
    let mut deferred = 0;
    for i in 0..10 {
        let update = text_update(100 + i, &format!("<{i}>"));
        h.store
            .append(&name("busy"), vec![Bytes::from(update.clone())])
            .await
            .unwrap();
        let event = RemoteEvent::Message {
            from: uuid::Uuid::from_u128(7),
            message: RemoteMessage::Protocol(protocol::encode_update(&update)),
        };
        if busy_inbox.deliver(event) == Delivered::Deferred {
            deferred += 1;
        }
    }
    assert!(deferred > 0, "the mailbox filled up");
    let event = RemoteEvent::Message {
        from: uuid::Uuid::from_u128(7),
        message: RemoteMessage::Protocol(protocol::encode_update(&text_update(200, "calm"))),
    };
    assert_eq!(
        fake.inbox("calm").deliver(event),
        Delivered::Queued,
        "not held up"
    );
    calm.until("its update", |c| c.text() == "calm").await;
    busy.until("every update, deferred ones from the store", |c| {
        (0..10).all(|i| c.text().contains(&format!("<{i}>")))
    })
    .await;
}

/// In a cluster a document compacts only what it has seen: it catches up with the store first,
/// so another node's record appended just before is in the snapshot or still in the log.
#[tokio::test(start_paused = true)]
async fn compaction_in_a_cluster_keeps_other_nodes_records() {
    let config = DocConfig {
        compact_after_updates: 3,
        ..DocConfig::default()
    };
    let (h, fake) = cluster(config);
    let mut local = h.join("compact", "local", 256).await;
    local.sync().await;
    for i in 0..10 {
        // Another node's record this node never hears about ...
        other_node_writes(
            &h,
            &fake,
            "compact",
            text_update(300 + i, &format!("[{i}]")),
            false,
        )
        .await;
        // ... and this node's own edits, which trigger compaction.
        local.type_text(&format!("<{i}>")).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Catching up before each compaction (after every third edit) brought the unheard records
    // up to the last one in.
    local
        .until("the unheard updates, from the store", |c| {
            (0..9).all(|i| c.text().contains(&format!("[{i}]")))
        })
        .await;
    let stored = h.store.load(&name("compact")).await.unwrap();
    assert!(stored.snapshot.is_some(), "compacted");
    let text = stored_text(h.store.as_ref(), "compact").await;
    for i in 0..10 {
        assert!(
            text.contains(&format!("[{i}]")),
            "another node's record {i} lost"
        );
        assert!(text.contains(&format!("<{i}>")), "own record {i} lost");
    }
}

//! The document actor's delivery, without sockets and under a paused clock: broadcast pacing,
//! coalescing while clients are behind, slow clients closed (never silently dropped), close
//! reasons that survive a full queue, durability before sending, read-only sessions.

mod support;

use std::time::Duration;

use support::*;
use weft_crdt::protocol::ClientMessage;
use weft_crdt::{CloseReason, DocConfig};

/// A document with enough sessions for pacing (16+).
async fn busy_document(h: &Harness, doc: &str, readers: usize) -> (Client, Vec<Client>) {
    let mut writer = h.join(doc, "writer", 4096).await;
    writer.sync().await;
    let mut others = Vec::new();
    for i in 0..readers {
        let mut reader = h.join(doc, &format!("reader{i}"), 4096).await;
        reader.sync().await;
        others.push(reader);
    }
    // Everyone is synced (the greeting and SyncStep2 are queued).
    writer.until("synced", |c| c.update_frames > 0).await;
    for reader in &mut others {
        reader.until("synced", |c| c.update_frames > 0).await;
    }
    (writer, others)
}

#[tokio::test(start_paused = true)]
async fn pacing_keeps_a_busy_documents_broadcasts_apart() {
    let config = DocConfig {
        broadcast_pace: Duration::from_micros(100),
        coalesce_max: Duration::ZERO,
        ..DocConfig::default()
    };
    let h = harness(config);
    let (mut writer, mut readers) = busy_document(&h, "paced", 19).await;
    let reader = &mut readers[0];
    // 20 sessions x 100 us: broadcasts at least 2 ms apart.
    let pace = Duration::from_millis(2);
    let mut arrivals = Vec::new();
    for i in 0..10 {
        writer.type_text(&format!("<{i}>")).await;
        // Typing faster than the pace.
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let before = reader.update_frames;
    while !(0..10).all(|i| reader.text().contains(&format!("<{i}>"))) {
        reader.next().await;
        arrivals.push(tokio::time::Instant::now());
    }
    let frames = reader.update_frames - before;
    assert!(frames < 10, "10 updates arrived merged, in {frames} frames");
    arrivals.dedup();
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] >= pace,
            "broadcasts {:?} apart",
            pair[1] - pair[0]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_quiet_document_sends_at_once() {
    let config = DocConfig {
        broadcast_pace: Duration::from_micros(100),
        ..DocConfig::default()
    };
    let h = harness(config);
    let (mut writer, mut readers) = busy_document(&h, "quiet", 19).await;
    writer.type_text("one").await;
    for reader in &mut readers {
        reader.until("one", |c| c.text() == "one").await;
    }
    // Long after the last broadcast, the next update is not held back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = tokio::time::Instant::now();
    writer.type_text("two ").await;
    readers[0].until("two", |c| c.text() == "two one").await;
    assert_eq!(tokio::time::Instant::now(), sent, "no delay at all");
}

/// Updates that arrive while many sessions still have earlier frames queued wait (at most
/// `coalesce_max`) and go out together.
#[tokio::test(start_paused = true)]
async fn updates_coalesce_while_sessions_are_behind() {
    for (coalesce_max, expected_frames) in [(Duration::from_millis(5), 1), (Duration::ZERO, 2)] {
        let config = DocConfig {
            broadcast_pace: Duration::ZERO,
            coalesce_max,
            ..DocConfig::default()
        };
        let h = harness(config);
        let (mut writer, mut readers) = busy_document(&h, "coalesce", 19).await;
        writer.type_text("a").await;
        // Nobody reads: every session is behind once "a" is queued for it.
        tokio::time::sleep(Duration::from_micros(100)).await;
        writer.type_text("b").await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        writer.type_text("c").await;
        let reader = &mut readers[0];
        reader.until("a", |c| c.text().contains('a')).await;
        let before = reader.update_frames;
        reader.until("b and c", |c| c.text() == "cba").await;
        assert_eq!(
            reader.update_frames - before,
            expected_frames,
            "with coalesce_max {coalesce_max:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_closed_and_the_others_carry_on() {
    let h = harness(DocConfig::default());
    let mut writer = h.join("slow", "writer", 64).await;
    let mut sleeper = h.join("slow", "sleeper", 4).await;
    let mut reader = h.join("slow", "reader", 64).await;
    for i in 0..10 {
        writer.type_text(&format!("<{i}>")).await;
        // Separate batches: one frame each.
        reader
            .until("the update", |c| c.text().contains(&format!("<{i}>")))
            .await;
    }
    assert_eq!(sleeper.ended().await, CloseReason::TooSlow);
    assert!(h.hooks.count("slow slow") == 1, "reported as a slow client");
    // Nothing it was sent is lost: what it had queued came first, then the close.
    writer.type_text("after").await;
    reader
        .until("after", |c| c.text().starts_with("after"))
        .await;
}

/// A close reason travels beside the queue: a full queue does not turn "deleted" into "too
/// slow" (it used to be queued behind the frames, and dropped when they filled the queue).
#[tokio::test(start_paused = true)]
async fn the_real_close_reason_survives_a_full_queue() {
    let h = harness(DocConfig::default());
    let mut writer = h.join("full", "writer", 64).await;
    writer.type_text("x").await;
    writer.sync().await;
    writer.until("stored", |c| c.update_frames > 0).await;
    // Its greeting (SyncStep1) fills a queue of one frame exactly.
    let mut full = h.join("full", "full", 1).await;
    assert!(h.registry.delete(&name("full")).await.expect("delete"));
    assert_eq!(full.ended().await, CloseReason::Deleted);
    assert_eq!(writer.ended().await, CloseReason::Deleted);
}

#[tokio::test(start_paused = true)]
async fn nothing_is_sent_before_it_is_stored() {
    let gated = std::sync::Arc::new(GatedStore::default());
    let h = harness_with(DocConfig::default(), gated.clone(), None);
    let mut writer = h.join("durable", "alice", 64).await;
    let mut reader = h.join("durable", "bob", 64).await;
    reader.sync().await;
    reader.until("synced", |c| c.update_frames > 0).await;
    gated.close();
    writer.type_text("stored first").await;
    // The append is held: a long time passes and the reader gets nothing of it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    reader.drain();
    assert_eq!(reader.text(), "", "sent before it was stored");
    assert_eq!(h.hooks.count("changed"), 0);
    gated.open();
    reader
        .until("the update", |c| c.text() == "stored first")
        .await;
    assert_eq!(
        stored_text(h.store.as_ref(), "durable").await,
        "stored first"
    );
    assert_eq!(h.hooks.count("changed durable 1"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_read_only_session_is_told_and_changes_nothing() {
    let h = harness(DocConfig::default());
    let mut viewer = h.join_as("ro", "viewer", 64, false).await;
    let mut writer = h.join("ro", "writer", 64).await;
    viewer.type_text("sneaky").await;
    loop {
        match viewer.next().await.expect("open") {
            ClientMessage::Auth => break,
            _ => continue,
        }
    }
    writer.type_text("real").await;
    viewer
        .until("the real edit", |c| c.text().contains("real"))
        .await;
    assert_eq!(stored_text(h.store.as_ref(), "ro").await, "real");
}

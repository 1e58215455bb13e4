//! Criterion benchmarks of Weft's hot paths: message decode/encode, apply + broadcast of one
//! update to 1,000 sessions, a durable sled append of a burst, compaction, and loading a large
//! document (the automerge-paper trace, see `benches/data/README.md`).
//!
//! Run with `cargo bench --bench hot_paths`. Compare figures only against runs made in the same
//! session on the same machine.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use weft_crdt::protocol::{self, decode_client_message};
use weft_crdt::{
    session_queue, DocConfig, DocName, DocStore, MemoryStore, QueueLimits, Registry, SessionInfo,
};
use weft_store_sled::SledStore;
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Text, Transact, Update};

#[path = "../src/bin/weft-load/trace.rs"]
mod trace;

/// A keystroke-sized update (one character typed into a document that already has a few).
fn small_update() -> Vec<u8> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text("text");
    text.insert(&mut doc.transact_mut(), 0, "hello world");
    let mut txn = doc.transact_mut();
    let before = txn.state_vector();
    text.insert(&mut txn, 5, ",");
    txn.encode_state_as_update_v1(&before)
}

/// The automerge-paper trace replayed into a yrs document; returns its encoded state.
fn automerge_paper_state() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/data/automerge-paper.json.gz"
    );
    trace::replay_trace(std::path::Path::new(path)).expect("replay the trace")
}

fn protocol_codec(c: &mut Criterion) {
    let update = small_update();
    let frame = protocol::encode_update(&update);
    let mut group = c.benchmark_group("protocol");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode update frame", |b| {
        b.iter(|| decode_client_message(frame.clone()).expect("valid"))
    });
    group.bench_function("encode update frame", |b| {
        b.iter(|| protocol::encode_update(&update))
    });
    group.finish();
}

fn broadcast_to_1000(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        DocConfig::default(),
        rt.handle().clone(),
    );
    let name = DocName::new("bench").expect("name");
    let mut inboxes = Vec::new();
    let mut sessions = rt.block_on(async {
        let mut sessions = Vec::new();
        for i in 0..1000u128 {
            let (queue, outbox) = session_queue(QueueLimits {
                frames: 4096,
                bytes: usize::MAX,
            });
            let info = SessionInfo {
                conn: uuid::Uuid::from_u128(i),
                user: "bench".into(),
                can_write: true,
                authenticated: false,
                durable_acks: false,
                stateless: false,
            };
            sessions.push(registry.join(&name, info, queue).await.expect("join"));
            inboxes.push(outbox);
        }
        sessions
    });
    let doc = Doc::new();
    let text = doc.get_or_insert_text("text");
    let mut group = c.benchmark_group("document");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("apply + broadcast one update to 1,000 sessions", |b| {
        b.iter(|| {
            let update = {
                let mut txn = doc.transact_mut();
                let before = txn.state_vector();
                text.push(&mut txn, "x");
                txn.encode_state_as_update_v1(&before)
            };
            let message = decode_client_message(protocol::encode_update(&update)).expect("valid");
            rt.block_on(async {
                sessions[0].send_async(message).await.expect("sent");
                // Session 999 received it: everyone did (the actor delivers in one pass).
                loop {
                    match inboxes[999].recv().await {
                        Some(f) if f.starts_with(&[0, 2]) => break,
                        Some(_) => continue,
                        None => panic!("session dropped"),
                    }
                }
            });
            for inbox in &mut inboxes[..999] {
                while inbox.try_recv().is_some() {}
            }
        })
    });
    group.finish();
}

fn sled_store(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("sled");
    let name = DocName::new("bench").expect("name");
    let burst: Vec<Bytes> = (0..100).map(|_| Bytes::from(small_update())).collect();
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(100));
    group.bench_function("sled append + flush of a 100-update burst", |b| {
        b.iter(|| {
            rt.block_on(store.append(&name, burst.clone()))
                .expect("append");
        })
    });
    group.finish();

    let state = automerge_paper_state();
    let mut group = c.benchmark_group("large document (automerge-paper)");
    group.sample_size(20);
    let doc = Doc::new();
    doc.transact_mut()
        .apply_update(Update::decode_v1(&state).expect("decode"))
        .expect("apply");
    let mut compactions = 0u64;
    group.bench_function("compaction: encode state + atomic sled write", |b| {
        b.iter(|| {
            let snapshot = doc
                .transact()
                .encode_state_as_update_v1(&StateVector::default());
            // A snapshot only replaces one that covers less: a fresh name each time.
            compactions += 1;
            let name = DocName::new(&format!("compacted-{compactions}")).expect("name");
            rt.block_on(store.compact(&name, Bytes::from(snapshot), 1))
                .expect("compact");
        })
    });
    group.bench_function("load: decode + apply the stored state", |b| {
        b.iter_batched(
            Doc::new,
            |fresh| {
                fresh
                    .transact_mut()
                    .apply_update(Update::decode_v1(&state).expect("decode"))
                    .expect("apply");
                fresh
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, protocol_codec, broadcast_to_1000, sled_store);
criterion_main!(benches);

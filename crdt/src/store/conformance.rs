//! The store conformance suite: every backend runs it from its own tests (feature
//! `conformance`), so "implements [`DocStore`]" means the same thing for all of them.
//!
//! Each run works under a fresh random name prefix, so a backend shared with other tests (a
//! PostgreSQL database) needs no cleaning first. Failures panic with what was expected.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use super::contract::{DocStatus, DocStore, StoreError, VersionRecord};
use crate::name::DocName;

/// Runs every check against stores made by `make`. It may return the same shared store each
/// time (names never repeat between runs); a second call stands for another node sharing it.
pub async fn run<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn DocStore>>,
{
    let prefix = format!("conformance-{}", uuid::Uuid::new_v4().simple());
    let name = |suffix: &str| DocName::new(&format!("{prefix}/{suffix}")).expect("valid name");
    let listed = |store: Arc<dyn DocStore>| {
        let prefix = prefix.clone();
        async move {
            let all = store.list().await.expect("list");
            let mut names: Vec<String> = all.iter().map(|d| d.name.clone()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "list is in name order");
            names.retain(|n| n.starts_with(&prefix));
            (names, all)
        }
    };

    // Nothing stored.
    let store = make().await;
    let a = name("a");
    let empty = store.load(&a).await.expect("load");
    assert!(
        empty.is_empty() && empty.next_pos == 0,
        "unknown loads empty"
    );
    assert_eq!(store.status(&a).await.expect("status"), DocStatus::Absent);
    store.check().await.expect("check");

    // Appends get consecutive positions, in order.
    let next = store
        .append(&a, vec![rec("one"), rec("two")])
        .await
        .expect("append");
    assert_eq!(next, 2, "two records at 0 and 1");
    assert_eq!(
        store.append(&a, vec![rec("three")]).await.expect("append"),
        3
    );
    let loaded = store.load(&a).await.expect("load");
    assert_eq!(positions(&loaded.log), vec![0, 1, 2]);
    assert_eq!(loaded.log[2].update, rec("three"));
    assert_eq!(loaded.next_pos, 3);
    assert!(loaded.snapshot.is_none());
    assert_eq!(store.status(&a).await.expect("status"), DocStatus::Exists);

    // Listing.
    let (names, all) = listed(store.clone()).await;
    assert_eq!(names, vec![a.to_string()]);
    let info = all.iter().find(|d| d.name == a.as_str()).expect("listed");
    assert_eq!(info.size_bytes, 3 + 3 + 5, "size is the bytes stored");

    // Compaction: the snapshot replaces the records below `upto`, atomically.
    store.compact(&a, rec("snap-2"), 2).await.expect("compact");
    let compacted = store.load(&a).await.expect("load");
    assert_eq!(compacted.snapshot, Some(rec("snap-2")));
    assert_eq!(positions(&compacted.log), vec![2]);
    assert_eq!(compacted.next_pos, 3);
    // A compaction that covers less than the stored snapshot changes nothing.
    store.compact(&a, rec("old"), 1).await.expect("compact");
    store.compact(&a, rec("old"), 2).await.expect("compact");
    assert_eq!(store.load(&a).await.expect("load"), compacted);
    // Up to the end: the log is empty, and positions carry on after it.
    store.compact(&a, rec("snap-3"), 3).await.expect("compact");
    let compacted = store.load(&a).await.expect("load");
    assert!(compacted.log.is_empty());
    assert_eq!(compacted.next_pos, 3);
    assert_eq!(
        store.append(&a, vec![rec("four")]).await.expect("append"),
        4
    );
    let loaded = store.load(&a).await.expect("load");
    assert_eq!(loaded.snapshot, Some(rec("snap-3")));
    assert_eq!(positions(&loaded.log), vec![3]);
    let (_, all) = listed(store.clone()).await;
    let info = all.iter().find(|d| d.name == a.as_str()).expect("listed");
    assert_eq!(info.size_bytes, 6 + 4, "size after compaction");

    // Names that extend one another are different documents.
    let ab = name("ab");
    let a_b = name("a/b");
    store.append(&ab, vec![rec("AB")]).await.expect("append");
    store.append(&a_b, vec![rec("A/B")]).await.expect("append");
    assert!(store.delete(&a).await.expect("delete"));
    assert_eq!(store.load(&ab).await.expect("load").log.len(), 1);
    assert_eq!(store.load(&a_b).await.expect("load").log.len(), 1);

    // Deletion removes everything and leaves a tombstone: nothing can be written back ...
    assert_eq!(store.status(&a).await.expect("status"), DocStatus::Deleted);
    assert!(
        deleted(store.load(&a).await),
        "a deleted document does not load"
    );
    assert!(
        deleted(store.append(&a, vec![rec("zombie")]).await),
        "nor take appends"
    );
    assert!(
        deleted(store.compact(&a, rec("zombie"), 9).await),
        "nor compactions"
    );
    assert!(!store.delete(&a).await.expect("delete"), "deleting twice");
    let (names, _) = listed(store.clone()).await;
    assert_eq!(names, vec![a_b.to_string(), ab.to_string()], "not listed");
    let tombstones = store.deleted().await.expect("deleted");
    assert!(
        tombstones.contains(&a.to_string()),
        "its tombstone is listed"
    );
    assert!(
        !tombstones.contains(&ab.to_string()),
        "live documents are not"
    );
    // ... until it is created again: empty, positions from 0.
    assert!(store.create(&a).await.expect("create"), "created again");
    assert_eq!(store.status(&a).await.expect("status"), DocStatus::Exists);
    assert!(
        !store
            .deleted()
            .await
            .expect("deleted")
            .contains(&a.to_string()),
        "no tombstone once created again"
    );
    assert!(store.load(&a).await.expect("load").is_empty());
    assert_eq!(
        store.append(&a, vec![rec("again")]).await.expect("append"),
        1
    );
    // Deleting what never existed says so, and still leaves a tombstone.
    let never = name("never");
    assert!(!store.delete(&never).await.expect("delete"));
    assert_eq!(
        store.status(&never).await.expect("status"),
        DocStatus::Deleted
    );

    // Creation.
    let created = name("created");
    assert!(store.create(&created).await.expect("create"));
    assert_eq!(
        store.status(&created).await.expect("status"),
        DocStatus::Exists
    );
    assert!(store.load(&created).await.expect("load").is_empty());
    assert!(
        !store.create(&created).await.expect("create"),
        "exists already"
    );
    assert!(!store.create(&ab).await.expect("create"), "has records");
    let (names, all) = listed(store.clone()).await;
    assert!(names.contains(&created.to_string()));
    let info = all
        .iter()
        .find(|d| d.name == created.as_str())
        .expect("listed");
    assert_eq!(info.size_bytes, 0);
    assert!(store.delete(&created).await.expect("delete"));
    assert_eq!(
        store.status(&created).await.expect("status"),
        DocStatus::Deleted
    );

    // A large record round-trips unchanged.
    let big = Bytes::from((0..1_048_576u32).map(|i| i as u8).collect::<Vec<u8>>());
    let large = name("large");
    store
        .append(&large, vec![big.clone()])
        .await
        .expect("append");
    assert_eq!(store.load(&large).await.expect("load").log[0].update, big);

    // Concurrent appends to one document (another store instance: another node) get distinct,
    // consecutive positions, and the log holds them in position order.
    let other = make().await;
    let shared = name("shared");
    let mut tasks = Vec::new();
    for i in 0..20u32 {
        let store = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let record = Bytes::from(format!("r{i}"));
            let next = store.append(&shared, vec![record.clone()]).await;
            (next.expect("append"), record)
        }));
    }
    let mut appended = Vec::new();
    for task in tasks {
        appended.push(task.await.expect("append task"));
    }
    let loaded = store.load(&shared).await.expect("load");
    assert_eq!(positions(&loaded.log), (0..20).collect::<Vec<_>>());
    for (next, record) in appended {
        assert_eq!(
            loaded.log[(next - 1) as usize].update,
            record,
            "the returned position is where the record is"
        );
    }

    // Versions.
    let h = name("history");
    versions(&store, &other, &h).await;

    for doc in [a, ab, a_b, large, shared, h] {
        store.delete(&doc).await.expect("clean up");
    }
}

/// The history half of the contract; `other` stands for a second node sharing the store.
async fn versions(store: &Arc<dyn DocStore>, other: &Arc<dyn DocStore>, h: &DocName) {
    let version = |seq: u64, tag: &str| VersionRecord {
        seq,
        meta: Bytes::from(format!("meta{tag}")),
        data: Bytes::from(format!("data{tag}")),
    };
    assert!(store.versions(h).await.expect("versions").is_empty());
    store.append(h, vec![rec("x")]).await.expect("append");
    assert!(store.add_version(h, version(1, "1")).await.expect("add"));
    assert!(
        !other.add_version(h, version(1, "1b")).await.expect("add"),
        "a taken number is refused"
    );
    assert!(store.add_version(h, version(3, "3")).await.expect("add"));
    assert!(other.add_version(h, version(2, "2")).await.expect("add"));
    let listed = store.versions(h).await.expect("versions");
    assert_eq!(
        listed,
        vec![(1, rec("meta1")), (2, rec("meta2")), (3, rec("meta3"))],
        "versions in number order, the first of a taken number kept"
    );
    let data = other.version_data(h, 2, 3).await.expect("data");
    assert_eq!(data, vec![(2, rec("data2")), (3, rec("data3"))]);
    assert!(store.version_data(h, 3, 2).await.expect("data").is_empty());

    // Compaction leaves versions alone.
    store.compact(h, rec("snap"), 1).await.expect("compact");
    assert_eq!(store.versions(h).await.expect("versions").len(), 3);

    store
        .rewrite_versions(h, &[1, 2], vec![version(3, "3full")])
        .await
        .expect("rewrite");
    assert_eq!(
        other.versions(h).await.expect("versions"),
        vec![(3, rec("meta3full"))]
    );
    assert_eq!(
        store.version_data(h, 0, 10).await.expect("data"),
        vec![(3, rec("data3full"))]
    );

    // Deleting removes them; a deleted document keeps none.
    assert!(store.delete(h).await.expect("delete"));
    assert!(store.versions(h).await.expect("versions").is_empty());
    assert!(deleted(store.add_version(h, version(4, "4")).await));
    assert!(deleted(
        store.rewrite_versions(h, &[], vec![version(4, "4")]).await
    ));
    assert!(store.create(h).await.expect("create"));
    assert!(
        store.versions(h).await.expect("versions").is_empty(),
        "a re-created document starts without history"
    );
}

fn deleted<T>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Deleted(_)))
}

fn rec(text: &str) -> Bytes {
    Bytes::from(text.to_string())
}

fn positions(log: &[super::contract::LogEntry]) -> Vec<u64> {
    log.iter().map(|e| e.pos).collect()
}

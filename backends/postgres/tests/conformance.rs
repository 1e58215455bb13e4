//! The PostgreSQL store against the store contract's conformance suite, its schema migrations
//! from versions 1 and 2, and two nodes keeping the same version number at once. Needs `WEFT_TEST_POSTGRES_URL` (tests/run.sh starts a throwaway
//! server); fails loudly without it rather than skipping.

use std::sync::Arc;

use bytes::Bytes;
use weft_crdt::store::VersionRecord;
use weft_crdt::{DocName, DocStore};
use weft_store_postgres::PostgresStore;

fn postgres_url() -> String {
    std::env::var("WEFT_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("WEFT_TEST_POSTGRES_URL is not set: run the tests through tests/run.sh")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_meets_the_store_contract() {
    let url = postgres_url();
    weft_crdt::store::conformance::run(|| {
        let url = url.clone();
        // A store per call: the suite's second store stands for another node.
        async move {
            let store = PostgresStore::connect(&url, 4).await.expect("connect");
            Arc::new(store) as Arc<dyn DocStore>
        }
    })
    .await;
}

/// A database written by a version-1 build (a global `id` orders the log) keeps its documents:
/// each document's records are numbered from 0 in their old order, and appends carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_migrated_with_its_documents() {
    let url = postgres_url();
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let db = format!("weft_migrate_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("create database");
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    let db_url = format!("{base}/{db}");
    {
        let (v1, connection) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        v1.batch_execute(
            "CREATE TABLE weft_schema (version INTEGER NOT NULL);
             INSERT INTO weft_schema VALUES (1);
             CREATE TABLE weft_docs (name TEXT PRIMARY KEY, snapshot BYTEA,
                                     updated_at_ms BIGINT NOT NULL DEFAULT 0);
             CREATE TABLE weft_log (id BIGSERIAL PRIMARY KEY, doc TEXT NOT NULL,
                                    update BYTEA NOT NULL);
             CREATE INDEX weft_log_doc_id ON weft_log (doc, id);
             INSERT INTO weft_docs VALUES ('a', 'S', 1), ('b', NULL, 1), ('empty', NULL, 1);
             INSERT INTO weft_log (doc, update) VALUES
                 ('a', 'a1'), ('b', 'b1'), ('a', 'a2'), ('b', 'b2'), ('a', 'a3');",
        )
        .await
        .expect("write a version-1 database");
    }
    {
        let store = PostgresStore::connect(&db_url, 2).await.expect("migrate");
        let a = DocName::new("a").expect("name");
        let loaded = store.load(&a).await.expect("load");
        assert_eq!(loaded.snapshot, Some(Bytes::from_static(b"S")));
        let log: Vec<(u64, &[u8])> = loaded.log.iter().map(|e| (e.pos, &e.update[..])).collect();
        assert_eq!(log, vec![(0, &b"a1"[..]), (1, b"a2"), (2, b"a3")]);
        assert_eq!(loaded.next_pos, 3);
        let b = DocName::new("b").expect("name");
        assert_eq!(store.load(&b).await.expect("load").log.len(), 2);
        assert_eq!(
            store
                .append(&a, vec![Bytes::from_static(b"a4")])
                .await
                .expect("append"),
            4
        );
        assert_eq!(
            store
                .status(&DocName::new("empty").expect("name"))
                .await
                .expect("status"),
            weft_crdt::store::DocStatus::Exists
        );
        // The migration added the versions' table.
        let version = VersionRecord {
            seq: 1,
            meta: Bytes::from_static(b"m"),
            data: Bytes::from_static(b"d"),
        };
        assert!(store.add_version(&a, version).await.expect("add version"));
        // Opening it again finds the current version: nothing to migrate.
        drop(PostgresStore::connect(&db_url, 2).await.expect("reopen"));
    }
    admin
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await
        .expect("drop database");
}

/// A database written by a version-2 build (no versions' table) keeps its documents and
/// tombstones and gets the table, empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_database_is_migrated_with_its_documents() {
    let url = postgres_url();
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let db = format!("weft_migrate_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("create database");
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    let db_url = format!("{base}/{db}");
    {
        let (v2, connection) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        v2.batch_execute(
            "CREATE TABLE weft_schema (version INTEGER NOT NULL);
             INSERT INTO weft_schema VALUES (2);
             CREATE TABLE weft_docs (name TEXT PRIMARY KEY, snapshot BYTEA,
                 snapshot_upto BIGINT NOT NULL DEFAULT 0, next_seq BIGINT NOT NULL DEFAULT 0,
                 updated_at_ms BIGINT NOT NULL DEFAULT 0,
                 deleted BOOLEAN NOT NULL DEFAULT false);
             CREATE TABLE weft_log (doc TEXT NOT NULL, seq BIGINT NOT NULL,
                                    update BYTEA NOT NULL, PRIMARY KEY (doc, seq));
             INSERT INTO weft_docs (name, next_seq, updated_at_ms, deleted)
                 VALUES ('a', 2, 1, false), ('gone', 0, 1, true);
             INSERT INTO weft_log VALUES ('a', 0, 'a0'), ('a', 1, 'a1');",
        )
        .await
        .expect("write a version-2 database");
    }
    {
        let store = PostgresStore::connect(&db_url, 2).await.expect("migrate");
        let a = DocName::new("a").expect("name");
        assert_eq!(store.load(&a).await.expect("load").log.len(), 2);
        assert!(store.versions(&a).await.expect("versions").is_empty());
        let version = VersionRecord {
            seq: 7,
            meta: Bytes::from_static(b"m"),
            data: Bytes::from_static(b"d"),
        };
        assert!(store.add_version(&a, version.clone()).await.expect("add"));
        assert_eq!(
            store.versions(&a).await.expect("versions"),
            vec![(7, Bytes::from_static(b"m"))]
        );
        let gone = DocName::new("gone").expect("name");
        assert!(matches!(
            store.add_version(&gone, version).await,
            Err(weft_crdt::store::StoreError::Deleted(_))
        ));
        // Opening it again finds the current version: nothing to migrate, nothing lost.
        drop(store);
        let store = PostgresStore::connect(&db_url, 2).await.expect("reopen");
        assert_eq!(store.versions(&a).await.expect("versions").len(), 1);
        // A node of the older build still running deletes it the old way (its versions stay):
        // created again, it still starts without history.
        let (old, connection) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        old.batch_execute(
            "UPDATE weft_docs SET deleted = true, next_seq = 0 WHERE name = 'a';
             DELETE FROM weft_log WHERE doc = 'a';",
        )
        .await
        .expect("delete the old way");
        assert!(store.create(&a).await.expect("create"));
        assert!(store.versions(&a).await.expect("versions").is_empty());
    }
    admin
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await
        .expect("drop database");
}

/// Nodes keeping a version under the same number at the same time: exactly one of them gets
/// it, and the stored version is the one that was told so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_gets_a_contested_version_number() {
    let url = postgres_url();
    let mut nodes = Vec::new();
    for _ in 0..4 {
        let store = PostgresStore::connect(&url, 4).await.expect("connect");
        nodes.push(Arc::new(store));
    }
    let doc = DocName::new(&format!("contested-{}", uuid::Uuid::new_v4().simple())).expect("name");
    for seq in 1..=5u64 {
        let mut tasks = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let (node, doc) = (node.clone(), doc.clone());
            tasks.push(tokio::spawn(async move {
                let record = VersionRecord {
                    seq,
                    meta: Bytes::from(format!("meta-{i}")),
                    data: Bytes::from(format!("data-{i}")),
                };
                (i, node.add_version(&doc, record).await.expect("add"))
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            let (i, added) = task.await.expect("task");
            if added {
                winners.push(i);
            }
        }
        assert_eq!(winners.len(), 1, "one node keeps version {seq}");
        let data = nodes[0].version_data(&doc, seq, seq).await.expect("data");
        assert_eq!(
            data,
            vec![(seq, Bytes::from(format!("data-{}", winners[0])))]
        );
    }
    assert_eq!(nodes[0].versions(&doc).await.expect("versions").len(), 5);
    assert!(nodes[0].delete(&doc).await.expect("clean up"));
}

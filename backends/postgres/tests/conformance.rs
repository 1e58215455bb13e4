//! The PostgreSQL store against the store contract's conformance suite, and its schema
//! migration from version 1. Needs `WEFT_TEST_POSTGRES_URL` (tests/run.sh starts a throwaway
//! server); fails loudly without it rather than skipping.

use std::sync::Arc;

use weft_crdt::DocStore;
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
    use bytes::Bytes;
    use weft_crdt::DocName;

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
        // Opening it again finds version 2: nothing to migrate.
        drop(PostgresStore::connect(&db_url, 2).await.expect("reopen"));
    }
    admin
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await
        .expect("drop database");
}

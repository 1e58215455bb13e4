//! Cluster mode against real PostgreSQL and Redis servers: the PostgreSQL store's semantics
//! (including compaction racing other nodes' appends), and in-process nodes relaying edits,
//! deletions and, after Redis restarts, catching up from the shared store.
//!
//! Needs `WEFT_TEST_POSTGRES_URL` and `WEFT_TEST_REDIS_URL` (tests/run.sh starts throwaway
//! servers); every test here fails loudly without them rather than skipping.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use weft_crdt::store::PostgresStore;
use weft_crdt::{DocName, DocStore};
use yrs::{GetString, ReadTxn, StateVector, Text, Transact};

use crate::helpers::*;

fn env_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests through tests/run.sh, which starts PostgreSQL and Redis")
    })
}

fn postgres_url() -> String {
    env_url("WEFT_TEST_POSTGRES_URL")
}

fn redis_url() -> String {
    env_url("WEFT_TEST_REDIS_URL")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn postgres() -> PostgresStore {
    PostgresStore::connect(&postgres_url(), 4)
        .await
        .expect("connect to PostgreSQL")
}

fn text_of_stored(stored: &weft_crdt::store::StoredDoc) -> String {
    let doc = yrs::Doc::new();
    let damage = weft_crdt::recovery::rebuild_into(&doc, stored);
    assert!(damage.is_empty(), "{damage:?}");
    let text = doc.get_or_insert_text("text");
    let txn = doc.transact();
    text.get_string(&txn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_appends_loads_compacts_and_deletes() {
    let store = postgres().await;
    let name = DocName::new(&unique("pg/semantics")).unwrap();
    let prefix_twin = DocName::new(&format!("{}x", name.as_str())).unwrap();
    assert!(store.load(&name).await.unwrap().is_empty());
    assert!(!store.exists(&name).await.unwrap());

    store
        .append(
            &name,
            0,
            vec![Bytes::from(text_update("a")), Bytes::from(text_update("b"))],
        )
        .await
        .unwrap();
    store
        .append(&prefix_twin, 0, vec![Bytes::from(text_update("twin"))])
        .await
        .unwrap();
    let loaded = store.load(&name).await.unwrap();
    assert_eq!(loaded.log.len(), 2);
    assert!(
        loaded.log[0].seq < loaded.log[1].seq,
        "log keeps append order"
    );
    assert_eq!(text_of_stored(&loaded).len(), 2);
    assert!(store.exists(&name).await.unwrap());
    assert!(
        !store.create(&name).await.unwrap(),
        "create refuses an existing document"
    );

    let snapshot = {
        let doc = yrs::Doc::new();
        weft_crdt::recovery::rebuild_into(&doc, &loaded);
        let txn = doc.transact();
        txn.encode_state_as_update_v1(&StateVector::default())
    };
    store
        .compact(&name, snapshot, loaded.next_seq)
        .await
        .unwrap();
    let compacted = store.load(&name).await.unwrap();
    assert!(compacted.snapshot.is_some());
    assert!(compacted.log.is_empty());
    assert_eq!(text_of_stored(&compacted), text_of_stored(&loaded));

    let listed = store.list().await.unwrap();
    let info = listed
        .iter()
        .find(|d| d.name == name.as_str())
        .expect("listed");
    assert!(info.size_bytes > 0 && info.updated_at_ms > 0);

    assert!(store.delete(&name).await.unwrap());
    assert!(!store.exists(&name).await.unwrap());
    assert!(store.load(&name).await.unwrap().is_empty());
    assert_eq!(
        text_of_stored(&store.load(&prefix_twin).await.unwrap()),
        "twin",
        "a name that extends another is a different document"
    );
    assert!(store.create(&name).await.unwrap(), "create after delete");
}

/// Two nodes append while both compact with only what they have seen: every update survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_never_drops_another_nodes_appends() {
    let node_a = Arc::new(postgres().await);
    let node_b = Arc::new(postgres().await);
    let name = DocName::new(&unique("pg/race")).unwrap();
    let mut tasks = Vec::new();
    for (node, client) in [(node_a.clone(), 10u64), (node_b.clone(), 20u64)] {
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            let own = yrs::Doc::with_client_id(client);
            let text = own.get_or_insert_text("text");
            for i in 0..60 {
                let before = own.transact().state_vector();
                {
                    let mut txn = own.transact_mut();
                    text.insert(&mut txn, 0, &format!("<{client}:{i}>"));
                }
                let update = own.transact().encode_state_as_update_v1(&before);
                node.append(&name, 0, vec![Bytes::from(update)])
                    .await
                    .unwrap();
                if i % 7 == 0 {
                    // This node compacts with its own state only: the other node's appends
                    // are in the log but not in this snapshot.
                    let snapshot = own
                        .transact()
                        .encode_state_as_update_v1(&StateVector::default());
                    node.compact(&name, snapshot, 0).await.unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let text = text_of_stored(&node_a.load(&name).await.unwrap());
    for client in [10, 20] {
        for i in 0..60 {
            assert!(
                text.contains(&format!("<{client}:{i}>")),
                "update {client}:{i} lost"
            );
        }
    }
}

/// A node of a test cluster, in process.
async fn node(prefix: &str, redis: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.store = postgres_url();
    config.redis = Some(redis.to_string());
    config.redis_prefix = prefix.to_string();
    (spawn_app(config).await, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_deletion_cross_nodes() {
    let prefix = unique("weft-test") + ":";
    let (a, _dir_a) = node(&prefix, &redis_url()).await;
    let (b, _dir_b) = node(&prefix, &redis_url()).await;
    let doc = unique("cross");
    let mut on_a = TestClient::connect_synced(&a.ws_url(&doc)).await;
    let mut on_b = TestClient::connect_synced(&b.ws_url(&doc)).await;
    on_a.insert(0, "from a;").await;
    on_b.pump_until("b sees a's edit", |c| c.text().contains("from a;"))
        .await;
    on_b.insert(0, "from b;").await;
    on_a.pump_until("a sees b's edit", |c| c.text().contains("from b;"))
        .await;

    // Deleted through node a's API: node b's client is disconnected too.
    let response = reqwest::Client::new()
        .delete(a.http_url(&format!("/api/docs/{doc}")))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(on_b.expect_close().await, Some(1000));
    let fresh = TestClient::connect_synced(&b.ws_url(&doc)).await;
    assert_eq!(fresh.text(), "", "deleted everywhere");
    a.stop().await;
    b.stop().await;
}

/// A private redis-server for the test that restarts it.
struct PrivateRedis {
    port: u16,
    child: Child,
}

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (tests/run.sh installs it)");
        PrivateRedis { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Redis goes away and comes back empty: edits made meanwhile reach the other node's clients
/// once it reconnects (it re-reads the shared store), and live relaying resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_catch_up_after_redis_restarts() {
    let mut redis = PrivateRedis::start(free_port());
    redis.wait_ready().await;
    let prefix = unique("weft-test") + ":";
    let (a, _dir_a) = node(&prefix, &redis.url()).await;
    let (b, _dir_b) = node(&prefix, &redis.url()).await;
    let doc = unique("outage");
    let mut on_a = TestClient::connect_synced(&a.ws_url(&doc)).await;
    let mut on_b = TestClient::connect_synced(&b.ws_url(&doc)).await;
    on_a.insert(0, "before;").await;
    on_b.pump_until("relayed before the outage", |c| {
        c.text().contains("before;")
    })
    .await;

    let port = redis.port;
    redis.kill();
    on_a.insert(0, "during;").await;
    // Longer than the publisher retries: the edit is never published, only stored.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut redis = PrivateRedis::start(port);
    redis.wait_ready().await;
    on_b.pump_until("the outage's edit after the resync", |c| {
        c.text().contains("during;")
    })
    .await;
    on_a.insert(0, "after;").await;
    on_b.pump_until("relayed after the outage", |c| c.text().contains("after;"))
        .await;
    a.stop().await;
    b.stop().await;
    redis.kill();
}

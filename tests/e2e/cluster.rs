//! Cluster mode against real PostgreSQL and Redis servers: in-process nodes relaying edits and
//! deletions, compacting while other nodes write, and, after Redis restarts, catching up from
//! the shared store. (The PostgreSQL store's own semantics are its conformance suite's, in
//! `backends/postgres/tests`.)
//!
//! Needs `WEFT_TEST_POSTGRES_URL` and `WEFT_TEST_REDIS_URL` (tests/run.sh starts throwaway
//! servers); every test here fails loudly without them rather than skipping.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weft_crdt::DocName;

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

/// Two nodes edit one document while both compact their logs often: every update survives,
/// because a node catches up with the shared store before it compacts (the store's own
/// contract, positions in commit order, is checked by its conformance suite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_never_drops_another_nodes_updates() {
    let prefix = unique("weft-test") + ":";
    let redis = redis_url();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.store = postgres_url();
        config.redis = Some(redis.clone());
        config.redis_prefix = prefix.clone();
        // Compact after every few records or bytes (a burst of edits is one record).
        config.compact_after_updates = 3;
        config.compact_after_bytes = 200;
        nodes.push((spawn_app(config).await, dir));
    }
    let doc = unique("race");
    let mut writers = Vec::new();
    for (app, _) in &nodes {
        writers.push(TestClient::connect_synced(&app.ws_url(&doc)).await);
    }
    for i in 0..40 {
        for (w, writer) in writers.iter_mut().enumerate() {
            writer.insert(0, &format!("<{w}:{i}>")).await;
        }
        // Now and then, let the edits so far arrive everywhere, so that there are many
        // appends and compactions rather than one burst.
        if i % 8 == 7 {
            let done = |w: usize| format!("<{w}:{i}>");
            writers[0]
                .pump_until("the other's edit", |c| c.text().contains(&done(1)))
                .await;
            writers[1]
                .pump_until("the other's edit", |c| c.text().contains(&done(0)))
                .await;
        }
    }
    let expected: Vec<String> = (0..40)
        .flat_map(|i| (0..2).map(move |w| format!("<{w}:{i}>")))
        .collect();
    for writer in &mut writers {
        writer
            .pump_until("every update", |c| {
                let text = c.text();
                expected.iter().all(|e| text.contains(e.as_str()))
            })
            .await;
    }
    drop(writers);
    for (app, _) in nodes {
        app.stop().await;
    }
    // What the shared store holds, read by a fresh node.
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.store = postgres_url();
    let fresh = spawn_app(config).await;
    let reader = TestClient::connect_synced(&fresh.ws_url(&doc)).await;
    let text = reader.text();
    for e in &expected {
        assert!(text.contains(e.as_str()), "update {e} lost");
    }
    let stored = fresh
        .registry
        .store()
        .load(&DocName::new(&doc).unwrap())
        .await
        .unwrap();
    assert!(stored.snapshot.is_some(), "the nodes compacted");
    fresh.stop().await;
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
    // Deleted everywhere: node b refuses it too (the tombstone is in the shared store) ...
    assert_eq!(refused_status(&b.ws_url(&doc)).await, 410);
    // ... until it is created again, on any node.
    let created = reqwest::Client::new()
        .put(b.http_url(&format!("/api/docs/{doc}")))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let fresh = TestClient::connect_synced(&a.ws_url(&doc)).await;
    assert_eq!(fresh.text(), "", "empty");
    a.stop().await;
    b.stop().await;
}

/// A version kept on one node is listed, read and restorable on another, with the authors of
/// both nodes' edits (the fan-out carries who wrote each update).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_cross_nodes() {
    use serde_json::{json, Value};
    let prefix = unique("weft-test") + ":";
    let (a, _dir_a) = node(&prefix, &redis_url()).await;
    let (b, _dir_b) = node(&prefix, &redis_url()).await;
    let http = reqwest::Client::new();
    let doc = unique("history");
    let mut on_a = TestClient::connect_synced(&a.ws_url(&doc)).await;
    let mut on_b = TestClient::connect_synced(&b.ws_url(&doc)).await;
    for (client, name) in [(&mut on_a, "alice"), (&mut on_b, "bob")] {
        let id = client.doc.client_id().get();
        let state = json!({"user": {"name": name}}).to_string();
        client.send(awareness_frame(id, 1, &state)).await;
    }
    on_a.pump_until("bob's presence", |c| c.awareness_clients().len() == 2)
        .await;
    on_b.pump_until("alice's presence", |c| c.awareness_clients().len() == 2)
        .await;
    on_a.insert(0, "one").await;
    on_b.pump_until("a's edit", |c| c.text() == "one").await;
    on_b.insert(3, " two").await;
    on_a.pump_until("b's edit", |c| c.text() == "one two").await;

    let kept = http
        .post(a.http_url(&format!("/api/docs/{doc}/versions")))
        .json(&json!({"label": "v1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 201);
    let kept: Value = kept.json().await.unwrap();
    assert_eq!(kept["authors"], json!(["alice", "bob"]));
    let id = kept["id"].as_str().unwrap().to_string();

    let listed: Value = http
        .get(b.http_url(&format!("/api/docs/{doc}/versions")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["id"], id.as_str(), "listed on the other node");
    assert_eq!(listed[0]["label"], "v1");

    on_a.insert(7, " three").await;
    on_b.pump_until("more", |c| c.text() == "one two three")
        .await;
    let restored = http
        .post(b.http_url(&format!("/api/docs/{doc}/restore")))
        .json(&json!({ "version": id }))
        .send()
        .await
        .unwrap();
    assert_eq!(restored.status(), 200);
    on_a.pump_until("restored on a", |c| c.text() == "one two")
        .await;
    on_b.pump_until("restored on b", |c| c.text() == "one two")
        .await;
    let listed: Value = http
        .get(a.http_url(&format!("/api/docs/{doc}/versions")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["label"], format!("Before restoring version {id}"));
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
    let failures = metric(&a.addr.to_string(), "weft_fanout_publish_failures_total").await;
    redis.kill();
    on_a.insert(0, "during;").await;
    // Until the publisher gives up on it: the edit is never published, only stored.
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(&a.addr.to_string(), "weft_fanout_publish_failures_total").await <= failures {
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishing never gave up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

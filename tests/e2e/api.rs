//! The HTTP document API, the metrics endpoint and webhooks.

use std::time::Duration;

use tokio::sync::mpsc;
use yrs::{Array, Map, ReadTxn, StateVector, Text, Transact, WriteTxn, XmlFragment, XmlTextPrelim};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_api_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let http = reqwest::Client::new();
    let doc_url = |path: &str| app.http_url(&format!("/api/docs/{path}"));

    // Create, conflict, list.
    let created = http.put(doc_url("team/plan")).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let again = http.put(doc_url("team/plan")).send().await.unwrap();
    assert_eq!(again.status(), 409);
    let body: serde_json::Value = again.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("exists"));
    let listed: serde_json::Value = http
        .get(app.http_url("/api/docs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["name"], "team/plan");

    // A connected client receives what is posted over HTTP.
    let mut client = TestClient::connect_synced(&app.ws_url("team/plan")).await;
    let posted = http
        .post(doc_url("team/plan/update"))
        .body(text_update("from http"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 204);
    client
        .pump_until("the posted update", |c| c.text() == "from http")
        .await;

    // The full state comes back as a binary update.
    let state = http.get(doc_url("team/plan/update")).send().await.unwrap();
    assert_eq!(state.status(), 200);
    assert_eq!(state.headers()["content-type"], "application/octet-stream");
    assert_eq!(text_of(&state.bytes().await.unwrap()), "from http");

    // Garbage is refused and changes nothing.
    let bad = http
        .post(doc_url("team/plan/update"))
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let state = http
        .get(doc_url("team/plan/update"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(text_of(&state), "from http");

    // Missing documents and bad names.
    assert_eq!(
        http.get(doc_url("nope/update"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.get(doc_url("nope/json"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.put(doc_url("bad%20name"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        http.delete(doc_url("nope")).send().await.unwrap().status(),
        404
    );

    // Delete disconnects the clients and removes the data.
    let deleted = http.delete(doc_url("team/plan")).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(client.expect_close().await, Some(1000));
    assert_eq!(
        http.get(doc_url("team/plan/update"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let listed: serde_json::Value = http
        .get(app.http_url("/api/docs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, serde_json::json!([]));
    // It stays deleted until created again; then it starts empty.
    assert_eq!(refused_status(&app.ws_url("team/plan")).await, 410);
    let created = http.put(doc_url("team/plan")).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let fresh = TestClient::connect_synced(&app.ws_url("team/plan")).await;
    assert_eq!(fresh.text(), "", "a deleted document starts empty");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rendering_of_every_root_type() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let doc = yrs::Doc::new();
    let update = {
        let mut txn = doc.transact_mut();
        let text = txn.get_or_insert_text("title");
        text.insert(&mut txn, 0, "Hello");
        let map = txn.get_or_insert_map("meta");
        map.insert(&mut txn, "stars", 3);
        map.insert(&mut txn, "tag", "draft");
        let array = txn.get_or_insert_array("items");
        array.push_back(&mut txn, "one");
        array.push_back(&mut txn, 2);
        let xml = txn.get_or_insert_xml_fragment("prose");
        xml.push_back(&mut txn, XmlTextPrelim::new("rich"));
        txn.encode_state_as_update_v1(&StateVector::default())
    };
    let http = reqwest::Client::new();
    let posted = http
        .post(app.http_url("/api/docs/render/update"))
        .body(update)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 204);
    let json: serde_json::Value = http
        .get(app.http_url("/api/docs/render/json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["title"], "Hello");
    assert_eq!(
        json["meta"],
        serde_json::json!({ "stars": 3, "tag": "draft" })
    );
    assert_eq!(json["items"], serde_json::json!(["one", 2]));
    assert_eq!(json["prose"], "rich");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exported_in_prometheus_format() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let mut a = TestClient::connect_synced(&app.ws_url("metered")).await;
    let mut b = TestClient::connect_synced(&app.ws_url("metered")).await;
    a.insert(0, "count me").await;
    b.pump_until("edit", |c| c.text() == "count me").await;
    let response = reqwest::get(app.http_url("/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for name in [
        "weft_connections",
        "weft_documents_loaded",
        "weft_updates_applied_total",
        "weft_updates_broadcast_total",
        "weft_bytes_in_total",
        "weft_bytes_out_total",
        "weft_persist_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    app.stop().await;
}

/// A webhook receiver: an HTTP server that answers the first `failures` requests with 500.
async fn webhook_receiver(failures: usize) -> (String, mpsc::UnboundedReceiver<serde_json::Value>) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        let tx = tx.clone();
        let seen = seen.clone();
        App::new().route(
            "/hook",
            web::post().to(move |body: web::Json<serde_json::Value>| {
                let tx = tx.clone();
                let n = seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < failures {
                        return HttpResponse::InternalServerError().finish();
                    }
                    let _ = tx.send(body.into_inner());
                    HttpResponse::Ok().finish()
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_debounced_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut hooks) = webhook_receiver(1).await;
    let mut config = test_config(dir.path());
    config.webhook.webhook_url = Some(url);
    config.webhook.webhook_wait = Duration::from_millis(300);
    config.webhook.webhook_max_wait = Duration::from_secs(5);
    let app = spawn_app(config).await;
    let mut a = TestClient::connect_synced(&app.ws_url("hooked")).await;
    for i in 0..20 {
        a.insert(0, &format!("{i}")).await;
    }
    // One notification for the burst, delivered on the second attempt.
    let hook = tokio::time::timeout(WAIT, hooks.recv())
        .await
        .expect("webhook")
        .unwrap();
    assert_eq!(hook["doc"], "hooked");
    assert!(hook["updatedAt"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(
        tokio::time::timeout(Duration::from_millis(800), hooks.recv())
            .await
            .is_err(),
        "the burst was debounced into one call"
    );
    app.stop().await;
}

//! Deletes stay deleted, one writer cannot evict everyone, and the smaller holes: forged log
//! lines, unsigned webhooks that logged their URL, and an unauthenticated `/readyz` that flushed
//! the store on every request. Each case was reproduced against the release binary before its
//! fix.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpServer};
use yrs::{ReadTxn, Transact};

use crate::helpers::*;

/// A deleted document stays deleted: a client that still holds it is refused (410) instead of
/// writing it back, across a restart, until the document is created again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_document_stays_deleted_until_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let mut holder = TestClient::connect_synced(&app.ws_url("gone")).await;
    holder.insert(0, "precious").await;
    let reader = TestClient::connect_synced(&app.ws_url("gone")).await;
    assert_eq!(reader.text(), "precious");
    drop(reader);
    let http = reqwest::Client::new();
    let deleted = http
        .delete(app.http_url("/api/docs/gone"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(holder.expect_close().await, Some(1000));
    // The holder reconnects as a provider does, to upload its state: refused.
    assert_eq!(refused_status(&app.ws_url("gone")).await, 410);
    let posted = http
        .post(app.http_url("/api/docs/gone/update"))
        .body(holder.state())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 410, "nor through the API");
    let json = http
        .get(app.http_url("/api/docs/gone/json"))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 404);
    app.stop().await;

    // Across a restart.
    let app = spawn_app(test_config(dir.path())).await;
    assert_eq!(refused_status(&app.ws_url("gone")).await, 410);
    // Created again: empty, and usable.
    let created = http
        .put(app.http_url("/api/docs/gone"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let fresh = TestClient::connect_synced(&app.ws_url("gone")).await;
    assert_eq!(fresh.text(), "");
    app.stop().await;
}

/// The update of `hostile.rs` that yrs rejects after integrating part of it: its sender is
/// closed (1007) and nobody else is (they used to be closed with 1011, as often as the attacker
/// liked); an address that keeps sending such updates is refused for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_update_affects_only_its_sender() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.max_bad_messages_per_minute = 3;
    let (app, mut writer, mut watcher) = spawn_with_base(config, "half").await;
    let accepted = vec![
        0, 2, 31, 2, 2, 65, 65, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 233, 255, 255, 41, 1, 1, 65, 1, 1,
        1, 1, 115, 241, 1, 169, 39,
    ];
    let rejected = vec![
        0, 2, 31, 2, 2, 69, 0, 0, 69, 1, 1, 1, 1, 1, 1, 1, 1, 52, 1, 0, 2, 1, 1, 1, 33, 1, 33, 1,
        1, 1, 1, 1, 169, 0,
    ];
    for round in 0..3 {
        let mut evil = TestClient::connect_synced(&app.ws_url("half")).await;
        evil.send(accepted.clone()).await;
        evil.send(rejected.clone()).await;
        assert_eq!(evil.expect_close().await, Some(1007), "round {round}");
        // Everyone else is still connected and editing.
        writer.insert(0, &format!("{round};")).await;
        watcher
            .pump_until("the next edit", |c| {
                c.text().starts_with(&format!("{round};"))
            })
            .await;
        assert!(watcher.closed.is_none() && writer.closed.is_none());
    }
    // Three invalid messages from this address: it is refused for now.
    assert_eq!(refused_status(&app.ws_url("half")).await, 429);
    let served = watcher.doc.transact().state_vector();
    assert_eq!(
        served.get(&yrs::ClientID::new(69)),
        0,
        "nothing of it served"
    );
    app.stop().await;
}

/// A token header whose `alg` holds a newline cannot add a line to the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_cannot_be_forged() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let server = WeftProcess::start(
        dir.path(),
        &[
            "--auth-secret",
            "a-test-secret-that-is-long-enough-for-hs256",
        ],
    );
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(
        r#"{"alg":"HS256\n2026-01-01T00:00:00Z  INFO weft: FORGED admin logged in","typ":"JWT"}"#,
    );
    let claims = b64.encode(r#"{"sub":"x","doc":"*","perm":"write","exp":9999999999}"#);
    // The status of a request with a token whose header is `header`.
    let status_with = |header: String| {
        let request = reqwest::Client::new()
            .get(server.http_url("/api/docs"))
            .bearer_auth(format!("{header}.{claims}.c2ln"));
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(status_with(header).await, 401);
    poll_until("the refusal is logged", || async {
        server
            .log_lines()
            .iter()
            .any(|l| l.contains("request refused"))
    })
    .await;
    let forged: Vec<String> = server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("FORGED") && !l.contains("request refused"))
        .collect();
    assert!(forged.is_empty(), "a forged line: {forged:?}");

    // Nor a forged field: client text with spaces and `=` is quoted, so a `key=value` reader
    // of the line sees one field where the client wrote two.
    let header = b64.encode(r#"{"alg":"HS256 sub=forged-admin","typ":"JWT"}"#);
    assert_eq!(status_with(header).await, 401);
    poll_until("the second refusal is logged", || async {
        server
            .log_lines()
            .iter()
            .any(|l| l.contains("forged-admin"))
    })
    .await;
    for line in server.log_lines() {
        let fields = logfmt_fields(&line);
        assert!(
            !fields.iter().any(|f| f.starts_with("sub=")),
            "a forged field in {line:?}: {fields:?}"
        );
    }
    assert_eq!(server.terminate(), Some(0));
}

/// A log line's space-separated fields, as a `key=value` reader sees them: a double-quoted
/// stretch (with backslash escapes) is part of one field.
fn logfmt_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                fields.last_mut().unwrap().push(c);
                if let Some(next) = chars.next() {
                    fields.last_mut().unwrap().push(next);
                }
            }
            '"' => {
                quoted = !quoted;
                fields.last_mut().unwrap().push(c);
            }
            ' ' if !quoted => fields.push(String::new()),
            _ => fields.last_mut().unwrap().push(c),
        }
    }
    fields.retain(|f| !f.is_empty());
    fields
}

/// A webhook as received: its signature header and its body.
type Delivery = (String, Vec<u8>);

/// Webhooks carry a signature the receiver can check; a failing one never logs its URL (whose
/// query string may hold a secret).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_and_their_urls_never_logged() {
    let received: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let sink = received.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = HttpServer::new(move || {
        let sink = sink.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let sink = sink.clone();
            async move {
                let signature = req
                    .headers()
                    .get("Weft-Signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                sink.lock().unwrap().push((signature, body.to_vec()));
                "ok"
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let receiver_handle = receiver.handle();
    tokio::spawn(receiver);

    let dir = tempfile::tempdir().unwrap();
    let secret = "webhook-signing-secret";
    let url = format!("http://127.0.0.1:{port}/hook?token=hook-url-secret");
    let mut config = test_config(dir.path());
    config.webhook.webhook_url = Some(url);
    config.webhook.webhook_secret = Some(secret.into());
    config.webhook.webhook_wait = Duration::from_millis(50);
    let app = spawn_app(config).await;
    let mut writer = TestClient::connect_synced(&app.ws_url("hooked")).await;
    writer.insert(0, "change").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while received.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no webhook");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (signature, body) = received.lock().unwrap()[0].clone();
    let timestamp: u64 = signature
        .strip_prefix("t=")
        .and_then(|s| s.split(',').next())
        .and_then(|t| t.parse().ok())
        .expect("a timestamp");
    assert_eq!(
        signature,
        weft_server::webhook::signature(secret.as_bytes(), timestamp, &body),
        "the signature is HMAC-SHA256 over the timestamp and the body"
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["doc"], "hooked");
    app.stop().await;
    receiver_handle.stop(true).await;

    // A webhook that fails: its URL (and the secret in it) is not in the log.
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{port}/hook?token=hook-url-secret");
    let server = WeftProcess::start(
        dir.path(),
        &[
            "--webhook-url",
            &dead,
            "--webhook-wait",
            "50ms",
            "--webhook-attempts",
            "1",
        ],
    );
    let mut writer = TestClient::connect_synced(&server.ws_url("hooked")).await;
    writer.insert(0, "change").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !server
        .log_lines()
        .iter()
        .any(|l| l.contains("webhook gave up"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failure was not logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leaks: Vec<String> = server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("hook-url-secret"))
        .collect();
    assert!(leaks.is_empty(), "{leaks:?}");
    assert_eq!(server.terminate(), Some(0));
}

/// `/readyz` is unauthenticated: a flood of probes costs at most one store check a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_probes_do_not_flush_the_store_each() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let addr = app.addr.to_string();
    // Warm up, then count.
    reqwest::get(app.http_url("/readyz")).await.unwrap();
    let before = metric(&addr, "weft_readiness_checks_total").await;
    let started = tokio::time::Instant::now();
    let mut probes = Vec::new();
    for _ in 0..200 {
        let url = app.http_url("/readyz");
        probes.push(tokio::spawn(async move {
            reqwest::get(url).await.unwrap().status().as_u16()
        }));
    }
    for probe in probes {
        assert_eq!(probe.await.unwrap(), 200);
    }
    let seconds = started.elapsed().as_secs_f64().ceil();
    let checks = metric(&addr, "weft_readiness_checks_total").await - before;
    assert!(
        checks <= seconds + 1.0,
        "{checks} store checks for 200 probes in {seconds} s"
    );
    app.stop().await;
}

//! Access control over WebSocket and HTTP, and the limits that refuse or close connections.

use std::time::Duration;

use weft_server::auth::{claims_for, AuthConfig, Authenticator, Permission};

use crate::helpers::*;

const SECRET: &str = "test-secret-with-enough-entropy";

fn auth_config(dir: &std::path::Path) -> weft_server::ServerConfig {
    let mut config = test_config(dir);
    config.auth = AuthConfig {
        auth_secret: Some(SECRET.into()),
        ..AuthConfig::default()
    };
    config
}

/// An authenticator signing with `secret`.
fn signer(secret: &str) -> Authenticator {
    Authenticator::from_config(&AuthConfig {
        auth_secret: Some(secret.into()),
        ..AuthConfig::default()
    })
    .unwrap()
    .unwrap()
}

fn token(doc: &str, perm: Permission, ttl: Duration) -> String {
    signer(SECRET)
        .issue(&claims_for("tester", doc, perm, ttl))
        .unwrap()
}

fn expired(doc: &str) -> String {
    let mut claims = claims_for("tester", doc, Permission::Write, Duration::ZERO);
    claims.exp -= 3600;
    signer(SECRET).issue(&claims).unwrap()
}

fn forged(doc: &str) -> String {
    signer("not-the-server-secret")
        .issue(&claims_for(
            "mallory",
            doc,
            Permission::Write,
            Duration::from_secs(600),
        ))
        .unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connections_need_a_valid_token_for_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(auth_config(dir.path())).await;
    let url = |doc: &str, token: &str| format!("{}?token={token}", app.ws_url(doc));

    assert_eq!(refused_status(&app.ws_url("secret")).await, 401, "missing");
    assert_eq!(
        refused_status(&url("secret", &expired("secret"))).await,
        401,
        "expired"
    );
    assert_eq!(
        refused_status(&url("secret", &forged("secret"))).await,
        401,
        "forged"
    );
    assert_eq!(
        refused_status(&url("secret", "garbage")).await,
        401,
        "not a JWT"
    );
    assert_eq!(
        refused_status(&url("secret", &token("other", Permission::Write, HOUR))).await,
        403,
        "wrong document"
    );
    assert_eq!(
        refused_status(&url("org-1/x", &token("org-2/*", Permission::Write, HOUR))).await,
        403,
        "pattern for another prefix"
    );

    let mut ok =
        TestClient::connect_synced(&url("org-1/x", &token("org-1/*", Permission::Write, HOUR)))
            .await;
    ok.insert(0, "allowed").await;
    let check =
        TestClient::connect_synced(&url("org-1/x", &token("org-1/x", Permission::Read, HOUR)))
            .await;
    let mut check = check;
    check
        .pump_until("the write", |c| c.text() == "allowed")
        .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_sessions_see_everything_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(auth_config(dir.path())).await;
    let url = |perm| {
        format!(
            "{}?token={}",
            app.ws_url("shared"),
            token("shared", perm, HOUR)
        )
    };
    let mut writer = TestClient::connect_synced(&url(Permission::Write)).await;
    writer.insert(0, "base").await;
    writer
        .send(awareness_frame(11, 1, r#"{"user":{"name":"writer"}}"#))
        .await;

    let mut reader = TestClient::connect_synced(&url(Permission::Read)).await;
    reader
        .pump_until("the document and the writer's presence", |c| {
            c.text() == "base" && c.awareness_clients() == vec![11]
        })
        .await;

    // The reader's awareness is relayed...
    reader
        .send(awareness_frame(22, 1, r#"{"user":{"name":"reader"}}"#))
        .await;
    writer
        .pump_until("reader presence", |c| c.awareness_clients() == vec![11, 22])
        .await;

    // ...but its updates are refused with "permission denied", and the document never changes.
    reader.insert(0, "VANDAL").await;
    reader
        .pump_until("permission denied", |c| c.denied == 1)
        .await;
    let check = TestClient::connect_synced(&url(Permission::Read)).await;
    assert_eq!(check.text(), "base");
    let http = reqwest::Client::new();
    let state = http
        .get(app.http_url("/api/docs/shared/update"))
        .bearer_auth(token("shared", Permission::Read, HOUR))
        .send()
        .await
        .unwrap();
    assert_eq!(text_of(&state.bytes().await.unwrap()), "base");
    // The reader stays connected and keeps receiving.
    writer.insert(4, "+more").await;
    reader
        .pump_until("later edits", |c| c.text().ends_with("base+more"))
        .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_enforces_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(auth_config(dir.path())).await;
    let http = reqwest::Client::new();
    let url = |p: &str| app.http_url(&format!("/api/docs/{p}"));
    let write = token("team/*", Permission::Write, HOUR);
    let read = token("team/*", Permission::Read, HOUR);

    assert_eq!(http.put(url("team/a")).send().await.unwrap().status(), 401);
    let refused = http
        .put(url("team/a"))
        .bearer_auth(forged("team/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(body["error"].is_string());
    assert_eq!(
        http.put(url("team/a"))
            .bearer_auth(&read)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        http.put(url("other/a"))
            .bearer_auth(&write)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        http.put(url("team/a"))
            .bearer_auth(&write)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let other_write = token("other/*", Permission::Write, HOUR);
    assert_eq!(
        http.put(url("other/b"))
            .bearer_auth(&other_write)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );

    // Reading with a read token works; writing does not.
    let post = http
        .post(url("team/a/update"))
        .bearer_auth(&read)
        .body(text_update("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403);
    let post = http
        .post(url("team/a/update"))
        .bearer_auth(&write)
        .body(text_update("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 204);
    let get = http
        .get(url("team/a/json"))
        .query(&[("token", &read)])
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);

    // The listing only shows what the token covers.
    let listed: serde_json::Value = http
        .get(app.http_url("/api/docs"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["team/a"]);
    assert_eq!(
        http.delete(url("team/a"))
            .bearer_auth(&read)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        http.delete(url("team/a"))
            .bearer_auth(&write)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    // Refusals are counted.
    let metrics = reqwest::get(app.http_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("weft_auth_refusals_total"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_refuse_before_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.max_connections_per_doc = 2;
    config.max_connections = 3;
    let app = spawn_app(config).await;
    let a1 = TestClient::connect_synced(&app.ws_url("a")).await;
    let _a2 = TestClient::connect_synced(&app.ws_url("a")).await;
    assert_eq!(
        refused_status(&app.ws_url("a")).await,
        503,
        "per-document limit"
    );
    let _b1 = TestClient::connect_synced(&app.ws_url("b")).await;
    assert_eq!(refused_status(&app.ws_url("c")).await, 503, "total limit");
    // A slot frees when a client leaves.
    drop(a1);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if tokio_tungstenite::connect_async(&app.ws_url("a"))
            .await
            .is_ok()
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rate_and_document_size_limits_close_the_offender() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.max_messages_per_second = 50;
    config.max_doc_bytes = 4096;
    let app = spawn_app(config).await;
    let mut writer = TestClient::connect_synced(&app.ws_url("limited")).await;
    let mut watcher = TestClient::connect_synced(&app.ws_url("limited")).await;
    writer.insert(0, "base").await;
    watcher.pump_until("base", |c| c.text() == "base").await;

    // Thousands of messages a second: closed with 1008.
    let mut flooder = TestClient::connect_synced(&app.ws_url("limited")).await;
    for i in 0..500u32 {
        let frame = awareness_frame(77, i + 1, "{}");
        if flooder
            .send_message(tokio_tungstenite::tungstenite::Message::Binary(
                frame.into(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(flooder.expect_close().await, Some(1008));

    // An update that would grow the document past 4 KiB: refused, connection closed with 1008.
    let mut big = TestClient::connect_synced(&app.ws_url("limited")).await;
    big.insert(0, &"x".repeat(5000)).await;
    assert_eq!(big.expect_close().await, Some(1008));

    let fresh = TestClient::connect_synced(&app.ws_url("limited")).await;
    assert_eq!(
        fresh.text(),
        "base",
        "neither offender changed the document"
    );
    writer.insert(4, "!").await;
    watcher
        .pump_until("later edit", |c| c.text() == "base!")
        .await;
    app.stop().await;
}

//! What a token allows, for as long as it is valid, and who may connect at all: expiry on an
//! open connection, `nbf`, audiences, lifetimes, short secrets, forged presence, per-address and
//! per-user shares, and the origins browsers may connect from. Each case was reproduced against
//! the release binary before its fix.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use weft_server::auth::AuthConfig;
use yrs::{Text, WriteTxn};

use crate::helpers::*;

const SECRET: &str = "security-tests-secret-long-enough-for-hs256";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token with exactly these claims.
fn token(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn write_token(sub: &str, exp: u64) -> String {
    token(serde_json::json!({"sub": sub, "doc": "*", "perm": "write", "exp": exp}))
}

fn read_token(sub: &str) -> String {
    token(serde_json::json!({"sub": sub, "doc": "*", "perm": "read", "exp": now() + 600}))
}

fn auth_config(dir: &std::path::Path) -> weft_server::ServerConfig {
    let mut config = test_config(dir);
    config.auth = AuthConfig {
        auth_secret: Some(SECRET.into()),
        ..AuthConfig::default()
    };
    config
}

fn with_token(url: &str, token: &str) -> String {
    format!("{url}?token={token}")
}

/// An open connection ends when its token expires (4401), and nothing it sends afterwards is
/// applied (it used to keep full access until it disconnected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_ends_when_its_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(auth_config(dir.path())).await;
    let short = write_token("brief", now() + 2);
    let mut client = TestClient::connect_synced(&with_token(&app.ws_url("expiry"), &short)).await;
    client.insert(0, "before;").await;
    let code = client.expect_close().await;
    assert_eq!(code, Some(4401), "closed for the expired token");
    // What it might still send changes nothing.
    let _ = client
        .change(|txn| txn.get_or_insert_text("text").push(txn, "after;"))
        .await;
    let fresh = with_token(&app.ws_url("expiry"), &write_token("checker", now() + 600));
    let checker = TestClient::connect_synced(&fresh).await;
    assert_eq!(checker.text(), "before;");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbf_audience_and_lifetime_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = auth_config(dir.path());
    config.auth.auth_max_token_lifetime = Some(Duration::from_secs(30 * 86_400));
    let app = spawn_app(config).await;
    let status = |token: String| {
        let url = app.http_url("/api/docs");
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let base = serde_json::json!({"sub": "u", "doc": "*", "perm": "read", "exp": now() + 600});
    let with = |key: &str, value: serde_json::Value| {
        let mut claims = base.clone();
        claims[key] = value;
        token(claims)
    };
    assert_eq!(status(token(base.clone())).await, 200);
    assert_eq!(
        status(with("nbf", (now() + 3600).into())).await,
        401,
        "not valid yet"
    );
    assert_eq!(
        status(with("nbf", (now() + 2).into())).await,
        200,
        "clock skew allowed"
    );
    // Identity providers set an audience: without --auth-audience it is not checked.
    assert_eq!(status(with("aud", "some-api".into())).await, 200);
    // Year 9999.
    assert_eq!(
        status(with("exp", 253_402_300_799u64.into())).await,
        401,
        "too long"
    );
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = auth_config(dir.path());
    config.auth.auth_audience = Some("weft".into());
    let app = spawn_app(config).await;
    let status = |token: String| {
        let url = app.http_url("/api/docs");
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(with("aud", "weft".into())).await, 200);
    assert_eq!(status(with("aud", "another-api".into())).await, 401);
    assert_eq!(
        status(token(base.clone())).await,
        401,
        "the audience is required"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_secret_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let server = WeftProcess::start(dir.path(), &["--auth-secret", "x"]);
    assert!(
        server
            .log_lines()
            .iter()
            .any(|l| l.contains("shorter than 32 bytes")),
        "{:?}",
        server.log_lines()
    );
    assert_eq!(server.terminate(), Some(0));
}

/// A read-only client cannot overwrite or remove another user's presence, and its leaving does
/// not announce the other user as gone (it used to do all three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_cannot_be_forged() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(auth_config(dir.path())).await;
    let url = app.ws_url("presence");
    let mut victim =
        TestClient::connect_synced(&with_token(&url, &write_token("alice", now() + 600))).await;
    let mut watcher = TestClient::connect_synced(&with_token(&url, &read_token("bob"))).await;
    victim
        .send(awareness_frame(111, 1, r#"{"name":"alice"}"#))
        .await;
    watcher
        .pump_until("alice's presence", |c| c.awareness_clients().contains(&111))
        .await;
    let state = |c: &TestClient| {
        c.awareness
            .state::<serde_json::Value>(yrs::ClientID::new(111))
            .map(|v| v["name"].clone())
    };

    let mut forger = TestClient::connect_synced(&with_token(&url, &read_token("mallory"))).await;
    forger
        .send(awareness_frame(111, 50, r#"{"name":"mallory"}"#))
        .await;
    forger.send(awareness_frame(111, 51, "null")).await;
    // A marker of the forger's own, to know its messages were handled.
    forger
        .send(awareness_frame(222, 1, r#"{"name":"mallory"}"#))
        .await;
    watcher
        .pump_until("the forger's own presence", |c| {
            c.awareness_clients().contains(&222)
        })
        .await;
    assert_eq!(
        state(&watcher),
        Some("alice".into()),
        "overwritten or removed"
    );
    drop(forger);
    watcher
        .pump_until("the forger gone", |c| !c.awareness_clients().contains(&222))
        .await;
    assert!(
        watcher.awareness_clients().contains(&111),
        "alice announced as gone"
    );
    assert_eq!(state(&watcher), Some("alice".into()));
    // Alice herself may still change and remove it.
    victim
        .send(awareness_frame(111, 2, r#"{"name":"alice!"}"#))
        .await;
    watcher
        .pump_until("alice's change", |c| state(c) == Some("alice!".into()))
        .await;
    app.stop().await;
}

/// One holder of tokens (or one address) cannot take every connection slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_or_address_gets_its_share_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = auth_config(dir.path());
    config.max_connections_per_user = 3;
    let app = spawn_app(config).await;
    let greedy = read_token("greedy");
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(TestClient::connect(&with_token(&app.ws_url(&format!("a/{i}")), &greedy)).await);
    }
    let refused = refused_status(&with_token(&app.ws_url("a/3"), &greedy)).await;
    assert_eq!(refused, 429, "the user's share");
    // Someone else still gets in.
    TestClient::connect(&with_token(&app.ws_url("b"), &read_token("other"))).await;
    drop(held);
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.max_connections_per_ip = 2;
    let app = spawn_app(config).await;
    let _one = TestClient::connect(&app.ws_url("x")).await;
    let _two = TestClient::connect(&app.ws_url("y")).await;
    assert_eq!(
        refused_status(&app.ws_url("z")).await,
        429,
        "the address's share"
    );
    app.stop().await;
}

/// A web page of another origin can neither connect nor write, with auth off (the default) or
/// on; the server's own pages and non-browser clients can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_other_origins_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let addr = app.addr.to_string();
    let (_, status) = raw_handshake(&addr, "/doc", "Origin: https://evil.example\r\n").await;
    assert!(status.contains("403"), "evil origin: {status}");
    let (_, status) = raw_handshake(&addr, "/doc", &format!("Origin: http://{addr}\r\n")).await;
    assert!(status.contains("101"), "own origin: {status}");
    let (_, status) = raw_handshake(&addr, "/doc", "").await;
    assert!(status.contains("101"), "no origin: {status}");

    // A cross-site "simple" request (text/plain) that would write the document.
    let update = text_update("from evil");
    let response = reqwest::Client::new()
        .post(app.http_url("/api/docs/doc/update"))
        .header("Origin", "https://evil.example")
        .header("Content-Type", "text/plain")
        .body(update.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let reader = TestClient::connect_synced(&app.ws_url("doc")).await;
    assert_eq!(reader.text(), "", "nothing written");
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.allowed_origins = Some("https://app.example".into());
    let app = spawn_app(config).await;
    let addr = app.addr.to_string();
    let (_, status) = raw_handshake(&addr, "/doc", "Origin: https://app.example\r\n").await;
    assert!(status.contains("101"), "listed origin: {status}");
    let (_, status) = raw_handshake(&addr, "/doc", "Origin: https://evil.example\r\n").await;
    assert!(status.contains("403"), "unlisted origin: {status}");
    app.stop().await;
}

/// DNS rebinding: a page at `http://evil.example:<port>` whose name now resolves to the
/// server's address is same-origin with itself, so the Origin check lets it through; with auth
/// off, the server also refuses requests that call it by a name it was not given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_rebinds_its_name_to_the_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let addr = app.addr.to_string();
    let port = app.addr.port();
    let evil = format!("evil.example:{port}");
    let origin = format!("Origin: http://{evil}\r\n");
    let (_, status) = raw_handshake_to(&addr, &evil, "/doc", &origin).await;
    assert!(status.contains("403"), "rebound WebSocket: {status}");
    let client = reqwest::Client::new();
    let rebound = |method: reqwest::Method, path: &str| {
        client
            .request(method, app.http_url(path))
            .header("Host", evil.clone())
            .header("Origin", format!("http://{evil}"))
    };
    let response = rebound(reqwest::Method::POST, "/api/docs/doc/update")
        .header("Content-Type", "text/plain")
        .body(text_update("from evil"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "rebound write");
    let response = rebound(reqwest::Method::GET, "/api/docs/doc/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "rebound read");
    let response = rebound(reqwest::Method::GET, "/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "health checks answer by any name");
    // By address and by localhost it works as before.
    let (_, status) = raw_handshake_to(&addr, &format!("localhost:{port}"), "/doc", "").await;
    assert!(status.contains("101"), "localhost: {status}");
    let reader = TestClient::connect_synced(&app.ws_url("doc")).await;
    assert_eq!(reader.text(), "", "nothing written");
    app.stop().await;

    // A name the operator lists is accepted; with auth on, names are not checked.
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.allowed_hosts = Some("weft.example".into());
    let app = spawn_app(config).await;
    let addr = app.addr.to_string();
    let host = format!("weft.example:{}", app.addr.port());
    let (_, status) = raw_handshake_to(&addr, &host, "/doc", "").await;
    assert!(status.contains("101"), "listed name: {status}");
    app.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.auth_secret = Some("a-test-secret-that-is-long-enough-for-hs256".into());
    let app = spawn_app(config).await;
    let response = reqwest::Client::new()
        .get(app.http_url("/api/docs/doc/json"))
        .header("Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "auth on: the token decides");
    app.stop().await;
}

//! Version history that can be trusted: tokens decide who reads, names and restores; edits
//! are credited to who sent them, and nobody may write under another user's client id;
//! versions and their attribution survive a restart and SIGKILL.

use std::time::Duration;

use serde_json::{json, Value};
use weft_server::auth::{claims_for, AuthConfig, Authenticator, Permission};
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, Transact};

use crate::helpers::*;
use crate::history::{announce, history_config, token, SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_respects_tokens_and_refuses_writing_under_another_users_client_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = history_config(dir.path());
    config.auth = AuthConfig {
        auth_secret: Some(SECRET.into()),
        ..AuthConfig::default()
    };
    let app = spawn_app(config).await;
    let http = reqwest::Client::new();
    let api = |path: &str| app.http_url(&format!("/api/docs/team/plan{path}"));
    let hour = Duration::from_secs(3600);
    let alice = token("alice", "team/*", Permission::Write, hour);
    let bob = token("bob", "team/*", Permission::Write, hour);
    let reader = token("carol", "team/*", Permission::Read, hour);
    let ws = |token: &str| format!("{}?token={token}", app.ws_url("team/plan"));

    let mut a = TestClient::connect_synced(&ws(&alice)).await;
    a.insert(0, "alice wrote this").await;
    let mut seen = TestClient::connect_synced(&ws(&alice)).await;
    seen.pump_until("stored", |c| c.text() == "alice wrote this")
        .await;
    let kept = http
        .post(api("/versions"))
        .bearer_auth(&alice)
        .json(&json!({"label": "v1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 201);
    let kept: Value = kept.json().await.unwrap();
    assert_eq!(
        kept["authors"],
        json!(["alice"]),
        "credited to the token's subject"
    );

    // No token, a forged one, an expired one: refused. A read token lists and reads only.
    let unauthorized = http.get(api("/versions")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let forged = Authenticator::from_config(&AuthConfig {
        auth_secret: Some("some-other-secret-with-entropy".into()),
        ..AuthConfig::default()
    })
    .unwrap()
    .unwrap()
    .issue(&claims_for("alice", "team/*", Permission::Write, hour))
    .unwrap();
    let mut expired_claims = claims_for("alice", "team/*", Permission::Write, Duration::ZERO);
    expired_claims.exp -= 3600;
    let expired = Authenticator::from_config(&AuthConfig {
        auth_secret: Some(SECRET.into()),
        ..AuthConfig::default()
    })
    .unwrap()
    .unwrap()
    .issue(&expired_claims)
    .unwrap();
    for bad in [&forged, &expired] {
        let refused = http
            .post(api("/restore"))
            .bearer_auth(bad)
            .json(&json!({"version": "1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
    }
    let listed = http
        .get(api("/versions"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(listed.headers()["x-weft-permission"], "read");
    let read = http
        .get(api("/versions/1/json"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    for (path, body) in [
        ("/versions", json!({"label": "nope"})),
        ("/restore", json!({"version": "1"})),
    ] {
        let refused = http
            .post(api(path))
            .bearer_auth(&reader)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{path}");
    }
    let other_doc = token("alice", "other/*", Permission::Write, hour);
    let refused = http
        .get(api("/versions"))
        .bearer_auth(&other_doc)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // Bob writing under alice's client id is refused and closed; nothing of it is stored.
    let mut b = TestClient::connect(&ws(&bob)).await;
    b.doc = Doc::with_client_id(a.doc.client_id().get());
    let sv = b.doc.transact().state_vector();
    b.send(weft_crdt::protocol::encode_sync_step1(&sv).to_vec())
        .await;
    b.pump_until("synced", |c| c.synced).await;
    b.insert(0, "forged ").await;
    assert_eq!(b.expect_close().await, Some(1008));
    // Alice goes on writing under her own id.
    a.insert(0, ">").await;
    let fresh = TestClient::connect_synced(&ws(&alice)).await;
    assert_eq!(fresh.text(), ">alice wrote this");
    // Bob under his own id is fine, and credited to bob.
    let mut b = TestClient::connect_synced(&ws(&bob)).await;
    b.insert(0, "bob: ").await;
    a.pump_until("bob's edit", |c| c.text().starts_with("bob: "))
        .await;
    let v2 = http
        .post(api("/versions"))
        .bearer_auth(&bob)
        .json(&json!({"label": "v2"}))
        .send()
        .await
        .unwrap();
    let v2: Value = v2.json().await.unwrap();
    assert_eq!(v2["authors"], json!(["alice", "bob"]));
    app.stop().await;
}

/// Every listed version with its state, to compare across a restart.
async fn snapshot(http: &reqwest::Client, base: &str) -> Vec<(Value, Vec<u8>)> {
    let listed: Value = http
        .get(format!("{base}/versions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out = Vec::new();
    for version in listed.as_array().unwrap() {
        let id = version["id"].as_str().unwrap();
        let update = http
            .get(format!("{base}/versions/{id}/update"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.push((version.clone(), update.to_vec()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_and_attribution_survive_restart_and_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--history-interval", "100ms"];
    let server = WeftProcess::start(dir.path(), &args);
    let http = reqwest::Client::new();
    let base = server.http_url("/api/docs/kept");
    let mut client = TestClient::connect_synced(&server.ws_url("kept")).await;
    announce(&mut client, "dana").await;
    for round in 0..5u32 {
        client.insert(round, &round.to_string()).await;
        let listed = move |http: reqwest::Client, base: String| async move {
            let v: Value = http
                .get(format!("{base}/versions"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v.as_array().unwrap().len()
        };
        let want = round as usize + 1;
        poll_until("a version per round", || {
            let (http, base) = (http.clone(), base.clone());
            async move { listed(http, base).await >= want }
        })
        .await;
    }
    // Edits after the last version: a SIGKILL loses their attribution, never a version.
    client.insert(0, "x").await;
    let mut reader = TestClient::connect_synced(&server.ws_url("kept")).await;
    reader
        .pump_until("edit stored", |c| c.text().starts_with('x'))
        .await;
    let before = snapshot(&http, &base).await;
    assert!(before.iter().all(|(v, _)| v["authors"] == json!(["dana"])));
    server.kill9();

    let server = WeftProcess::start(dir.path(), &args);
    let base = server.http_url("/api/docs/kept");
    let after = snapshot(&http, &base).await;
    assert_eq!(
        after[after.len() - before.len()..],
        before[..],
        "every version listed before the kill is listed, unchanged"
    );
    // The edit after the last version is kept in the next one.
    let mut client = TestClient::connect_synced(&server.ws_url("kept")).await;
    client.insert(0, "y").await;
    client
        .pump_until("edit", |c| c.text().starts_with("yx"))
        .await;
    poll_until("a version after the restart", || {
        let (http, base) = (http.clone(), base.clone());
        let known = before.len();
        async move { snapshot(&http, &base).await.len() > known }
    })
    .await;
    let latest = snapshot(&http, &base).await;
    assert_eq!(text_of(&latest[0].1), client.text());
    server.terminate();

    // A graceful restart keeps them all too.
    let server = WeftProcess::start(dir.path(), &args);
    let base = server.http_url("/api/docs/kept");
    assert_eq!(snapshot(&http, &base).await, latest);
    server.terminate();
}

/// A user's claim on a Yjs client id is durable as soon as it is made: after a SIGKILL right
/// after her first edit, another user still cannot write under alice's client id (and be
/// credited with her text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_claim_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--auth-secret", SECRET, "--history-interval", "1h"];
    let server = WeftProcess::start(dir.path(), &args);
    let hour = Duration::from_secs(3600);
    let alice = token("alice", "claimed", Permission::Write, hour);
    let bob = token("bob", "claimed", Permission::Write, hour);
    let ws =
        |server: &WeftProcess, token: &str| format!("{}?token={token}", server.ws_url("claimed"));
    let mut a = TestClient::connect_synced(&ws(&server, &alice)).await;
    let alice_id = a.doc.client_id().get();
    a.insert(0, "alice's words").await;
    let mut reader = TestClient::connect_synced(&ws(&server, &alice)).await;
    reader
        .pump_until("stored", |c| c.text() == "alice's words")
        .await;
    server.kill9();

    let server = WeftProcess::start(dir.path(), &args);
    let http = reqwest::Client::new();
    let api = |path: &str| server.http_url(&format!("/api/docs/claimed{path}"));
    let state = http
        .get(api("/update"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    let state = state.bytes().await.unwrap();
    let forger = Doc::with_client_id(alice_id);
    let text = forger.get_or_insert_text("text");
    let update = {
        let mut txn = forger.transact_mut();
        txn.apply_update(yrs::Update::decode_v1(&state).unwrap())
            .unwrap();
        let before = txn.state_vector();
        yrs::Text::insert(&text, &mut txn, 0, "bob: ");
        txn.encode_state_as_update_v1(&before)
    };
    let forged = http
        .post(api("/update"))
        .bearer_auth(&bob)
        .body(update)
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        400,
        "bob may not write under alice's client id"
    );
    let fresh = TestClient::connect_synced(&ws(&server, &alice)).await;
    assert_eq!(fresh.text(), "alice's words");
    server.terminate();
}

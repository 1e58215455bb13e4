//! Version history: naming, listing, reading, comparing and restoring versions over the HTTP
//! API while clients edit live; automatic versions and retention; requests checked and bounded.
//! (Tokens, attribution and durability are in `history_trust.rs`.)

use std::time::Duration;

use serde_json::{json, Value};
use weft_server::auth::{claims_for, AuthConfig, Authenticator, Permission};
use yrs::{ReadTxn, StateVector, Transact};

use crate::helpers::*;

pub(crate) const SECRET: &str = "history-test-secret-with-entropy";

pub(crate) fn history_config(dir: &std::path::Path) -> weft_server::ServerConfig {
    let mut config = test_config(dir);
    // Versions are named explicitly in most tests: keep automatic ones out of the way.
    config.history_interval = Duration::from_secs(3600);
    config
}

pub(crate) fn token(sub: &str, doc: &str, perm: Permission, ttl: Duration) -> String {
    Authenticator::from_config(&AuthConfig {
        auth_secret: Some(SECRET.into()),
        ..AuthConfig::default()
    })
    .unwrap()
    .unwrap()
    .issue(&claims_for(sub, doc, perm, ttl))
    .unwrap()
}

/// Announces `name` as the client's awareness user name (how edits are credited without auth).
pub(crate) async fn announce(client: &mut TestClient, name: &str) {
    let id = client.doc.client_id().get();
    let state = json!({"user": {"name": name, "color": "#123456"}}).to_string();
    client.send(awareness_frame(id, 1, &state)).await;
}

pub(crate) async fn get_json(http: &reqwest::Client, url: String) -> Value {
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.unwrap()
}

pub(crate) async fn name_version(
    http: &reqwest::Client,
    app: &TestApp,
    doc: &str,
    label: &str,
) -> Value {
    let response = http
        .post(app.http_url(&format!("/api/docs/{doc}/versions")))
        .json(&json!({ "label": label }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_named_listed_read_compared_and_restored_live() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(history_config(dir.path())).await;
    let http = reqwest::Client::new();
    let api = |path: &str| app.http_url(&format!("/api/docs/notes{path}"));

    let mut alice = TestClient::connect_synced(&app.ws_url("notes")).await;
    let mut bob = TestClient::connect_synced(&app.ws_url("notes")).await;
    announce(&mut alice, "alice").await;
    announce(&mut bob, "bob").await;
    bob.pump_until("alice's name", |c| c.awareness_clients().len() >= 2)
        .await;
    alice.insert(0, "Hello").await;
    bob.pump_until("Hello", |c| c.text() == "Hello").await;
    let first = name_version(&http, &app, "notes", "first draft").await;
    assert_eq!(first["id"], "1");
    assert_eq!(first["label"], "first draft");
    assert_eq!(first["authors"], json!(["alice"]));

    bob.insert(5, " world").await;
    alice
        .pump_until("world", |c| c.text() == "Hello world")
        .await;
    let second = name_version(&http, &app, "notes", "second").await;
    assert_eq!(
        second["authors"],
        json!(["bob"]),
        "only what changed since the first"
    );

    // Listing: newest first, with who and when.
    let listed = get_json(&http, api("/versions")).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["2", "1"]);
    assert!(listed[0]["at"].as_u64().unwrap() >= listed[1]["at"].as_u64().unwrap());
    assert!(listed[0]["sizeBytes"].as_u64().unwrap() > 0);

    // Reading a version, as an update and as JSON.
    let update = http.get(api("/versions/1/update")).send().await.unwrap();
    assert_eq!(update.headers()["content-type"], "application/octet-stream");
    assert_eq!(text_of(&update.bytes().await.unwrap()), "Hello");
    assert_eq!(
        get_json(&http, api("/versions/2/json")).await,
        json!({"text": "Hello world"})
    );

    // What changed, with its author.
    let changes = get_json(&http, api("/versions/2/changes")).await;
    assert_eq!(changes["since"], "1");
    let runs = &changes["texts"]["text"];
    assert_eq!(runs[0]["type"], "keep");
    assert_eq!(runs[0]["text"], "Hello");
    assert_eq!(runs[1]["type"], "insert");
    assert_eq!(runs[1]["text"], " world");
    assert_eq!(runs[1]["author"], "bob");
    assert_eq!(runs[1]["at"], second["at"]);
    // From nothing: everything is an insertion.
    let all = get_json(&http, api("/versions/1/changes")).await;
    assert_eq!(all["since"], Value::Null);
    assert_eq!(all["texts"]["text"][0]["type"], "insert");
    assert_eq!(all["texts"]["text"][0]["author"], "alice");

    // A deletion is credited to who deleted.
    {
        let text = bob.doc.get_or_insert_text("text");
        bob.change(|txn| yrs::Text::remove_range(&text, txn, 5, 6))
            .await;
    }
    alice.pump_until("deletion", |c| c.text() == "Hello").await;
    let third = name_version(&http, &app, "notes", "shorter").await;
    assert_eq!(third["id"], "3");
    let changes = get_json(&http, api("/versions/3/changes")).await;
    let runs = &changes["texts"]["text"];
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    assert_eq!(runs[1]["type"], "delete");
    assert_eq!(runs[1]["text"], " world");
    assert_eq!(runs[1]["author"], "bob");
    // Across several versions: since 1, nothing changed in the end but who did what shows.
    let across = get_json(&http, api("/versions/3/changes?since=1")).await;
    assert_eq!(across["since"], "1");
    assert_eq!(
        across["texts"]["text"],
        json!([{"type": "keep", "text": "Hello", "author": null, "at": null}])
    );

    // Restore: a new edit every connected client receives at once.
    let restored = http
        .post(api("/restore"))
        .json(&json!({"version": "2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(restored.status(), 200);
    let restored: Value = restored.json().await.unwrap();
    assert_eq!(restored["restored"], "2");
    let before = restored["before"].as_str().unwrap().to_string();
    alice
        .pump_until("restored", |c| c.text() == "Hello world")
        .await;
    bob.pump_until("restored", |c| c.text() == "Hello world")
        .await;
    // Clients keep editing on top of it.
    alice.insert(11, "!").await;
    bob.pump_until("edit after restore", |c| c.text() == "Hello world!")
        .await;

    // The state before the restore is a version (here the one just named: nothing changed
    // since); restoring it undoes the restore.
    let listed = get_json(&http, api("/versions")).await;
    let kept = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == before.as_str())
        .expect("the version before the restore is listed");
    assert_eq!(before, "3");
    assert_eq!(kept["label"], "shorter");
    assert_eq!(
        get_json(&http, api(&format!("/versions/{before}/json"))).await,
        json!({"text": "Hello"})
    );
    let undone = http
        .post(api("/restore"))
        .json(&json!({ "version": before }))
        .send()
        .await
        .unwrap();
    assert_eq!(undone.status(), 200);
    bob.pump_until("restore undone", |c| c.text() == "Hello")
        .await;
    alice
        .pump_until("restore undone", |c| c.text() == "Hello")
        .await;
    let fresh = TestClient::connect_synced(&app.ws_url("notes")).await;
    assert_eq!(fresh.text(), "Hello");
    // This time the state before had changed since the last version: it was kept, named.
    let listed = get_json(&http, api("/versions")).await;
    assert_eq!(listed[0]["label"], "Before restoring version 3");
    assert_eq!(
        get_json(
            &http,
            api(&format!(
                "/versions/{}/json",
                listed[0]["id"].as_str().unwrap()
            ))
        )
        .await,
        json!({"text": "Hello world!"})
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_requests_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = history_config(dir.path());
    config.max_message_bytes = 64 * 1024;
    let app = spawn_app(config).await;
    let http = reqwest::Client::new();
    let api = |path: &str| app.http_url(&format!("/api/docs/d{path}"));
    let mut client = TestClient::connect_synced(&app.ws_url("d")).await;
    client.insert(0, "text").await;
    name_version(&http, &app, "d", "one").await;

    let status = |r: reqwest::Response| r.status().as_u16();
    let post = |path: &str, body: Value| http.post(api(path)).json(&body).send();
    assert_eq!(
        status(post("/versions", json!({"label": ""})).await.unwrap()),
        400
    );
    assert_eq!(
        status(
            post("/versions", json!({"label": "x".repeat(201)}))
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(post("/versions", json!({"name": "x"})).await.unwrap()),
        400
    );
    let huge = http
        .post(api("/versions"))
        .body(vec![b' '; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    assert_eq!(
        status(post("/restore", json!({"version": "99"})).await.unwrap()),
        404
    );
    assert_eq!(
        status(post("/restore", json!({"version": "x"})).await.unwrap()),
        404
    );
    for path in [
        "/versions/99/update",
        "/versions/99/json",
        "/versions/99/changes",
    ] {
        assert_eq!(
            status(http.get(api(path)).send().await.unwrap()),
            404,
            "{path}"
        );
    }
    assert_eq!(
        status(
            http.get(api("/versions/1/changes?since=1"))
                .send()
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(
            http.get(api("/versions/1/changes?since=abc"))
                .send()
                .await
                .unwrap()
        ),
        400
    );
    // Ids are written one way only; a query names `since` once; labels hold no control or
    // bidirectional-override characters. Every refusal is JSON.
    for path in ["/versions/01/update", "/versions/001/json"] {
        assert_eq!(
            status(http.get(api(path)).send().await.unwrap()),
            404,
            "{path}"
        );
    }
    assert_eq!(
        status(post("/restore", json!({"version": "01"})).await.unwrap()),
        404
    );
    let twice = http
        .get(api("/versions/1/changes?since=0&since=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 400);
    let body: Value = twice.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("more than once"));
    for label in ["x\u{0}y", "a\u{1b}[31mb", "line\nbreak", "abc\u{202e}def"] {
        let refused = post("/versions", json!({ "label": label })).await.unwrap();
        assert_eq!(refused.status(), 400, "{label:?}");
    }
    let missing = http
        .get(app.http_url("/api/docs/nothing-here/versions"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // Nothing above kept a version.
    let listed = get_json(&http, api("/versions")).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // Naming an unchanged, already named state conflicts.
    assert_eq!(
        status(post("/versions", json!({"label": "again"})).await.unwrap()),
        409
    );

    // A flood of history reads: each is served or told to retry; editing goes on.
    let mut watcher = TestClient::connect_synced(&app.ws_url("d")).await;
    let reads: Vec<_> = (0..40)
        .map(|_| {
            let http = http.clone();
            let url = api("/versions/1/json");
            tokio::spawn(async move { http.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    client.insert(0, ">").await;
    watcher
        .pump_until("edit during the flood", |c| c.text() == ">text")
        .await;
    for read in reads {
        let status = read.await.unwrap();
        assert!(status == 200 || status == 503, "{status}");
    }

    // Named versions are bounded: a writer naming in a loop meets a clear refusal.
    let limit = 1000;
    let mut refused = None;
    for i in 0..=limit {
        let posted = http
            .post(api("/update"))
            .body(text_update(&format!("{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 204);
        let named = post("/versions", json!({"label": format!("n{i}")}))
            .await
            .unwrap();
        if named.status() != 201 {
            refused = Some((i, named.status().as_u16()));
            break;
        }
    }
    // Version 1 and "one" count: the 999th new name is refused.
    assert_eq!(refused, Some((limit - 1, 409)));
    app.stop().await;

    // History off: every history route answers 404, and nothing is kept.
    let dir = tempfile::tempdir().unwrap();
    let mut config = history_config(dir.path());
    config.history_retention = Duration::ZERO;
    let app = spawn_app(config).await;
    let mut client = TestClient::connect_synced(&app.ws_url("d")).await;
    client.insert(0, "text").await;
    client.pump_until("stored", |c| c.text() == "text").await;
    let off = http
        .get(app.http_url("/api/docs/d/versions"))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 404);
    let off = http
        .post(app.http_url("/api/docs/d/versions"))
        .json(&json!({"label": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 404);
    drop(client);
    let store = app.registry.store().clone();
    let name = weft_crdt::DocName::new("d").unwrap();
    app.stop().await;
    assert!(store.versions(&name).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_versions_follow_the_interval_and_retention_drops_old_unnamed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.history_interval = Duration::from_millis(200);
    config.history_retention = Duration::from_secs(3);
    let app = spawn_app(config).await;
    let http = reqwest::Client::new();
    let api = |path: &str| app.http_url(&format!("/api/docs/auto{path}"));
    let list = || async { get_json(&http, api("/versions")).await };

    let mut client = TestClient::connect_synced(&app.ws_url("auto")).await;
    client.insert(0, "a").await;
    poll_until("an automatic version", || async {
        list().await.as_array().unwrap().len() == 1
    })
    .await;
    // Nothing changed since version 1: naming it labels that version (never dropped).
    let named = name_version(&http, &app, "auto", "named").await;
    assert_eq!(named["id"], "1");
    assert_eq!(list().await[0]["label"], "named");
    client.insert(1, "b").await;
    poll_until("a second automatic version", || async {
        list().await.as_array().unwrap().len() == 2
    })
    .await;
    // Nothing changes: no more versions.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(list().await.as_array().unwrap().len(), 2);

    // Once version 2 is older than the retention, the next version drops it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    client.insert(2, "c").await;
    poll_until("old unnamed versions dropped", || async {
        let ids: Vec<String> = list()
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect();
        ids == ["3", "1"]
    })
    .await;
    // What is left still reads back whole.
    for (id, text) in [("1", "a"), ("3", "abc")] {
        let update = http
            .get(api(&format!("/versions/{id}/update")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            text_of(&update.bytes().await.unwrap()),
            text,
            "version {id}"
        );
    }

    // The last client leaving keeps a version at once.
    client.insert(3, "d").await;
    client.pump_until("stored", |c| c.text() == "abcd").await;
    drop(client);
    poll_until("a version when the last client left", || async {
        list().await[0]["id"] == "4"
    })
    .await;
    let update = http.get(api("/versions/4/update")).send().await.unwrap();
    assert_eq!(text_of(&update.bytes().await.unwrap()), "abcd");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_reaches_rich_text_and_maps_too() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(history_config(dir.path())).await;
    let http = reqwest::Client::new();
    let mut client = TestClient::connect_synced(&app.ws_url("rich")).await;
    client
        .change(|txn| {
            use yrs::{Map, WriteTxn, XmlFragment};
            let fragment = txn.get_or_insert_xml_fragment("default");
            fragment.insert(txn, 0, yrs::XmlTextPrelim::new("first"));
            let map = txn.get_or_insert_map("meta");
            map.insert(txn, "title", "one");
        })
        .await;
    let stored =
        || async { get_json(&http, app.http_url("/api/docs/rich/json")).await["meta"].clone() };
    poll_until("first change stored", || async {
        stored().await == json!({"title": "one"})
    })
    .await;
    name_version(&http, &app, "rich", "one").await;
    client
        .change(|txn| {
            use yrs::{Map, WriteTxn, XmlFragment};
            let fragment = txn.get_or_insert_xml_fragment("default");
            fragment.insert(txn, 1, yrs::XmlTextPrelim::new("second"));
            let map = txn.get_or_insert_map("meta");
            map.insert(txn, "title", "two");
            map.insert(txn, "extra", true);
        })
        .await;
    poll_until("second change stored", || async {
        stored().await == json!({"title": "two", "extra": true})
    })
    .await;
    let restored = http
        .post(app.http_url("/api/docs/rich/restore"))
        .json(&json!({"version": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(restored.status(), 200);
    let want = get_json(&http, app.http_url("/api/docs/rich/versions/1/json")).await;
    poll_until("the document equals version 1", || async {
        get_json(&http, app.http_url("/api/docs/rich/json")).await == want
    })
    .await;
    assert_eq!(want["meta"], json!({"title": "one"}));
    let state = client
        .doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    assert!(!state.is_empty());
    app.stop().await;
}

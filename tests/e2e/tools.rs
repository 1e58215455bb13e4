//! The store tools of the real binary: `weft migrate` (sled to PostgreSQL and back, each
//! document verified), `weft export` / `weft import` (a directory of Yjs update files and a
//! manifest), `weft fsck` on PostgreSQL. Every copy is checked by serving it: a client reads
//! each document from a server started on the destination.
//!
//! Needs `WEFT_TEST_POSTGRES_URL` (tests/run.sh starts a throwaway server); each test works in
//! a database of its own.

use std::path::Path;
use std::process::Command;

use yrs::updates::decoder::Decode;
use yrs::{GetString, Transact};

use crate::helpers::*;

/// A database of its own on the test PostgreSQL server, dropped at the end.
struct TestDatabase {
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl TestDatabase {
    async fn create() -> TestDatabase {
        let url = std::env::var("WEFT_TEST_POSTGRES_URL").unwrap_or_else(|_| {
            panic!("WEFT_TEST_POSTGRES_URL is not set: run the tests through tests/run.sh")
        });
        let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect to PostgreSQL");
        tokio::spawn(connection);
        let name = format!("weft_tools_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a database");
        let (base, _) = url.rsplit_once('/').expect("a URL with a database");
        let url = format!("{base}/{name}");
        TestDatabase { admin, name, url }
    }

    async fn drop(self) {
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .expect("drop the database");
    }
}

/// Runs `weft <args>`; its exit status and output.
fn weft(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run weft");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn sled(dir: &Path) -> String {
    format!("sled:{}", dir.display())
}

/// The documents every test writes: two with text (one named like a nested path) and one
/// created empty.
const DOCS: &[(&str, &str)] = &[("tools/a", "alpha"), ("tools/b/c.d", "beta")];
const EMPTY: &str = "tools/empty";

/// Writes the documents through a server on `config`'s store.
async fn write_docs(config: weft_server::ServerConfig) {
    let app = spawn_app(config).await;
    for (doc, text) in DOCS {
        let mut writer = TestClient::connect_synced(&app.ws_url(doc)).await;
        writer.insert(0, text).await;
        let mut reader = TestClient::connect_synced(&app.ws_url(doc)).await;
        reader.pump_until(doc, |c| c.text() == *text).await;
    }
    let created = reqwest::Client::new()
        .put(app.http_url(&format!("/api/docs/{EMPTY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    app.stop().await;
}

/// Checks the documents through a server on `config`'s store.
async fn check_docs(config: weft_server::ServerConfig) {
    let app = spawn_app(config).await;
    for (doc, text) in DOCS {
        let reader = TestClient::connect_synced(&app.ws_url(doc)).await;
        assert_eq!(reader.text(), *text, "document {doc}");
    }
    app.stop().await;
}

/// Checks the documents' version history came along (a version was kept when each one's last
/// client left).
async fn check_versions(config: weft_server::ServerConfig) {
    let app = spawn_app(config).await;
    for (doc, text) in DOCS {
        let url = app.http_url(&format!("/api/docs/{doc}/versions"));
        let listed: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        let id = listed[0]["id"].as_str().expect("a version").to_string();
        let json: serde_json::Value = reqwest::get(format!("{url}/{id}/json"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(json["text"], *text, "version {id} of {doc}");
    }
    let listed: serde_json::Value = reqwest::get(app.http_url("/api/docs"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(
        names.contains(&EMPTY),
        "the empty document is there: {names:?}"
    );
    app.stop().await;
}

fn with_store(dir: &Path, store: Option<&str>) -> weft_server::ServerConfig {
    let mut config = test_config(dir);
    if let Some(url) = store {
        config.store = url.to_string();
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_every_document_from_sled_to_postgres_and_back() {
    let db = TestDatabase::create().await;
    let first = tempfile::tempdir().unwrap();
    write_docs(with_store(first.path(), None)).await;

    let (ok, out) = weft(&["migrate", "--from", &sled(first.path()), "--to", &db.url]);
    assert!(ok, "{out}");
    assert!(out.contains("3 documents copied and verified"), "{out}");
    assert!(out.contains("2 versions copied and verified"), "{out}");
    let unused = tempfile::tempdir().unwrap();
    check_docs(with_store(unused.path(), Some(&db.url))).await;
    check_versions(with_store(unused.path(), Some(&db.url))).await;

    // The destination has them now: a second run refuses and writes nothing ...
    let (ok, out) = weft(&["migrate", "--from", &sled(first.path()), "--to", &db.url]);
    assert!(!ok && out.contains("already has content"), "{out}");
    // ... unless asked to merge (Yjs merges lose nothing; the text is not doubled).
    let (ok, out) = weft(&[
        "migrate",
        "--from",
        &sled(first.path()),
        "--to",
        &db.url,
        "--merge",
    ]);
    assert!(ok, "{out}");
    check_docs(with_store(unused.path(), Some(&db.url))).await;

    // And back into a new sled store.
    let second = tempfile::tempdir().unwrap();
    let (ok, out) = weft(&["migrate", "--from", &db.url, "--to", &sled(second.path())]);
    assert!(ok, "{out}");
    check_docs(with_store(second.path(), None)).await;
    check_versions(with_store(second.path(), None)).await;

    // fsck reads PostgreSQL too.
    let (ok, out) = weft(&["fsck", "--store", &db.url]);
    assert!(
        ok && out.contains("3 documents checked, 0 damaged"),
        "{out}"
    );
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_round_trip_through_yjs_files() {
    let source = tempfile::tempdir().unwrap();
    write_docs(with_store(source.path(), None)).await;
    let exports = tempfile::tempdir().unwrap();
    let out_dir = exports.path().join("backup");
    let out_arg = out_dir.to_str().unwrap();
    let data = source.path().to_str().unwrap();

    let (ok, out) = weft(&["export", "--data-dir", data, "--out", out_arg]);
    assert!(ok && out.contains("3 documents exported"), "{out}");
    // Each file is a plain Yjs update any Yjs library reads.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "weft-export");
    let documents = manifest["documents"].as_array().unwrap();
    assert_eq!(documents.len(), 3);
    for (doc, text) in DOCS {
        let entry = documents
            .iter()
            .find(|d| d["name"] == *doc)
            .expect("listed");
        let file = entry["file"].as_str().unwrap();
        assert!(
            file.starts_with("docs/") && file.ends_with(".yjs") && !file.contains("tools"),
            "a document name never becomes a path: {file}"
        );
        let bytes = std::fs::read(out_dir.join(file)).unwrap();
        let ydoc = yrs::Doc::new();
        ydoc.transact_mut()
            .apply_update(yrs::Update::decode_v1(&bytes).unwrap())
            .unwrap();
        let t = ydoc.get_or_insert_text("text");
        assert_eq!(t.get_string(&ydoc.transact()), *text);
    }
    // Never into a directory that holds something.
    let (ok, out) = weft(&["export", "--data-dir", data, "--out", out_arg]);
    assert!(!ok && out.contains("not empty"), "{out}");

    let restored = tempfile::tempdir().unwrap();
    let restored_data = restored.path().to_str().unwrap();
    let (ok, out) = weft(&["import", "--data-dir", restored_data, "--in", out_arg]);
    assert!(ok && out.contains("3 documents imported"), "{out}");
    check_docs(with_store(restored.path(), None)).await;

    // A damaged file is refused before anything is written.
    let entry = documents.iter().find(|d| d["name"] == "tools/a").unwrap();
    let file = out_dir.join(entry["file"].as_str().unwrap());
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let fresh_data = fresh.path().to_str().unwrap();
    let (ok, out) = weft(&["import", "--data-dir", fresh_data, "--in", out_arg]);
    assert!(!ok && out.contains("checksum"), "{out}");
    let (ok, out) = weft(&["fsck", "--data-dir", fresh_data]);
    assert!(
        ok && out.contains("0 documents checked"),
        "nothing written: {out}"
    );

    // A manifest pointing out of the directory is refused.
    let mut manifest = manifest.clone();
    manifest["documents"][0]["file"] = "../../etc/passwd".into();
    std::fs::write(out_dir.join("manifest.json"), manifest.to_string()).unwrap();
    let (ok, out) = weft(&["import", "--data-dir", fresh_data, "--in", out_arg]);
    assert!(!ok && out.contains("unexpected file"), "{out}");
}

/// `weft token` issues tokens the server, started with the same settings, accepts: with the
/// audience it checks, and never longer-lived than it allows (it used to print tokens the
/// server then refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_issued_as_the_server_checks_them() {
    const SECRET: &str = "a-tools-test-secret-long-enough-for-hs256";
    let settings = [
        "--auth-secret",
        SECRET,
        "--auth-audience",
        "weft-tools-test",
        "--auth-max-token-lifetime",
        "1day",
    ];
    let dir = tempfile::tempdir().unwrap();
    let server = WeftProcess::start(dir.path(), &settings);
    let mut args = vec!["token", "--doc", "issued", "--ttl", "1h"];
    args.extend_from_slice(&settings);
    let (ok, token) = weft(&args);
    assert!(ok, "{token}");
    let status = reqwest::Client::new()
        .get(server.http_url("/api/docs/issued/json"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .status();
    assert_ne!(status, 401, "the server accepts what the tool issued");

    let mut args = vec!["token", "--doc", "issued", "--ttl", "7days"];
    args.extend_from_slice(&settings);
    let (ok, out) = weft(&args);
    assert!(!ok && out.contains("--auth-max-token-lifetime"), "{out}");
    assert_eq!(server.terminate(), Some(0));
}

/// Deletions travel with the documents: a store copied by `weft migrate` or restored from
/// `weft export` never brings a deleted document back (they used to copy only the live ones,
/// so the copy of a deleted document's tombstone was lost and old clients could recreate it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_survive_migrate_export_and_import() {
    const GONE: &str = "tools/gone";
    let source = tempfile::tempdir().unwrap();
    write_docs(with_store(source.path(), None)).await;
    {
        let app = spawn_app(with_store(source.path(), None)).await;
        let mut writer = TestClient::connect_synced(&app.ws_url(GONE)).await;
        writer.insert(0, "secret").await;
        let mut reader = TestClient::connect_synced(&app.ws_url(GONE)).await;
        reader
            .pump_until("the edit", |c| c.text() == "secret")
            .await;
        drop((writer, reader));
        let status = reqwest::Client::new()
            .delete(app.http_url(&format!("/api/docs/{GONE}")))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 204);
        app.stop().await;
    }
    let still_deleted = |dir: std::path::PathBuf| async move {
        let app = spawn_app(with_store(&dir, None)).await;
        assert_eq!(refused_status(&app.ws_url(GONE)).await, 410, "in {dir:?}");
        app.stop().await;
        check_docs(with_store(&dir, None)).await;
    };

    // migrate
    let migrated = tempfile::tempdir().unwrap();
    let (ok, out) = weft(&[
        "migrate",
        "--from",
        &sled(source.path()),
        "--to",
        &sled(migrated.path()),
    ]);
    assert!(ok && out.contains("1 deletions carried over"), "{out}");
    still_deleted(migrated.path().to_path_buf()).await;

    // export and import
    let exported = tempfile::tempdir().unwrap();
    let out_dir = exported.path().join("export");
    let out_arg = out_dir.to_str().unwrap();
    let source_data = source.path().to_str().unwrap();
    let (ok, out) = weft(&["export", "--data-dir", source_data, "--out", out_arg]);
    assert!(ok && out.contains("1 deletions exported"), "{out}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["deleted"], serde_json::json!([GONE]));
    let restored = tempfile::tempdir().unwrap();
    let restored_data = restored.path().to_str().unwrap();
    let (ok, out) = weft(&["import", "--data-dir", restored_data, "--in", out_arg]);
    assert!(ok && out.contains("1 deletions carried over"), "{out}");
    still_deleted(restored.path().to_path_buf()).await;

    // A destination holding content under the deleted name: refused, or kept with --merge.
    let busy = tempfile::tempdir().unwrap();
    {
        let app = spawn_app(with_store(busy.path(), None)).await;
        let mut writer = TestClient::connect_synced(&app.ws_url(GONE)).await;
        writer.insert(0, "theirs").await;
        // Seen by another client: stored.
        let mut reader = TestClient::connect_synced(&app.ws_url(GONE)).await;
        reader
            .pump_until("the edit", |c| c.text() == "theirs")
            .await;
        drop(writer);
        app.stop().await;
    }
    let busy_data = busy.path().to_str().unwrap();
    let (ok, out) = weft(&["import", "--data-dir", busy_data, "--in", out_arg]);
    assert!(!ok && out.contains("already has content"), "{out}");
    let (ok, out) = weft(&[
        "import",
        "--data-dir",
        busy_data,
        "--in",
        out_arg,
        "--merge",
    ]);
    assert!(ok && out.contains(&format!("KEPT {GONE}")), "{out}");

    // A manifest naming a document twice is refused before anything is written.
    let mut twice = manifest.clone();
    twice["deleted"] = serde_json::json!(["tools/a"]);
    std::fs::write(out_dir.join("manifest.json"), twice.to_string()).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let fresh_data = fresh.path().to_str().unwrap();
    let (ok, out) = weft(&["import", "--data-dir", fresh_data, "--in", out_arg]);
    assert!(!ok && out.contains("more than once"), "{out}");
}

/// A tool reading a store refuses a sled directory that holds none, instead of creating an
/// empty database there and reporting "0 documents" (a mistyped path looked like an empty store).
#[test]
fn reading_tools_refuse_a_directory_without_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let missing_arg = missing.to_str().unwrap();
    let (ok, out) = weft(&["fsck", "--data-dir", missing_arg]);
    assert!(!ok && out.contains("no Weft store"), "{out}");
    let (ok, out) = weft(&[
        "export",
        "--data-dir",
        missing_arg,
        "--out",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("no Weft store"), "{out}");
    let (ok, out) = weft(&[
        "migrate",
        "--from",
        &sled(&missing),
        "--to",
        &sled(&dir.path().join("to")),
    ]);
    assert!(!ok && out.contains("no Weft store"), "{out}");
    assert!(!missing.exists(), "nothing was created");
}

//! Configuration sources of the real binary: TOML file, environment, flags, in that precedence
//! order (lowest first); and tokens signed by a backend's own key (ES256) verified with
//! `--auth-public-key`.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use weft_server::auth::{claims_for, Permission};

use crate::helpers::*;

/// Whether a second client may join document `doc` while a first one is connected.
async fn second_client_allowed(server: &WeftProcess, doc: &str) -> bool {
    let _first = TestClient::connect_synced(&server.ws_url(doc)).await;
    tokio_tungstenite::connect_async(server.ws_url(doc))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_env_and_flags_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weft.toml");
    std::fs::write(&file, "max-connections-per-doc = 1\nidle-unload = \"1m\"\n").unwrap();
    let file = file.to_str().unwrap();
    let data = dir.path().join("data");

    let from_file = WeftProcess::start(&data, &["--config", file]);
    assert!(
        !second_client_allowed(&from_file, "cfg").await,
        "file sets the limit to 1"
    );
    assert_eq!(from_file.terminate(), Some(0));

    let env = [("WEFT_MAX_CONNECTIONS_PER_DOC", "2")];
    let from_env = WeftProcess::start_with_env(&data, &["--config", file], &env);
    assert!(
        second_client_allowed(&from_env, "cfg").await,
        "env beats the file"
    );
    assert_eq!(from_env.terminate(), Some(0));

    let from_flag = WeftProcess::start_with_env(
        &data,
        &["--config", file, "--max-connections-per-doc", "1"],
        &env,
    );
    assert!(
        !second_client_allowed(&from_flag, "cfg").await,
        "flags beat env"
    );
    assert_eq!(from_flag.terminate(), Some(0));

    std::fs::write(dir.path().join("bad.toml"), "no-such-setting = 1\n").unwrap();
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["--config", dir.path().join("bad.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown setting"));
}

fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is needed to make a test key pair");
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}");
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_by_a_backend_key_are_verified_with_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let ec = openssl(
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
        None,
    );
    let private = openssl(&["pkcs8", "-topk8", "-nocrypt"], Some(&ec));
    let public = openssl(&["ec", "-pubout"], Some(&ec));
    let public_path = dir.path().join("backend.pub.pem");
    std::fs::write(&public_path, &public).unwrap();

    let mut config = test_config(&dir.path().join("data"));
    config.auth.auth_public_key = Some(public_path);
    let app = spawn_app(config).await;

    let key = EncodingKey::from_ec_pem(&private).unwrap();
    let claims = claims_for(
        "backend-user",
        "shop/*",
        Permission::Write,
        Duration::from_secs(300),
    );
    let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap();
    let url = format!("{}?token={token}", app.ws_url("shop/cart"));
    let mut client = TestClient::connect_synced(&url).await;
    client.insert(0, "signed by the backend").await;

    // An HS256 token (no secret configured) and a token from another key are refused.
    let other_ec = openssl(
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
        None,
    );
    let other_private = openssl(&["pkcs8", "-topk8", "-nocrypt"], Some(&other_ec));
    let other = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(&other_private).unwrap(),
    )
    .unwrap();
    assert_eq!(
        refused_status(&format!("{}?token={other}", app.ws_url("shop/cart"))).await,
        401
    );
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"x"),
    )
    .unwrap();
    assert_eq!(
        refused_status(&format!("{}?token={hs}", app.ws_url("shop/cart"))).await,
        401
    );
    app.stop().await;
}

/// The test harness itself: a server that cannot start fails the test at once with the reason
/// (it used to retry any error for about five seconds, hiding it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_start_says_why_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.store = "bogus".into();
    let started = std::time::Instant::now();
    let outcome = tokio::spawn(spawn_app(config)).await;
    let Err(failure) = outcome else {
        panic!("the server started with --store bogus");
    };
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    let message = failure
        .into_panic()
        .downcast::<String>()
        .map(|s| *s)
        .unwrap_or_default();
    assert!(message.contains("--store must be"), "{message}");
}

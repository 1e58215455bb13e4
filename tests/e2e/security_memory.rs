//! Hostile clients against memory, bounded in bytes before the bytes arrive: frames declaring
//! more than the limit, tiny requests answered with large frames to a client that does not
//! read, a 5-byte update asking yrs for gigabytes, bodies sent before (or without) auth, and
//! presence states too large or too many. Each was reproduced against the release binary before
//! its fix.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

/// A masked client frame header declaring `len` payload bytes.
fn frame_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut header = vec![if fin { 0x80 } else { 0 } | opcode];
    if len < 126 {
        header.push(0x80 | len as u8);
    } else if len <= u64::from(u16::MAX) {
        header.push(0x80 | 126);
        header.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        header.push(0x80 | 127);
        header.extend_from_slice(&len.to_be_bytes());
    }
    header.extend_from_slice(&[0, 0, 0, 0]); // the mask key (zero: the payload as is)
    header
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_declaring_more_than_the_limit_is_refused_from_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.max_message_bytes = 1024;
    let app = spawn_app(config).await;
    let addr = app.addr.to_string();

    // One frame declaring a terabyte: refused (1009) before the bytes come.
    let (mut stream, status) = raw_handshake(&addr, "/big", "").await;
    assert!(status.contains("101"), "{status}");
    stream
        .write_all(&frame_header(true, 2, 1 << 40))
        .await
        .unwrap();
    // A little of the payload: the server must not wait for the rest to say no.
    let _ = stream.write_all(&[0u8; 4096]).await;
    let code = read_close_code(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(code, Some(1009), "closed from the header");

    // Fragments: the first is small, the continuation's header makes it too large.
    let (mut stream, _) = raw_handshake(&addr, "/big", "").await;
    let mut first = frame_header(false, 2, 600);
    first.extend_from_slice(&[0u8; 600]);
    stream.write_all(&first).await.unwrap();
    stream.write_all(&frame_header(true, 0, 600)).await.unwrap();
    let code = read_close_code(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(code, Some(1009), "closed from the continuation's header");

    // Other clients are unaffected.
    let mut writer = TestClient::connect_synced(&app.ws_url("big")).await;
    let mut reader = TestClient::connect_synced(&app.ws_url("big")).await;
    writer.insert(0, "still fine").await;
    reader
        .pump_until("an edit", |c| c.text() == "still fine")
        .await;
    app.stop().await;
}

/// A client that stops reading and keeps asking for a large answer is closed once what is
/// queued for it passes the byte bound (it used to be bounded in frames only: 1,024 answers of
/// the whole document each), and the answers are refused before they are computed: 300
/// questions with distinct state vectors, sent in one burst, each answered with the whole 1 MiB
/// document, once took the release binary's peak memory up by 303 MiB (every answer was built
/// in one batch before any was queued).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_questions_cannot_make_the_server_queue_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let server = WeftProcess::start(dir.path(), &["--outbound-queue-bytes", "2097152"]);
    // A 1 MiB document.
    let mut writer = TestClient::connect_synced(&server.ws_url("large")).await;
    writer.insert(0, &"x".repeat(1024 * 1024)).await;
    let mut reader = TestClient::connect_synced(&server.ws_url("large")).await;
    reader
        .pump_until("the document", |c| c.text().len() == 1024 * 1024)
        .await;
    let before = server.peak_rss_kib();

    // State vectors naming clients the server does not know, a different one each time (so no
    // answer is a cached copy of another): the answer is the whole document, every time.
    let questions: Vec<Vec<u8>> = (0..300u64)
        .map(|i| {
            let mut sv = yrs::StateVector::default();
            sv.set_max(yrs::ClientID::new(424_242 + i), 1);
            weft_crdt::protocol::encode_sync_step1(&sv).to_vec()
        })
        .collect();
    let mut asker = TestClient::connect(&server.ws_url("large")).await;
    for question in questions {
        if asker
            .send_message(Message::Binary(question.into()))
            .await
            .is_err()
        {
            break;
        }
    }
    // It never read: what it is owed passed 2 MiB long before 300 MiB.
    let code = asker.expect_close().await;
    assert_eq!(code, Some(1013), "closed as too slow");
    let grown_mib = server.peak_rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "peak memory grew by {grown_mib} MiB");
    // Everyone else carries on.
    writer.insert(0, "more").await;
    reader
        .pump_until("a later edit", |c| c.text().starts_with("more"))
        .await;
    assert_eq!(server.terminate(), Some(0));
}

/// A 5-byte update claiming 2^28 clients, posted over HTTP, is refused without yrs reserving
/// half a gigabyte first (the HTTP path skipped the entry-count check every WebSocket message
/// goes through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_claiming_huge_counts_is_refused_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = WeftProcess::start(dir.path(), &[]);
    let before = server.peak_rss_kib();
    let response = reqwest::Client::new()
        .post(server.http_url("/api/docs/bomb/update"))
        .body(vec![0x80, 0x80, 0x80, 0x80, 0x01])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let after = server.peak_rss_kib();
    assert!(
        after < before + 64 * 1024,
        "peak memory grew by {} MiB",
        (after - before) / 1024
    );
    assert_eq!(server.terminate(), Some(0));
}

/// With auth on, a request's body is read only after it is authorised: an unauthenticated
/// request with a 16 MiB body is answered 401 before it sends a byte of it; an authorised one
/// that trickles its body is cut off after `--body-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_read_after_authorisation_and_within_a_time_limit() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = "a-test-secret-that-is-long-enough-for-hs256";
    let server = WeftProcess::start(
        dir.path(),
        &["--auth-secret", secret, "--body-timeout", "1s"],
    );
    let head = |extra: &str| {
        format!(
            "POST /api/docs/slow/update HTTP/1.1\r\nHost: {}\r\nContent-Length: 16777216\r\n\
             Content-Type: application/octet-stream\r\n{extra}\r\n",
            server.addr
        )
    };
    let status_of = |response: &[u8]| {
        String::from_utf8_lossy(response)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    // No token, no body sent: the answer comes at once.
    let mut stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    stream.write_all(head("").as_bytes()).await.unwrap();
    let mut response = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut response))
        .await
        .expect("an answer before the body")
        .unwrap();
    assert!(
        status_of(&response[..n]).contains("401"),
        "{}",
        status_of(&response[..n])
    );

    // Authorised, trickling: cut off after the body timeout.
    let token = weft_server::auth::Authenticator::from_config(&weft_server::auth::AuthConfig {
        auth_secret: Some(secret.into()),
        ..Default::default()
    })
    .unwrap()
    .unwrap()
    .issue(&weft_server::auth::claims_for(
        "u",
        "*",
        weft_server::auth::Permission::Write,
        Duration::from_secs(60),
    ))
    .unwrap();
    let mut stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    stream
        .write_all(head(&format!("Authorization: Bearer {token}\r\n")).as_bytes())
        .await
        .unwrap();
    let answer = async {
        let mut response = vec![0u8; 1024];
        loop {
            let _ = stream.write_all(&[0u8; 16]).await;
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(200), stream.read(&mut response)).await
            {
                return status_of(&response[..n]);
            }
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("cut off");
    assert!(status.contains("408"), "{status}");
    assert_eq!(server.terminate(), Some(0));
}

/// One connection cannot grow the presence everyone receives: a state over the size bound, or
/// more client ids than a connection may own, closes it (1008); a newcomer's greeting stays
/// small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_bounded_per_state_and_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(100 * 1024));
    let mut bloater = TestClient::connect_synced(&app.ws_url("presence")).await;
    bloater.send(awareness_frame(1, 1, &big)).await;
    assert_eq!(
        bloater.expect_close().await,
        Some(1008),
        "a state over 64 KiB"
    );

    let mut hoarder = TestClient::connect_synced(&app.ws_url("presence")).await;
    for id in 0..40 {
        hoarder
            .send(awareness_frame(1000 + id, 1, r#"{"name":"me"}"#))
            .await;
    }
    assert_eq!(
        hoarder.expect_close().await,
        Some(1008),
        "more than 16 client ids"
    );

    let mut newcomer = TestClient::connect(&app.ws_url("presence")).await;
    newcomer
        .send_message(Message::Binary(
            weft_crdt::protocol::encode_query_awareness()
                .to_vec()
                .into(),
        ))
        .await
        .unwrap();
    newcomer.pump_one(Duration::from_secs(2)).await;
    assert!(
        newcomer.awareness_clients().len() <= 16,
        "{} states in the greeting",
        newcomer.awareness_clients().len()
    );
    app.stop().await;
}

/// Every connection may send a message just under `--max-message-bytes`; many at once used to
/// make the server buffer that many times the limit. Large messages now share one budget
/// (`--max-inflight-bytes`), reserved from their headers: over it a newcomer is refused as
/// busy (1013; HTTP 503 with Retry-After) before its bytes arrive, and the budget comes back
/// when the holder is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_in_flight_share_one_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.max_message_bytes = 1024 * 1024;
    config.max_inflight_bytes = 1024 * 1024;
    let app = spawn_app(config).await;
    let addr = app.addr.to_string();

    // One connection declares 800 KiB and sends a little of it: it holds 800 KiB.
    let (mut holder, status) = raw_handshake(&addr, "/budget", "").await;
    assert!(status.contains("101"), "{status}");
    holder
        .write_all(&frame_header(true, 2, 800 * 1024))
        .await
        .unwrap();
    holder.write_all(&[0u8; 1024]).await.unwrap();
    poll_until("the holder's reservation", || async {
        metric(&addr, "weft_inflight_bytes").await >= (800 * 1024) as f64
    })
    .await;

    // Another declares 800 KiB too: refused from its header.
    let (mut second, _) = raw_handshake(&addr, "/budget", "").await;
    second
        .write_all(&frame_header(true, 2, 800 * 1024))
        .await
        .unwrap();
    let code = read_close_code(&mut second, Duration::from_secs(5)).await;
    assert_eq!(code, Some(1013), "refused as busy");
    // So is a large request body, before it is read.
    let response = reqwest::Client::new()
        .post(app.http_url("/api/docs/budget/update"))
        .body(vec![0u8; 800 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // Small messages are never held up.
    let mut writer = TestClient::connect_synced(&app.ws_url("budget")).await;
    writer.insert(0, "small edits flow").await;

    // Once the holder is gone, the budget is back: a large edit goes through.
    drop(holder);
    poll_until("the reservation is given back", || async {
        metric(&addr, "weft_inflight_bytes").await == 0.0
    })
    .await;
    let mut reader = TestClient::connect_synced(&app.ws_url("budget")).await;
    writer.insert(0, &"y".repeat(500 * 1024)).await;
    reader
        .pump_until("the large edit", |c| c.text().len() > 500 * 1024)
        .await;
    app.stop().await;
}

/// A large update broadcast to clients that do not read is held once, not once per client:
/// each connection used to copy the whole frame into its write buffer (and the Hocuspocus
/// framing copied it again), so 100 such clients and one 15 MiB update took 3.2 GB. Now a
/// large frame's body is shared and handed to each socket a chunk at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_broadcast_to_clients_that_do_not_read_is_held_once() {
    const RECEIVERS: usize = 24;
    const SIZE: usize = 8 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let server = WeftProcess::start(dir.path(), &[]);
    let addr = server.addr.clone();
    let mut stalled = Vec::new();
    for _ in 0..RECEIVERS {
        let (stream, status) = raw_handshake(&addr, "/big-broadcast", "").await;
        assert!(status.contains("101"), "{status}");
        stalled.push(stream); // never read
    }
    let mut writer = TestClient::connect_synced(&server.ws_url("big-broadcast")).await;
    let mut reader = TestClient::connect_synced(&server.ws_url("big-broadcast")).await;
    poll_until("every receiver joined", || async {
        metric(&addr, "weft_connections").await >= (RECEIVERS + 2) as f64
    })
    .await;
    let before = server.peak_rss_kib();
    writer.insert(0, &"z".repeat(SIZE)).await;
    reader
        .pump_until("the large update", |c| c.text().len() == SIZE)
        .await;
    // Give the stalled connections every chance to take (and copy) their frames.
    writer.insert(0, "after").await;
    reader
        .pump_until("a later edit", |c| c.text().starts_with("after"))
        .await;
    let grown_mib = server.peak_rss_kib().saturating_sub(before) / 1024;
    let per_receiver_copy = RECEIVERS as u64 * (SIZE as u64 / (1024 * 1024));
    assert!(
        grown_mib < per_receiver_copy / 2,
        "peak memory grew by {grown_mib} MiB for {RECEIVERS} stalled receivers of an 8 MiB frame"
    );
    drop(stalled);
    assert_eq!(server.terminate(), Some(0));
}

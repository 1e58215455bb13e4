//! Test harness: an in-process Weft server on port 0 with a temp sled dir, and a y-websocket
//! test client built on tokio-tungstenite + yrs that speaks the protocol frame by frame.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use weft_crdt::protocol::{self, ClientMessage};
use weft_crdt::Registry;
use weft_server::{Application, ServerConfig};
use yrs::sync::awareness::Awareness;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

pub const WAIT: Duration = Duration::from_secs(10);

pub use crate::process::WeftProcess;

/// Polls `check` until it holds, failing the test with `what` after [`WAIT`].
pub async fn poll_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub registry: Registry,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Default test configuration on `data_dir`.
pub fn test_config(data_dir: &Path) -> ServerConfig {
    let mut config = ServerConfig::with_defaults("127.0.0.1:0", data_dir);
    config.workers = Some(2);
    // Every test client comes from 127.0.0.1, and some tests send invalid messages on purpose:
    // the penalty box (tested on its own) must not refuse the rest of such a test.
    config.max_bad_messages_per_minute = 100_000;
    config
}

/// A raw WebSocket handshake to `addr` for `path` (with extra request header lines); the
/// stream once the server answered, and the status line.
pub async fn raw_handshake(addr: &str, path: &str, headers: &str) -> (TcpStream, String) {
    raw_handshake_to(addr, addr, path, headers).await
}

/// [`raw_handshake`] naming the server `host` in the `Host` header.
pub async fn raw_handshake_to(
    addr: &str,
    host: &str,
    path: &str,
    headers: &str,
) -> (TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        response.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    (stream, status)
}

/// Reads raw WebSocket frames from `stream` until a close frame; its code (`None` if the
/// connection ended without one, or nothing came within `wait`).
pub async fn read_close_code(stream: &mut TcpStream, wait: Duration) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = Vec::new();
    loop {
        // Frames from the server are unmasked: a 2-byte header, then the length.
        while buf.len() >= 2 {
            let opcode = buf[0] & 0x0f;
            let (len, start) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                short => (short as usize, 2),
            };
            if buf.len() < start + len {
                break;
            }
            if opcode == 8 {
                return (len >= 2).then(|| u16::from_be_bytes([buf[start], buf[start + 1]]));
            }
            buf.drain(..start + len);
        }
        let mut chunk = [0u8; 65536];
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await;
        match read {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// Starts a server; retries while a previous server on the same dir still holds sled's lock
/// (and only then: any other start-up error fails the test at once).
pub async fn spawn_app(config: ServerConfig) -> TestApp {
    let deadline = tokio::time::Instant::now() + WAIT;
    let app = loop {
        match Application::build(config.clone()).await {
            Ok(app) => break app,
            Err(error)
                if error.to_string().contains("could not acquire lock")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("server did not start: {error}"),
        }
    };
    let addr = app.addr();
    let registry = app.registry().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        registry,
        stop,
        task,
    }
}

impl TestApp {
    pub fn ws_url(&self, doc: &str) -> String {
        format!("ws://{}/{}", self.addr, doc)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Graceful shutdown, as on SIGTERM; returns once every document is flushed.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("server task")
            .expect("server result");
        drop(self.registry);
    }
}

/// The value of the unlabelled metric `name` on the server at `addr` (`host:port`); 0 if absent.
pub async fn metric(addr: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Opens the sled store of a stopped server (waiting for its lock to be released).
pub async fn open_store(dir: &Path) -> weft_store_sled::SledStore {
    for _ in 0..100 {
        if let Ok(store) = weft_store_sled::SledStore::open(dir) {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the store in {} stayed locked", dir.display());
}

/// A y-websocket client: a yrs doc plus a raw WebSocket, driven explicitly by the test.
pub struct TestClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub doc: Doc,
    pub awareness: Awareness,
    /// SyncStep2 received from the server.
    pub synced: bool,
    /// Close frame received from the server, if any.
    pub closed: Option<Option<CloseFrame>>,
    /// Auth "permission denied" messages received.
    pub denied: usize,
}

impl TestClient {
    /// Connects without syncing.
    pub async fn connect(url: &str) -> TestClient {
        match TestClient::try_connect(url).await {
            Ok(client) => client,
            Err(e) => panic!("connect {url}: {e}"),
        }
    }

    /// Connects without syncing; the error if the server is not there.
    pub async fn try_connect(url: &str) -> Result<TestClient, String> {
        // TCP_NODELAY, as browsers do: each message is sent when it is written.
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .map_err(|e| e.to_string())?;
        Ok(TestClient {
            ws,
            doc: Doc::new(),
            awareness: Awareness::new(Doc::new()),
            synced: false,
            closed: None,
            denied: 0,
        })
    }

    /// Connects and completes the sync handshake (sends SyncStep1, waits for SyncStep2).
    pub async fn connect_synced(url: &str) -> TestClient {
        let mut client = TestClient::connect(url).await;
        let sv = client.doc.transact().state_vector();
        client.send(protocol::encode_sync_step1(&sv).to_vec()).await;
        client.pump_until("initial sync", |c| c.synced).await;
        client
    }

    pub async fn send(&mut self, frame: Vec<u8>) {
        self.ws
            .send(Message::Binary(frame.into()))
            .await
            .expect("send frame");
    }

    pub async fn send_message(&mut self, message: Message) -> Result<(), String> {
        self.ws.send(message).await.map_err(|e| e.to_string())
    }

    /// Makes a local change with `change` and sends the resulting update; false if the
    /// connection is gone. (Reach root types through `txn`, e.g. `txn.get_or_insert_map`: the
    /// document is locked meanwhile.)
    pub async fn change(&mut self, change: impl FnOnce(&mut yrs::TransactionMut)) -> bool {
        let update = {
            let mut txn = self.doc.transact_mut();
            let before = txn.state_vector();
            change(&mut txn);
            txn.encode_state_as_update_v1(&before)
        };
        let frame = protocol::encode_update(&update).to_vec();
        self.ws.send(Message::Binary(frame.into())).await.is_ok()
    }

    /// Inserts text locally and sends the resulting update.
    pub async fn insert(&mut self, index: u32, chunk: &str) {
        let text = self.doc.get_or_insert_text("text");
        let update = {
            let mut txn = self.doc.transact_mut();
            let before = txn.state_vector();
            text.insert(&mut txn, index, chunk);
            txn.encode_state_as_update_v1(&before)
        };
        self.send(protocol::encode_update(&update).to_vec()).await;
    }

    pub fn text(&self) -> String {
        let text = self.doc.get_or_insert_text("text");
        text.get_string(&self.doc.transact())
    }

    /// The full document state as a v1 update.
    pub fn state(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// Handles one incoming frame; false once the connection is closed.
    pub async fn pump_one(&mut self, timeout: Duration) -> bool {
        let next = match tokio::time::timeout(timeout, self.ws.next()).await {
            Err(_) => return true,
            Ok(next) => next,
        };
        match next {
            Some(Ok(Message::Binary(frame))) => {
                self.handle(frame).await;
                true
            }
            Some(Ok(Message::Close(frame))) => {
                self.closed = Some(frame);
                false
            }
            Some(Ok(_)) => true,
            Some(Err(_)) | None => {
                self.closed.get_or_insert(None);
                false
            }
        }
    }

    /// Handles one received frame: answers SyncStep1, applies updates and awareness.
    pub async fn handle(&mut self, frame: bytes::Bytes) {
        let message = protocol::decode_client_message(frame.clone())
            .unwrap_or_else(|e| panic!("server sent an invalid frame {frame:?}: {e}"));
        match message {
            ClientMessage::SyncStep1(sv) => {
                let update = self.doc.transact().encode_state_as_update_v1(&sv);
                self.send(protocol::encode_sync_step2(&update).to_vec())
                    .await;
            }
            ClientMessage::Update(incoming) => {
                if incoming.is_sync_step2 {
                    self.synced = true;
                }
                self.doc
                    .transact_mut()
                    .apply_update(incoming.update)
                    .expect("apply server update");
            }
            ClientMessage::Awareness { update, .. } => {
                self.awareness
                    .apply_update(update)
                    .expect("apply awareness");
            }
            ClientMessage::Auth => self.denied += 1,
            ClientMessage::QueryAwareness => {}
            ClientMessage::Stateless(_) => {
                panic!("a y-websocket client was sent a stateless message")
            }
        }
    }

    /// Reads frames until `done` holds; panics after [`WAIT`].
    pub async fn pump_until(&mut self, what: &str, done: impl Fn(&TestClient) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            if !self.pump_one(Duration::from_millis(50)).await && !done(self) {
                panic!(
                    "connection closed ({:?}) while waiting for {what}",
                    self.closed
                );
            }
        }
    }

    /// The next WebSocket message as received (nothing decoded or applied); `None` once closed.
    pub async fn next_raw(&mut self) -> Option<Message> {
        match tokio::time::timeout(WAIT, self.ws.next()).await {
            Ok(Some(Ok(message))) => Some(message),
            Ok(_) => None,
            Err(_) => panic!("nothing received within {WAIT:?}"),
        }
    }

    /// Reads and handles frames until `done` holds; returns how many of them `counted` picked
    /// (panics if the connection closes, or after [`WAIT`] without a frame).
    pub async fn count_frames_until(
        &mut self,
        counted: impl Fn(&[u8]) -> bool,
        done: impl Fn(&TestClient) -> bool,
    ) -> usize {
        let mut frames = 0;
        while !done(self) {
            match self.next_raw().await {
                Some(Message::Binary(frame)) => {
                    frames += usize::from(counted(&frame));
                    self.handle(frame).await;
                }
                Some(_) => {}
                None => panic!("connection closed ({:?})", self.closed),
            }
        }
        frames
    }

    /// Reads until the server closes the connection; returns the close code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.pump_one(Duration::from_millis(50)).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "server did not close the connection"
            );
        }
        self.closed
            .clone()
            .flatten()
            .map(|frame| u16::from(frame.code))
    }

    /// Awareness client ids currently known (with a state).
    pub fn awareness_clients(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .awareness
            .iter()
            .filter(|(_, state)| state.data.is_some())
            .map(|(id, _)| id.get())
            .collect();
        ids.sort();
        ids
    }
}

/// A document's text after applying `state`.
pub fn text_of(state: &[u8]) -> String {
    let doc = Doc::new();
    let text = doc.get_or_insert_text("text");
    doc.transact_mut()
        .apply_update(Update::decode_v1(state).expect("decode state"))
        .expect("apply state");
    let out = text.get_string(&doc.transact());
    out
}

/// An awareness message announcing `client` with `json` at `clock`.
pub fn awareness_frame(client: u64, clock: u32, json: &str) -> Vec<u8> {
    use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
    let mut clients = std::collections::HashMap::new();
    clients.insert(
        yrs::ClientID::new(client),
        AwarenessUpdateEntry {
            clock,
            json: json.into(),
        },
    );
    protocol::encode_awareness(&AwarenessUpdate { clients }).to_vec()
}

/// The HTTP status a WebSocket upgrade to `url` is refused with (panics if it is accepted).
pub async fn refused_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{url}: expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("{url}: the upgrade was accepted"),
    }
}

/// A v1 update inserting `content` into the text root "text" of a fresh document.
pub fn text_update(content: &str) -> Vec<u8> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text("text");
    let mut txn = doc.transact_mut();
    text.insert(&mut txn, 0, content);
    txn.encode_state_as_update_v1(&StateVector::default())
}

/// Connects a writer and a watcher, writes "base", and returns them with the app.
pub async fn spawn_with_base(
    config: weft_server::ServerConfig,
    doc: &str,
) -> (TestApp, TestClient, TestClient) {
    let app = spawn_app(config).await;
    let mut writer = TestClient::connect_synced(&app.ws_url(doc)).await;
    let mut watcher = TestClient::connect_synced(&app.ws_url(doc)).await;
    writer.insert(0, "base").await;
    watcher.pump_until("base", |c| c.text() == "base").await;
    (app, writer, watcher)
}

/// After the offender is gone: the doc still holds exactly "base", and edits still flow.
pub async fn assert_unharmed(
    app: &TestApp,
    doc: &str,
    writer: &mut TestClient,
    watcher: &mut TestClient,
) {
    let fresh = TestClient::connect_synced(&app.ws_url(doc)).await;
    assert_eq!(fresh.text(), "base", "document unchanged by the bad input");
    writer.insert(4, "+more").await;
    watcher
        .pump_until("later edit", |c| c.text() == "base+more")
        .await;
}

//! `weft-load`: a load generator for any y-websocket-compatible server.
//!
//! Opens C connections spread over D documents; W of them are writers sending real Yjs text
//! updates at R updates/s each, the rest only read. Each inserted text carries a marker
//! (`~W<writer>S<seq>T<send time>~`) that readers find by scanning the raw update bytes, so they
//! never decode documents and the generator stays cheap. Reports end-to-end delivery latency
//! (writer send -> reader receive) percentiles, delivered updates/s, undelivered updates,
//! connect times, disconnects, the server's CPU and RSS (from `/proc/<pid>` with `--pid`) and the
//! generator's own CPU, as a table or `--json`.
//!
//! `--awareness` adds editors' cursor traffic: each writer sends an awareness update carrying a
//! marker after every update; readers report cursor states received and their latency.
//!
//! Several `--url`s (the nodes of a cluster) spread the readers and the writers over them
//! round-robin, so most deliveries cross nodes; several `--pid`s add up the servers' CPU and RSS.
//!
//! `--protocol hocuspocus` speaks Hocuspocus's framing instead: every message is prefixed with
//! the document name (a lib0 varString), a connection first sends an Auth message and waits for
//! "authenticated", and sync replies may come as type 4 (SyncReply).

mod cold_load;
mod trace;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use weft_crdt::protocol;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::{GetString, ReadTxn, StateVector, Text, Transact};

/// The framing a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// y-websocket: one document per connection, named by the URL; bare y-protocols messages.
    YWebsocket,
    /// Hocuspocus: every message prefixed with the document name; Auth message first.
    Hocuspocus,
}

/// Hocuspocus's Auth message type and its sub-types.
const HOCUSPOCUS_AUTH: u8 = 2;
const HOCUSPOCUS_AUTH_TOKEN: u8 = 0;
const HOCUSPOCUS_AUTHENTICATED: u8 = 2;
/// Hocuspocus's reply to a SyncStep1 (carries sync messages like type 0).
const HOCUSPOCUS_SYNC_REPLY: u8 = 4;

/// Load generator for y-websocket servers.
#[derive(Debug, Clone, Parser)]
#[command(name = "weft-load", version, about)]
struct Args {
    /// WebSocket URL template; `{doc}` is replaced by the document name. Repeat it for the
    /// nodes of a cluster: connections are spread over them round-robin.
    #[arg(long = "url", default_value = "ws://127.0.0.1:8080/{doc}")]
    urls: Vec<String>,
    /// Total connections (writers included).
    #[arg(long, short = 'c', default_value_t = 100)]
    connections: usize,
    /// Documents the connections are spread over.
    #[arg(long, short = 'd', default_value_t = 1)]
    docs: usize,
    /// Writers (each also counts as a connection).
    #[arg(long, short = 'w', default_value_t = 10)]
    writers: usize,
    /// Updates per second per writer; 0: as fast as the server takes them (each update sent as
    /// soon as the last one is written to the socket), for durable throughput.
    #[arg(long, short = 'r', default_value_t = 20.0)]
    rate: f64,
    /// Measured time, in seconds (after the warm-up).
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Warm-up time before measuring, in seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Time to wait for late deliveries after writers stop, in seconds.
    #[arg(long, default_value_t = 3.0)]
    drain: f64,
    /// Document name prefix (a random suffix keeps runs apart).
    #[arg(long, default_value = "load")]
    prefix: String,
    /// PID of the server, to sample its CPU and RSS (repeat for several nodes: summed).
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Concurrent connection attempts while connecting.
    #[arg(long, default_value_t = 64)]
    connect_parallelism: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// A label for this run (shown in the output).
    #[arg(long, default_value = "")]
    label: String,
    /// The server's framing.
    #[arg(long, value_enum, default_value_t = Protocol::YWebsocket)]
    protocol: Protocol,
    /// Load-time probe mode: measure connect -> SyncStep2 for this document, one connection
    /// at a time, instead of generating load (see `cold_load.rs`).
    #[arg(long)]
    probe_doc: Option<String>,
    /// Probes to run (the first one after a server start is the cold load).
    #[arg(long, default_value_t = 20)]
    probes: usize,
    /// With --probe-doc: store this editing trace's document (gzipped automerge-paper format)
    /// under that name instead of probing.
    #[arg(long)]
    seed_trace: Option<PathBuf>,
    /// Seconds to stay connected after seeding, so the server persists the document.
    #[arg(long, default_value_t = 2.0)]
    seed_wait: f64,
    /// Writers also send an awareness update (their cursor, with a marker) after every update,
    /// as editors do; readers report the awareness frames they received and the cursors'
    /// delivery latency. A server may merge or skip intermediate cursor positions, so these are
    /// not counted as undelivered.
    #[arg(long)]
    awareness: bool,
}

/// One connection to one document, speaking the server's framing.
struct Conn {
    ws: Ws,
    protocol: Protocol,
    /// The document name, lib0-encoded: Hocuspocus prefixes every message with it.
    prefix: Vec<u8>,
}

/// Read buffer of a load connection. tungstenite zeroes the free part of its read buffer
/// (default 128 KiB) before every read; with one small frame per read that memset was the
/// generator's largest cost (28 % of its CPU in the fan-out scenario).
const LOAD_READ_BUFFER: usize = 8 * 1024;

impl Conn {
    /// Opens a WebSocket to `url` for document `doc` (with TCP_NODELAY, as browsers do) and, for
    /// Hocuspocus, authenticates. `read_buffer` is tungstenite's read buffer size.
    async fn open(
        url: &str,
        doc: &str,
        protocol: Protocol,
        read_buffer: usize,
    ) -> Result<Conn, String> {
        let config = WebSocketConfig::default().read_buffer_size(read_buffer);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        Conn::from_ws(ws, doc, protocol).await
    }

    /// Wraps an upgraded WebSocket to document `doc` and, for Hocuspocus, authenticates.
    async fn from_ws(ws: Ws, doc: &str, protocol: Protocol) -> Result<Conn, String> {
        let mut prefix = Vec::new();
        prefix.write_string(doc);
        authenticate(Conn {
            ws,
            protocol,
            prefix,
        })
        .await
    }

    /// Sends SyncStep1 with `state_vector`.
    async fn send_step1(&mut self, state_vector: &StateVector) -> Result<(), String> {
        let step1 = self.frame(&protocol::encode_sync_step1(state_vector));
        self.ws.send(step1).await.map_err(|e| e.to_string())
    }

    /// Frames a y-protocols message for the wire.
    fn frame(&self, message: &[u8]) -> Message {
        frame(self.protocol, &self.prefix, message)
    }
}

/// Frames a y-protocols message for the wire (Hocuspocus: after the name prefix).
fn frame(protocol: Protocol, prefix: &[u8], message: &[u8]) -> Message {
    match protocol {
        Protocol::YWebsocket => Message::Binary(message.to_vec().into()),
        Protocol::Hocuspocus => {
            let mut framed = Vec::with_capacity(prefix.len() + message.len());
            framed.extend_from_slice(prefix);
            framed.extend_from_slice(message);
            Message::Binary(framed.into())
        }
    }
}

/// The message type and body inside a received frame (Hocuspocus: after the name prefix, with
/// SyncReply read as Sync).
fn unframe(protocol: Protocol, frame: &[u8]) -> Option<(u8, &[u8])> {
    let message = match protocol {
        Protocol::YWebsocket => frame,
        Protocol::Hocuspocus => {
            let mut cursor = Cursor::new(frame);
            cursor.read_string().ok()?;
            &frame[cursor.next..]
        }
    };
    match *message.first()? {
        HOCUSPOCUS_SYNC_REPLY if protocol == Protocol::Hocuspocus => Some((0, &message[1..])),
        kind => Some((kind, &message[1..])),
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// Finds every marker in `bytes`: (writer, seq, send time in µs). This runs for every delivered
/// update (millions per second under overload), so it looks for `~W` and reads the digits itself.
fn markers(bytes: &[u8]) -> impl Iterator<Item = (u32, u64, u64)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        while let Some(pos) = bytes[at..].iter().position(|&b| b == b'~') {
            let start = at + pos + 1;
            at = start;
            if bytes.get(start) != Some(&b'W') {
                continue;
            }
            if let Some((marker, len)) = parse_marker(&bytes[start + 1..]) {
                at = start + 1 + len;
                return Some(marker);
            }
        }
        None
    })
}

/// Parses `<writer>S<seq>T<time>~`; returns it and how many bytes it took.
fn parse_marker(rest: &[u8]) -> Option<((u32, u64, u64), usize)> {
    let (writer, a) = number_until(rest, b'S')?;
    let (seq, b) = number_until(&rest[a..], b'T')?;
    let (time, c) = number_until(&rest[a + b..], b'~')?;
    Some(((u32::try_from(writer).ok()?, seq, time), a + b + c))
}

/// A decimal number of 1 to 19 digits followed by `end`; returns it and its length with `end`.
fn number_until(bytes: &[u8], end: u8) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(20) {
        match byte {
            b'0'..=b'9' => {
                value = value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
            }
            _ if byte == end && i > 0 => return Some((value, i + 1)),
            _ => return None,
        }
    }
    None
}

/// What all tasks share.
struct Shared {
    args: Args,
    /// The measurement window, in µs since the generator's epoch (set once all are connected).
    measure_from: AtomicU64,
    measure_to: AtomicU64,
    stop_writing: AtomicBool,
    stop_reading: AtomicBool,
    /// Woken when `stop_reading` is set (readers wait on it instead of a timer per frame).
    reading_stopped: tokio::sync::Notify,
    /// Updates sent inside the window, per document.
    sent_in_window: Vec<AtomicU64>,
    /// Readers per document.
    readers_per_doc: Vec<AtomicU64>,
    /// What the readers received of the updates sent inside the window.
    updates: Totals,
    /// With `--awareness`: what the readers received of the cursors sent inside the window,
    /// and how many cursor updates were sent inside it.
    cursors: Totals,
    awareness_sent: AtomicU64,
    disconnects: AtomicU64,
    connect_errors: AtomicU64,
    connect_us: Mutex<Vec<u32>>,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(shared: &Shared, node: usize, doc: usize, run_id: &str) -> Option<Conn> {
    let name = format!("{}-{run_id}-{doc}", shared.args.prefix);
    let url = shared.args.urls[node % shared.args.urls.len()].replace("{doc}", &name);
    let started = Instant::now();
    for attempt in 0..5 {
        match Conn::open(&url, &name, shared.args.protocol, LOAD_READ_BUFFER).await {
            Ok(conn) => {
                shared
                    .connect_us
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(started.elapsed().as_micros() as u32);
                return Some(conn);
            }
            Err(_) if attempt < 4 => {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await
            }
            Err(_) => {}
        }
    }
    shared.connect_errors.fetch_add(1, Ordering::Relaxed);
    None
}

/// Hocuspocus: sends the Auth message (empty token) and waits until the server says
/// "authenticated". y-websocket needs nothing.
async fn authenticate(mut conn: Conn) -> Result<Conn, String> {
    if conn.protocol == Protocol::YWebsocket {
        return Ok(conn);
    }
    let mut auth = vec![HOCUSPOCUS_AUTH, HOCUSPOCUS_AUTH_TOKEN];
    auth.write_string("");
    let message = conn.frame(&auth);
    conn.ws.send(message).await.map_err(|e| e.to_string())?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), conn.ws.next())
            .await
            .map_err(|_| "no answer to the Auth message".to_string())?;
        match next {
            Some(Ok(Message::Binary(received))) => match unframe(conn.protocol, &received) {
                Some((HOCUSPOCUS_AUTH, [HOCUSPOCUS_AUTHENTICATED, ..])) => return Ok(conn),
                Some((HOCUSPOCUS_AUTH, _)) => return Err("permission denied".into()),
                _ => continue,
            },
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error.to_string()),
            None => return Err("closed during authentication".into()),
        }
    }
}

/// What one reader received of one kind of message (updates, or cursors) sent inside the
/// window: each marker's latency, and how many frames carried them.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    frames: u64,
}

impl Tally {
    /// Records the window's markers in `frame`, received now; the frame counts if it had any.
    fn record(&mut self, shared: &Shared, frame: &[u8]) {
        let now = now_us();
        let before = self.latencies.len();
        for (_, _, sent) in markers(frame) {
            if in_window(shared, sent) {
                self.latencies
                    .push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
            }
        }
        if self.latencies.len() > before {
            self.frames += 1;
        }
    }
}

/// Every reader's [`Tally`] of one kind, added up.
#[derive(Default)]
struct Totals {
    latencies: Mutex<Vec<u32>>,
    frames: AtomicU64,
}

impl Totals {
    fn add(&self, tally: Tally) {
        self.frames.fetch_add(tally.frames, Ordering::Relaxed);
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(tally.latencies);
    }

    /// The latencies (sorted: one per marker received), and the frames that carried them.
    fn take(&self) -> (Vec<u32>, u64) {
        let mut latencies =
            std::mem::take(&mut *self.latencies.lock().unwrap_or_else(|e| e.into_inner()));
        latencies.sort_unstable();
        (latencies, self.frames.load(Ordering::Relaxed))
    }
}

async fn reader(shared: Arc<Shared>, mut conn: Conn) {
    let mut updates = Tally {
        latencies: Vec::with_capacity(4096),
        frames: 0,
    };
    let mut cursors = Tally::default();
    let _ = conn.send_step1(&StateVector::default()).await;
    let Conn {
        mut ws,
        protocol: framing,
        prefix,
    } = conn;
    // Registered now, so a stop signalled at any later point wakes it (no timer per frame).
    let stopped = shared.reading_stopped.notified();
    tokio::pin!(stopped);
    loop {
        if shared.stop_reading.load(Ordering::Relaxed) {
            break;
        }
        let next = tokio::select! {
            biased;
            next = ws.next() => next,
            _ = &mut stopped => break,
        };
        let frame = match next {
            Some(Ok(Message::Binary(frame))) => frame,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                if !shared.stop_reading.load(Ordering::Relaxed) {
                    shared.disconnects.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            Some(Ok(_)) => continue,
        };
        match unframe(framing, &frame) {
            Some((0, [0, ..])) => {
                // The server's SyncStep1: a reader has nothing to add.
                let empty = yrs::Doc::new()
                    .transact()
                    .encode_state_as_update_v1(&StateVector::default());
                let step2 = protocol::encode_sync_step2(&empty);
                let _ = ws.send(self::frame(framing, &prefix, &step2)).await;
            }
            Some((0, _)) => updates.record(&shared, &frame),
            Some((1, _)) => cursors.record(&shared, &frame),
            _ => {}
        }
    }
    shared.updates.add(updates);
    shared.cursors.add(cursors);
}

async fn writer(shared: Arc<Shared>, writer_id: u32, doc: usize, mut conn: Conn) {
    let ydoc = yrs::Doc::new();
    let text = ydoc.get_or_insert_text("text");
    let sv = ydoc.transact().state_vector();
    let _ = conn.send_step1(&sv).await;
    let Conn {
        ws,
        protocol: framing,
        prefix,
    } = conn;
    // `--rate 0`: no ticker, each update follows the last as soon as the socket takes it.
    let mut ticker = (shared.args.rate > 0.0).then(|| {
        let period = Duration::from_secs_f64(1.0 / shared.args.rate);
        // Writers start out of phase (spread evenly over one period, by the golden ratio), as
        // people do not type in lockstep; aligned ticks would make every period one burst.
        let phase = (f64::from(writer_id) * 0.618_033_988_75).fract();
        let start = tokio::time::Instant::now() + period.mul_f64(phase);
        let mut ticker = tokio::time::interval_at(start, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        ticker
    });
    let mut seq = 0u64;
    let (mut sink, mut stream) = ws.split();
    // Drain whatever the server sends (its SyncStep1 gets an answer; updates are ignored).
    let answer = Arc::new(tokio::sync::Notify::new());
    // Set once this writer starts its closing handshake: the server's Close is then expected.
    let closing = Arc::new(AtomicBool::new(false));
    let mut drain = tokio::spawn({
        let shared = shared.clone();
        let closing = closing.clone();
        async move {
            while let Some(message) = stream.next().await {
                match message {
                    Ok(Message::Binary(frame))
                        if matches!(unframe(framing, &frame), Some((0, [0, ..]))) =>
                    {
                        answer.notify_one()
                    }
                    Ok(Message::Close(_)) | Err(_) => break,
                    _ => {}
                }
            }
            if !shared.stop_reading.load(Ordering::Relaxed) && !closing.load(Ordering::Relaxed) {
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    while !shared.stop_writing.load(Ordering::Relaxed) {
        match ticker.as_mut() {
            Some(ticker) => {
                ticker.tick().await;
            }
            // Unpaced: let the readers on this thread run now and then.
            None if seq.is_multiple_of(64) => tokio::task::yield_now().await,
            None => {}
        }
        let sent_at = now_us();
        let marker = format!("~W{writer_id}S{seq}T{sent_at}~");
        seq += 1;
        let update = {
            let mut txn = ydoc.transact_mut();
            let len = text.get_string(&txn).len() as u32;
            // Keep documents small: replace the previous marker once the text grows.
            if len > 2048 {
                text.remove_range(&mut txn, 0, len);
                text.insert(&mut txn, 0, &marker);
            } else {
                text.insert(&mut txn, len, &marker);
            }
            // What this transaction changed, as a Yjs client's update event carries it (a diff
            // against the previous state vector would also repeat the whole delete set).
            txn.encode_update_v1()
        };
        if sink
            .send(frame(framing, &prefix, &protocol::encode_update(&update)))
            .await
            .is_err()
        {
            break;
        }
        if in_window(&shared, sent_at) {
            shared.sent_in_window[doc].fetch_add(1, Ordering::Relaxed);
        }
        if shared.args.awareness {
            // The cursor after the insert, as an editor's awareness update reports it.
            let cursor = cursor_update(&ydoc, u32::try_from(seq).unwrap_or(u32::MAX), &marker);
            if sink
                .send(frame(
                    framing,
                    &prefix,
                    &protocol::encode_awareness(&cursor),
                ))
                .await
                .is_err()
            {
                break;
            }
            if in_window(&shared, sent_at) {
                shared.awareness_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // A clean closing handshake: send Close, then keep reading until the server's Close. Dropping
    // the socket with unread data would make the kernel reset it and discard the updates still in
    // its send buffer, which would then count as undelivered though the server never saw them.
    closing.store(true, Ordering::Relaxed);
    let _ = sink.close().await;
    if tokio::time::timeout(Duration::from_secs_f64(shared.args.drain), &mut drain)
        .await
        .is_err()
    {
        drain.abort();
    }
}

/// The writer's awareness state at `clock`: its name and a cursor carrying `marker`.
fn cursor_update(ydoc: &yrs::Doc, clock: u32, marker: &str) -> AwarenessUpdate {
    let id = ydoc.client_id();
    let json = format!(r#"{{"user":{{"name":"writer {id}"}},"cursor":"{marker}"}}"#);
    let mut clients = std::collections::HashMap::new();
    clients.insert(
        id,
        AwarenessUpdateEntry {
            clock,
            json: json.into(),
        },
    );
    AwarenessUpdate { clients }
}

fn in_window(shared: &Shared, at: u64) -> bool {
    at >= shared.measure_from.load(Ordering::Relaxed)
        && at < shared.measure_to.load(Ordering::Relaxed)
}

/// `utime + stime` of a process, in seconds, and its RSS in KiB.
fn proc_sample(pid: &str) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks / 100.0, rss))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(doc) = args.probe_doc.clone() {
        let done = match &args.seed_trace {
            Some(trace) => cold_load::seed(&args, &doc, trace).await,
            None => cold_load::probe(&args, &doc).await,
        };
        if let Err(error) = done {
            eprintln!("weft-load: {error}");
            std::process::exit(1);
        }
        return;
    }
    let run_id = format!("{:x}", std::process::id() ^ (now_us() as u32) ^ 0x5eed);
    let start = now_us();
    let docs = args.docs.max(1);
    let shared = Arc::new(Shared {
        measure_from: AtomicU64::new(u64::MAX),
        measure_to: AtomicU64::new(u64::MAX),
        stop_writing: AtomicBool::new(false),
        stop_reading: AtomicBool::new(false),
        reading_stopped: tokio::sync::Notify::new(),
        sent_in_window: (0..docs).map(|_| AtomicU64::new(0)).collect(),
        readers_per_doc: (0..docs).map(|_| AtomicU64::new(0)).collect(),
        updates: Totals::default(),
        cursors: Totals::default(),
        awareness_sent: AtomicU64::new(0),
        disconnects: AtomicU64::new(0),
        connect_errors: AtomicU64::new(0),
        connect_us: Mutex::new(Vec::new()),
        args: args.clone(),
    });

    // Connect every reader first, then the writers.
    let readers = args.connections.saturating_sub(args.writers);
    let nodes = args.urls.len().max(1);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.connect_parallelism.max(1)));
    let mut connects = Vec::new();
    for i in 0..args.connections {
        let shared = shared.clone();
        let semaphore = semaphore.clone();
        let run_id = run_id.clone();
        // Readers and writers each go round the documents and, independently, the nodes.
        let nth = if i < readers { i } else { i - readers };
        let doc = nth % docs;
        let node = if docs % nodes == 0 { nth / docs } else { nth };
        connects.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await.ok()?;
            connect(&shared, node, doc, &run_id)
                .await
                .map(|ws| (i, doc, ws))
        }));
    }
    let mut opened = Vec::new();
    for c in connects {
        if let Ok(Some(conn)) = c.await {
            opened.push(conn);
        }
    }
    let connect_secs = (now_us() - start) as f64 / 1e6;

    // The measurement window starts after the warm-up, once everyone is connected.
    let measure_from = now_us() + (args.warmup * 1e6) as u64;
    let measure_to = measure_from + (args.duration * 1e6) as u64;
    shared.measure_from.store(measure_from, Ordering::Relaxed);
    shared.measure_to.store(measure_to, Ordering::Relaxed);
    let mut tasks = Vec::new();
    let mut writer_id = 0u32;
    for (i, doc, ws) in opened {
        let shared = shared.clone();
        if i < readers {
            shared.readers_per_doc[doc].fetch_add(1, Ordering::Relaxed);
            tasks.push(tokio::spawn(reader(shared, ws)));
        } else {
            writer_id += 1;
            tasks.push(tokio::spawn(writer(shared, writer_id, doc, ws)));
        }
    }

    let pids: Vec<String> = args.pids.iter().map(|p| p.to_string()).collect();
    // CPU seconds and RSS summed over every server process.
    let servers_sample = || -> Option<(f64, u64)> {
        if pids.is_empty() {
            return None;
        }
        pids.iter()
            .map(|pid| proc_sample(pid))
            .try_fold((0.0, 0), |(cpu, rss), s| s.map(|(c, r)| (cpu + c, rss + r)))
    };
    tokio::time::sleep(Duration::from_micros(measure_from.saturating_sub(now_us()))).await;
    let server_before = servers_sample();
    let self_before = proc_sample("self");
    let mut rss_max = server_before.map_or(0, |s| s.1);
    while now_us() < measure_to {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some((_, rss)) = servers_sample() {
            rss_max = rss_max.max(rss);
        }
    }
    let server_after = servers_sample();
    let self_after = proc_sample("self");
    shared.stop_writing.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.drain)).await;
    shared.stop_reading.store(true, Ordering::Relaxed);
    shared.reading_stopped.notify_waiters();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }

    let (latencies, update_frames) = shared.updates.take();
    let delivered = latencies.len() as u64;
    let (awareness_latencies, awareness_frames) = shared.cursors.take();
    let awareness_states = awareness_latencies.len() as u64;
    let mut connect_us =
        std::mem::take(&mut *shared.connect_us.lock().unwrap_or_else(|e| e.into_inner()));
    connect_us.sort_unstable();
    let expected: u64 = (0..docs)
        .map(|d| {
            shared.sent_in_window[d].load(Ordering::Relaxed)
                * shared.readers_per_doc[d].load(Ordering::Relaxed)
        })
        .sum();
    let sent: u64 = shared
        .sent_in_window
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .sum();
    let window = args.duration;
    let cpu = |a: Option<(f64, u64)>, b: Option<(f64, u64)>| match (a, b) {
        (Some(a), Some(b)) => Some((b.0 - a.0) / window),
        _ => None,
    };
    let server_cpu = cpu(server_before, server_after);
    let mut report = serde_json::json!({
        "label": args.label,
        "urls": args.urls,
        "connections": args.connections,
        "documents": docs,
        "writers": args.writers,
        "rate_per_writer": args.rate,
        "duration_s": window,
        "connect_s": connect_secs,
        "connect_ms_p50": percentile(&connect_us, 0.5),
        "connect_ms_p99": percentile(&connect_us, 0.99),
        "connect_errors": shared.connect_errors.load(Ordering::Relaxed),
        "disconnects": shared.disconnects.load(Ordering::Relaxed),
        "expected_deliveries": expected,
        "delivered": delivered,
        "undelivered_pct": if expected > 0 { 100.0 * (expected.saturating_sub(delivered)) as f64 / expected as f64 } else { 0.0 },
        "sent_per_s": sent as f64 / window,
        "delivered_per_s": delivered as f64 / window,
        // How many updates one frame carried on average (servers that merge updates send fewer,
        // larger frames; every frame costs the server and the reader a send and a read).
        "updates_per_frame": if update_frames > 0 { delivered as f64 / update_frames as f64 } else { 0.0 },
        "latency_ms_p50": percentile(&latencies, 0.5),
        "latency_ms_p95": percentile(&latencies, 0.95),
        "latency_ms_p99": percentile(&latencies, 0.99),
        "latency_ms_max": latencies.last().map_or(f64::NAN, |v| *v as f64 / 1000.0),
        // Every frame a reader received for the window's updates and cursors, per second.
        "frames_received_per_s": (update_frames + awareness_frames) as f64 / window,
        "server_cpu_cores": server_cpu,
        "server_cpu_us_per_delivery": server_cpu.map(|c| if delivered > 0 { c * window * 1e6 / delivered as f64 } else { f64::NAN }),
        "server_rss_mib_end": server_after.map(|s| s.1 as f64 / 1024.0),
        "server_rss_mib_max": (!pids.is_empty()).then(|| rss_max as f64 / 1024.0),
        "loadgen_cpu_cores": cpu(self_before, self_after),
    });
    if args.awareness {
        let cursors = serde_json::json!({
            "awareness_sent_per_s": shared.awareness_sent.load(Ordering::Relaxed) as f64 / window,
            "awareness_states_received_per_s": awareness_states as f64 / window,
            "awareness_states_per_frame": if awareness_frames > 0 {
                awareness_states as f64 / awareness_frames as f64
            } else {
                0.0
            },
            "awareness_latency_ms_p50": percentile(&awareness_latencies, 0.5),
            "awareness_latency_ms_p99": percentile(&awareness_latencies, 0.99),
        });
        if let (serde_json::Value::Object(map), serde_json::Value::Object(cursors)) =
            (&mut report, cursors)
        {
            map.extend(cursors);
        }
    }
    if args.json {
        println!("{report}");
    } else {
        let mut rows: Vec<(&str, String)> = Vec::new();
        if let serde_json::Value::Object(map) = &report {
            for (k, v) in map {
                rows.push((k.as_str(), v.to_string()));
            }
        }
        for (k, v) in rows {
            println!("{k:>28}  {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::markers;

    #[test]
    fn finds_adjacent_markers_and_skips_lookalikes() {
        let bytes = b"\x01~W~W3S4~~W1S2T30~~W2S9T40~x~W5S6T~~W7S8T99";
        let found: Vec<_> = markers(bytes).collect();
        assert_eq!(found, vec![(1, 2, 30), (2, 9, 40)]);
    }
}

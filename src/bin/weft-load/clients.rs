//! The connection tasks of a load run and the state they share: connecting (with retries),
//! readers (answer the server's SyncStep1, tally the markers they receive) and writers (send
//! marked Yjs text updates at the set rate and, with `--awareness`, cursor updates).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use weft_crdt::protocol;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::{GetString, ReadTxn, StateVector, Text, Transact};

use crate::args::Args;
use crate::framing::{frame, unframe, Conn};
use crate::marker::{self, now_us, Window};
use crate::tally::{Tally, Totals};

/// What all tasks share.
pub struct Shared {
    pub args: Args,
    /// The measurement window (set once all are connected).
    pub window: Window,
    pub stop_writing: AtomicBool,
    pub stop_reading: AtomicBool,
    /// Woken when `stop_reading` is set (readers wait on it instead of a timer per frame).
    pub reading_stopped: tokio::sync::Notify,
    /// Updates sent inside the window, per document.
    pub sent_in_window: Vec<AtomicU64>,
    /// Readers per document.
    pub readers_per_doc: Vec<AtomicU64>,
    /// What the readers received of the updates sent inside the window.
    pub updates: Totals,
    /// With `--awareness`: what the readers received of the cursors sent inside the window,
    /// and how many cursor updates were sent inside it.
    pub cursors: Totals,
    pub awareness_sent: AtomicU64,
    pub disconnects: AtomicU64,
    pub connect_errors: AtomicU64,
    pub connect_us: Mutex<Vec<u32>>,
}

impl Shared {
    /// The state of a run with `args`, before anyone connects (one counter per document).
    pub fn new(args: Args) -> Shared {
        let docs = args.docs.max(1);
        Shared {
            window: Window::unset(),
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
            args,
        }
    }
}

/// Read buffer of a load connection. tungstenite zeroes the free part of its read buffer
/// (default 128 KiB) before every read; with one small frame per read that memset was the
/// generator's largest cost (28 % of its CPU in the fan-out scenario).
const LOAD_READ_BUFFER: usize = 8 * 1024;

/// Opens a connection to document `doc` on node `node` (round-robin over `--url`s), retrying with
/// backoff; records its connect time, or counts a connect error.
pub async fn connect(shared: &Shared, node: usize, doc: usize, run_id: &str) -> Option<Conn> {
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

/// A reader: answers the server's SyncStep1 and tallies the markers it receives until the
/// readers are stopped.
pub async fn reader(shared: Arc<Shared>, mut conn: Conn) {
    let mut updates = Tally::with_capacity(4096);
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
            Some((0, _)) => updates.record(&shared.window, &frame),
            Some((1, _)) => cursors.record(&shared.window, &frame),
            _ => {}
        }
    }
    shared.updates.add(updates);
    shared.cursors.add(cursors);
}

/// A writer: sends marked text updates (and, with `--awareness`, cursors) to document `doc` at
/// the set rate until the writers are stopped, then closes cleanly.
pub async fn writer(shared: Arc<Shared>, writer_id: u32, doc: usize, mut conn: Conn) {
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
        let marker = marker::encode(writer_id, seq, sent_at);
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
        if shared.window.contains(sent_at) {
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
            if shared.window.contains(sent_at) {
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

//! Load-time probes (`--probe-doc`): how long a client that has nothing waits for a document.
//!
//! `--seed-trace FILE` first stores a real editing trace's document under the probe name (sent
//! as one update by an ordinary client). Without it, `--probes K` opens K connections one after
//! another; each measures TCP connect -> SyncStep2 received for an empty state vector, the way
//! a new browser tab loads a document. Run right after starting the server, the first probe is
//! the cold load (document not in memory); the others are warm (document loaded). Each probe's
//! time is also split into its phases (TCP connected, WebSocket upgraded, SyncStep2 received),
//! so a fixed connection cost is told apart from the document's.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;
use weft_crdt::protocol;
use yrs::StateVector;

use crate::args::Args;
use crate::framing::{unframe, Conn};
use crate::trace;

/// When each phase of one probe ended, counted from its start.
struct Phases {
    /// TCP connected.
    connected: Duration,
    /// The server's 101 received (and, for Hocuspocus, authenticated).
    upgraded: Duration,
    /// SyncStep2 received: the probe's time.
    synced: Duration,
}

/// Opens one connection to `doc` on the first `--url`.
async fn open(args: &Args, doc: &str) -> Result<Conn, String> {
    // The default read buffer: a probe reads one large frame.
    let read_buffer = WebSocketConfig::default().read_buffer_size;
    Conn::open(
        &args.urls[0].replace("{doc}", doc),
        doc,
        args.protocol,
        read_buffer,
    )
    .await
}

/// Stores the trace's document under `doc`, then waits `seed_wait` for the server to persist it.
pub async fn seed(args: &Args, doc: &str, trace_path: &Path) -> Result<(), String> {
    let state = trace::replay_trace(trace_path)?;
    let mut conn = open(args, doc).await?;
    conn.send_step1(&StateVector::default()).await?;
    let update = conn.frame(&protocol::encode_update(&state));
    conn.ws.send(update).await.map_err(|e| e.to_string())?;
    let until = Instant::now() + Duration::from_secs_f64(args.seed_wait);
    while let Ok(Some(Ok(_))) = tokio::time::timeout_at(until.into(), conn.ws.next()).await {}
    let _ = conn.ws.close(None).await;
    println!(
        "{{\"seeded\":\"{doc}\",\"state_bytes\":{},\"waited_s\":{}}}",
        state.len(),
        args.seed_wait
    );
    Ok(())
}

/// Opens one connection to `doc` on the first `--url` the way [`Conn::open`] does, but with the
/// TCP connect and the WebSocket upgrade timed apart: (connection, connected, upgraded).
async fn open_timed(
    args: &Args,
    doc: &str,
    started: Instant,
) -> Result<(Conn, Duration, Duration), String> {
    let url = args.urls[0].replace("{doc}", doc);
    let request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("{url}: {e}"))?;
    let host = request.uri().host().unwrap_or("127.0.0.1").to_string();
    let port = request.uri().port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let connected = started.elapsed();
    // The default read buffer: a probe reads one large frame.
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        request,
        MaybeTlsStream::Plain(stream),
        Some(WebSocketConfig::default()),
    )
    .await
    .map_err(|e| format!("{url}: {e}"))?;
    let conn = Conn::from_ws(ws, doc, args.protocol).await?;
    Ok((conn, connected, started.elapsed()))
}

/// One probe: connect, ask with an empty state vector, wait for SyncStep2. Returns the phases'
/// times and the size of the SyncStep2 frame.
async fn probe_once(args: &Args, doc: &str) -> Result<(Phases, usize), String> {
    let started = Instant::now();
    let (mut conn, connected, upgraded) = open_timed(args, doc, started).await?;
    conn.send_step1(&StateVector::default()).await?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), conn.ws.next())
            .await
            .map_err(|_| "no SyncStep2 within 30 s".to_string())?;
        match next {
            Some(Ok(Message::Binary(frame))) => {
                if let Some((0, [1, ..])) = unframe(conn.protocol, &frame) {
                    let synced = started.elapsed();
                    let _ = conn.ws.close(None).await;
                    let phases = Phases {
                        connected,
                        upgraded,
                        synced,
                    };
                    return Ok((phases, frame.len()));
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.to_string()),
            None => return Err("closed before SyncStep2".into()),
        }
    }
}

/// Runs `args.probes` probes one after another and prints the times (ms) as JSON: the first
/// probe's, the warm ones' median, min and max, and the warm median of each phase (connect,
/// upgrade, and SyncStep1 sent -> SyncStep2 received).
pub async fn probe(args: &Args, doc: &str) -> Result<(), String> {
    let mut all = Vec::with_capacity(args.probes);
    let mut bytes = 0;
    for _ in 0..args.probes.max(1) {
        let (phases, size) = probe_once(args, doc).await?;
        all.push(phases);
        bytes = size;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let times: Vec<f64> = all.iter().map(|p| ms(p.synced)).collect();
    let warm_median = |part: &dyn Fn(&Phases) -> f64| {
        let mut values: Vec<f64> = all[1..].iter().map(part).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    };
    let mut warm = times[1..].to_vec();
    warm.sort_by(f64::total_cmp);
    let report = serde_json::json!({
        "label": args.label,
        "doc": doc,
        "step2_bytes": bytes,
        "first_ms": times[0],
        "warm_ms_p50": warm.get(warm.len() / 2),
        "warm_ms_min": warm.first(),
        "warm_ms_max": warm.last(),
        "warm_connect_ms_p50": warm_median(&|p| ms(p.connected)),
        "warm_upgrade_ms_p50": warm_median(&|p| ms(p.upgraded - p.connected)),
        "warm_sync_ms_p50": warm_median(&|p| ms(p.synced - p.upgraded)),
        "all_ms": times,
    });
    println!("{report}");
    Ok(())
}

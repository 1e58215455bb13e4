//! Load-time probes (`--probe-doc`): how long a client that has nothing waits for a document.
//!
//! `--seed-trace FILE` first stores a real editing trace's document under the probe name (sent
//! as one update by an ordinary client). Without it, `--probes K` opens K connections one after
//! another; each measures TCP connect -> SyncStep2 received for an empty state vector, the way
//! a new browser tab loads a document. Run right after starting the server, the first probe is
//! the cold load (document not in memory); the others are warm (document loaded).

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use weft_crdt::protocol;
use yrs::StateVector;

use super::{trace, unframe, Args, Conn};

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

/// One probe: connect, ask with an empty state vector, wait for SyncStep2. Returns the time and
/// the size of the SyncStep2 frame.
async fn probe_once(args: &Args, doc: &str) -> Result<(Duration, usize), String> {
    let started = Instant::now();
    let mut conn = open(args, doc).await?;
    conn.send_step1(&StateVector::default()).await?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), conn.ws.next())
            .await
            .map_err(|_| "no SyncStep2 within 30 s".to_string())?;
        match next {
            Some(Ok(Message::Binary(frame))) => {
                if let Some((0, [1, ..])) = unframe(conn.protocol, &frame) {
                    let elapsed = started.elapsed();
                    let _ = conn.ws.close(None).await;
                    return Ok((elapsed, frame.len()));
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.to_string()),
            None => return Err("closed before SyncStep2".into()),
        }
    }
}

/// Runs `args.probes` probes one after another and prints the times (ms) as JSON.
pub async fn probe(args: &Args, doc: &str) -> Result<(), String> {
    let mut times = Vec::with_capacity(args.probes);
    let mut bytes = 0;
    for _ in 0..args.probes.max(1) {
        let (elapsed, size) = probe_once(args, doc).await?;
        times.push(elapsed.as_secs_f64() * 1e3);
        bytes = size;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = times[0];
    let mut warm = times[1..].to_vec();
    warm.sort_by(f64::total_cmp);
    let median = warm.get(warm.len() / 2).copied();
    let report = serde_json::json!({
        "label": args.label,
        "doc": doc,
        "step2_bytes": bytes,
        "first_ms": first,
        "warm_ms_p50": median,
        "warm_ms_min": warm.first(),
        "warm_ms_max": warm.last(),
        "all_ms": times,
    });
    println!("{report}");
    Ok(())
}

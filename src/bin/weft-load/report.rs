//! The run's report: deliveries and undelivered updates, rates, latency percentiles, connect
//! times, and the servers' and the generator's CPU and RSS, printed as JSON (`--json`) or as a
//! table.

use std::sync::atomic::Ordering;

use crate::args::Args;
use crate::clients::Shared;

/// What the run measured besides the tasks' tallies.
pub struct Samples {
    /// Seconds taken to open every connection.
    pub connect_secs: f64,
    /// CPU seconds and RSS (KiB) of the servers (summed; none without `--pid`) at the window's
    /// start and end.
    pub server_before: Option<(f64, u64)>,
    pub server_after: Option<(f64, u64)>,
    /// The generator's own CPU seconds and RSS at the window's start and end.
    pub self_before: Option<(f64, u64)>,
    pub self_after: Option<(f64, u64)>,
    /// The servers' largest RSS (KiB) sampled during the window.
    pub server_rss_max: u64,
}

/// Prints the report of a finished run (every task stopped), as JSON or as a table.
pub fn print(args: &Args, shared: &Shared, samples: &Samples) {
    // One counter per document.
    let docs = shared.sent_in_window.len();
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
    let server_cpu = cpu(samples.server_before, samples.server_after);
    let mut report = serde_json::json!({
        "label": args.label,
        "urls": args.urls,
        "connections": args.connections,
        "documents": docs,
        "writers": args.writers,
        "rate_per_writer": args.rate,
        "duration_s": window,
        "connect_s": samples.connect_secs,
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
        "server_rss_mib_end": samples.server_after.map(|s| s.1 as f64 / 1024.0),
        "server_rss_mib_max": (!args.pids.is_empty()).then(|| samples.server_rss_max as f64 / 1024.0),
        "loadgen_cpu_cores": cpu(samples.self_before, samples.self_after),
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

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

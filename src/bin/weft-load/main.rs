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
//!
//! Where things live: `args.rs` the options; `framing.rs` a connection and the y-websocket and
//! Hocuspocus framings; `marker.rs` the clock, the measurement window and the markers;
//! `clients.rs` the connecting, reader and writer tasks and what they share; `tally.rs` what the
//! readers received; `procstat.rs` CPU and RSS from `/proc`; `report.rs` the report;
//! `cold_load.rs` the `--probe-doc` load-time probes; `trace.rs` editing-trace replay. This file
//! runs a load: connects everyone, opens the window, samples, stops, reports.

mod args;
mod clients;
mod cold_load;
mod framing;
mod marker;
mod procstat;
mod report;
mod tally;
mod trace;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use args::Args;
use clients::{connect, reader, writer, Shared};
use marker::now_us;

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
    let shared = Arc::new(Shared::new(args.clone()));

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
    shared.window.set(measure_from, measure_to);
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

    let servers = procstat::Servers::new(&args.pids);
    tokio::time::sleep(Duration::from_micros(measure_from.saturating_sub(now_us()))).await;
    let server_before = servers.sample();
    let self_before = procstat::sample("self");
    let mut rss_max = server_before.map_or(0, |s| s.1);
    while now_us() < measure_to {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some((_, rss)) = servers.sample() {
            rss_max = rss_max.max(rss);
        }
    }
    let server_after = servers.sample();
    let self_after = procstat::sample("self");
    shared.stop_writing.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.drain)).await;
    shared.stop_reading.store(true, Ordering::Relaxed);
    shared.reading_stopped.notify_waiters();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }

    let samples = report::Samples {
        connect_secs,
        server_before,
        server_after,
        self_before,
        self_after,
        server_rss_max: rss_max,
    };
    report::print(&args, &shared, &samples);
}

//! The command-line options of `weft-load`: the load run's (servers, connections, documents,
//! writers, rate, timing, output) and the `--probe-doc` load-time probes' (see `cold_load.rs`).

use std::path::PathBuf;

use clap::Parser;

use crate::framing::Protocol;

/// Load generator for y-websocket servers.
#[derive(Debug, Clone, Parser)]
#[command(name = "weft-load", version, about)]
pub struct Args {
    /// WebSocket URL template; `{doc}` is replaced by the document name. Repeat it for the
    /// nodes of a cluster: connections are spread over them round-robin.
    #[arg(long = "url", default_value = "ws://127.0.0.1:8080/{doc}")]
    pub urls: Vec<String>,
    /// Total connections (writers included).
    #[arg(long, short = 'c', default_value_t = 100)]
    pub connections: usize,
    /// Documents the connections are spread over.
    #[arg(long, short = 'd', default_value_t = 1)]
    pub docs: usize,
    /// Writers (each also counts as a connection).
    #[arg(long, short = 'w', default_value_t = 10)]
    pub writers: usize,
    /// Updates per second per writer; 0: as fast as the server takes them (each update sent as
    /// soon as the last one is written to the socket), for durable throughput.
    #[arg(long, short = 'r', default_value_t = 20.0)]
    pub rate: f64,
    /// Measured time, in seconds (after the warm-up).
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Warm-up time before measuring, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Time to wait for late deliveries after writers stop, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
    /// Document name prefix (a random suffix keeps runs apart).
    #[arg(long, default_value = "load")]
    pub prefix: String,
    /// PID of the server, to sample its CPU and RSS (repeat for several nodes: summed).
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// Concurrent connection attempts while connecting.
    #[arg(long, default_value_t = 64)]
    pub connect_parallelism: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// A label for this run (shown in the output).
    #[arg(long, default_value = "")]
    pub label: String,
    /// The server's framing.
    #[arg(long, value_enum, default_value_t = Protocol::YWebsocket)]
    pub protocol: Protocol,
    /// Load-time probe mode: measure connect -> SyncStep2 for this document, one connection
    /// at a time, instead of generating load (see `cold_load.rs`).
    #[arg(long)]
    pub probe_doc: Option<String>,
    /// Probes to run (the first one after a server start is the cold load).
    #[arg(long, default_value_t = 20)]
    pub probes: usize,
    /// With --probe-doc: store this editing trace's document (gzipped automerge-paper format)
    /// under that name instead of probing.
    #[arg(long)]
    pub seed_trace: Option<PathBuf>,
    /// Seconds to stay connected after seeding, so the server persists the document.
    #[arg(long, default_value_t = 2.0)]
    pub seed_wait: f64,
    /// Writers also send an awareness update (their cursor, with a marker) after every update,
    /// as editors do; readers report the awareness frames they received and the cursors'
    /// delivery latency. A server may merge or skip intermediate cursor positions, so these are
    /// not counted as undelivered.
    #[arg(long)]
    pub awareness: bool,
}

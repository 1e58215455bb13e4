//! Server configuration: every flag, its `WEFT_*` environment variable and its default.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use weft_crdt::DocConfig;

/// How the server runs. Flags win over environment variables, which win over defaults.
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// Address to listen on (host:port; port 0 picks a free one).
    #[arg(long, env = "WEFT_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,

    /// Directory of the embedded sled database (created if missing).
    #[arg(long, env = "WEFT_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Largest accepted WebSocket message, in bytes; larger ones close the connection (1009).
    #[arg(long, env = "WEFT_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Largest stored size of one document, in bytes; updates past it are refused.
    #[arg(long, env = "WEFT_MAX_DOC_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_doc_bytes: u64,

    /// Compact a document's log into a snapshot after this many updates.
    #[arg(long, env = "WEFT_COMPACT_AFTER_UPDATES", default_value_t = 1000)]
    pub compact_after_updates: u64,

    /// ... or after the log holds this many bytes.
    #[arg(long, env = "WEFT_COMPACT_AFTER_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub compact_after_bytes: u64,

    /// Unload a document from memory this long after its last client left (e.g. 30s, 500ms).
    #[arg(long, env = "WEFT_IDLE_UNLOAD", default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle_unload: Duration,

    /// Frames queued for one client before it counts as too slow and is disconnected.
    #[arg(long, env = "WEFT_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,

    /// How often the server pings each client.
    #[arg(long, env = "WEFT_PING_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// A client silent (no message, no pong) for this long is disconnected.
    #[arg(long, env = "WEFT_CLIENT_TIMEOUT", default_value = "45s", value_parser = humantime::parse_duration)]
    pub client_timeout: Duration,

    /// HTTP worker threads (default: one per CPU).
    #[arg(long, env = "WEFT_WORKERS")]
    pub workers: Option<usize>,

    /// Log format.
    #[arg(long, env = "WEFT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl ServerConfig {
    /// The configuration with every default, listening on `addr` and storing in `data_dir`.
    pub fn with_defaults(addr: &str, data_dir: impl Into<PathBuf>) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            config: ServerConfig,
        }
        let mut config = Defaults::parse_from(["weft"]).config;
        config.addr = addr.to_string();
        config.data_dir = data_dir.into();
        config
    }

    /// The document-layer part of the configuration.
    pub fn doc_config(&self) -> DocConfig {
        DocConfig {
            compact_after_updates: self.compact_after_updates,
            compact_after_bytes: self.compact_after_bytes,
            idle_unload: self.idle_unload,
            outbound_queue: self.outbound_queue,
            max_doc_bytes: self.max_doc_bytes,
            ..DocConfig::default()
        }
    }
}

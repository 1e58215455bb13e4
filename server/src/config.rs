//! Server configuration: every flag, its `WEFT_*` environment variable and its default.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use weft_crdt::DocConfig;

use crate::auth::AuthConfig;
use crate::webhook::WebhookConfig;

/// How the server runs. Flags win over environment variables, which win over the config file
/// (`--config`), which wins over defaults.
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// TOML file with any of these settings (keys as the long flag names, e.g.
    /// `max-connections = 5000`).
    #[arg(long, env = "WEFT_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on (host:port; port 0 picks a free one).
    #[arg(long, env = "WEFT_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,

    /// Directory of the embedded sled database (created if missing).
    #[arg(long, env = "WEFT_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Memory for the store's page cache, in bytes (sled keeps about this much).
    #[arg(long, env = "WEFT_CACHE_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub cache_bytes: u64,

    /// Where documents are stored: `sled` (the embedded database in --data-dir) or a
    /// PostgreSQL URL (`postgres://user:password@host:port/db`) shared by a cluster's nodes.
    #[arg(long, env = "WEFT_STORE", default_value = "sled")]
    pub store: String,

    /// Connections this node opens to PostgreSQL at most.
    #[arg(long, env = "WEFT_POSTGRES_POOL", default_value_t = 16)]
    pub postgres_pool: usize,

    /// Redis URL (`redis://host:port`) through which the nodes of a cluster relay edits and
    /// presence. Unset: a single node. Requires a PostgreSQL store.
    #[arg(long, env = "WEFT_REDIS")]
    pub redis: Option<String>,

    /// Prefix of every Redis key Weft uses (lets several clusters share one Redis).
    #[arg(long, env = "WEFT_REDIS_PREFIX", default_value = "weft:")]
    pub redis_prefix: String,

    /// Entries kept in each document's Redis stream (approximately).
    #[arg(long, env = "WEFT_REDIS_STREAM_MAXLEN", default_value_t = 10_000)]
    pub redis_stream_maxlen: usize,

    /// A document's Redis stream expires this long after its last entry.
    #[arg(long, env = "WEFT_REDIS_STREAM_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub redis_stream_ttl: Duration,

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

    /// Bytes queued for one client before it counts as too slow and is disconnected (1013); one
    /// frame larger than this is still sent when nothing else is queued.
    #[arg(long, env = "WEFT_OUTBOUND_QUEUE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub outbound_queue_bytes: usize,

    /// Bytes all large messages and request bodies in flight at once may take together (each
    /// over 64 KiB reserves its size as soon as it is known); a message that does not fit is
    /// refused as busy (WebSocket 1013, HTTP 503) before its bytes arrive.
    #[arg(long, env = "WEFT_MAX_INFLIGHT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_inflight_bytes: usize,

    /// Largest awareness state (presence) one client may set, in bytes; more closes it (1008).
    #[arg(long, env = "WEFT_MAX_AWARENESS_BYTES", default_value_t = 64 * 1024)]
    pub max_awareness_bytes: usize,

    /// Most awareness client ids one connection may own; more closes it (1008).
    #[arg(long, env = "WEFT_MAX_AWARENESS_CLIENTS", default_value_t = 16)]
    pub max_awareness_clients: usize,

    /// Longest a document holds updates back while its clients are still receiving earlier
    /// ones, so that they go out merged into one frame (`0s` turns coalescing off).
    #[arg(long, env = "WEFT_COALESCE_MAX", default_value = "5ms", value_parser = humantime::parse_duration)]
    pub coalesce_max: Duration,

    /// Least time between two broadcasts (updates or awareness) of a document, per session it
    /// has (documents with 16 or more sessions; at most 20 ms): a busy document sends fewer,
    /// larger frames, while an update arriving later than that goes out at once (`0s` turns
    /// pacing off: lower latency for busy documents, more CPU per update).
    #[arg(long, env = "WEFT_BROADCAST_PACE", default_value = "15us", value_parser = humantime::parse_duration)]
    pub broadcast_pace: Duration,

    /// While a document changes, a version of it is kept at least this often (and one when
    /// its last client leaves); see README "History".
    #[arg(long, env = "WEFT_HISTORY_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub history_interval: Duration,

    /// Unnamed versions older than this are dropped (named ones are kept); `0s` turns version
    /// history off (no versions kept, the history API answers 404).
    #[arg(long, env = "WEFT_HISTORY_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub history_retention: Duration,

    /// How often the server pings each client.
    #[arg(long, env = "WEFT_PING_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// A client silent (no message, no pong) for this long is disconnected.
    #[arg(long, env = "WEFT_CLIENT_TIMEOUT", default_value = "45s", value_parser = humantime::parse_duration)]
    pub client_timeout: Duration,

    /// Most WebSocket connections in total; more are refused with 503 before the upgrade.
    #[arg(long, env = "WEFT_MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,

    /// Most WebSocket connections to one document; more are refused with 503.
    #[arg(long, env = "WEFT_MAX_CONNECTIONS_PER_DOC", default_value_t = 4096)]
    pub max_connections_per_doc: usize,

    /// Messages per second one connection may send (bursts of twice that are allowed);
    /// a connection over it is closed with 1008.
    #[arg(long, env = "WEFT_MAX_MESSAGES_PER_SECOND", default_value_t = 1000)]
    pub max_messages_per_second: u32,

    /// Most WebSocket connections from one client address; more are refused with 429.
    #[arg(long, env = "WEFT_MAX_CONNECTIONS_PER_IP", default_value_t = 2048)]
    pub max_connections_per_ip: usize,

    /// Most WebSocket connections of one user (the token's `sub`; with auth off, every client
    /// is `anonymous` and only the address cap applies); more are refused with 429.
    #[arg(long, env = "WEFT_MAX_CONNECTIONS_PER_USER", default_value_t = 512)]
    pub max_connections_per_user: usize,

    /// Invalid messages (connections closed with 1007, updates refused with 400) one client
    /// address may send per minute; past that its connections and writes are refused with 429
    /// until the minute is over.
    #[arg(long, env = "WEFT_MAX_BAD_MESSAGES_PER_MINUTE", default_value_t = 20)]
    pub max_bad_messages_per_minute: u32,

    /// Origins browsers may connect and write from (comma-separated, e.g.
    /// `https://app.example.com,https://admin.example.com`, or `*` for any). Unset: only the
    /// server's own origin (the `Origin` header matching `Host`). Requests without an `Origin`
    /// (non-browser clients) are not affected.
    #[arg(long, env = "WEFT_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,

    /// With auth off, the host names requests may call the server by, besides IP addresses and
    /// `localhost` (comma-separated; `*`: any). Other names are refused (403): a web page that
    /// rebinds its own name to this server's address (DNS rebinding) gets nowhere. Not checked
    /// with auth on.
    #[arg(long, env = "WEFT_ALLOWED_HOSTS")]
    pub allowed_hosts: Option<String>,

    /// Longest an HTTP request may take to send its body (408 after that).
    #[arg(long, env = "WEFT_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub webhook: WebhookConfig,

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

    /// Which store `--store` names.
    pub fn store_kind(&self) -> Result<StoreKind<'_>, String> {
        let store = self.store.trim();
        if store == "sled" {
            Ok(StoreKind::Sled)
        } else if store.starts_with("postgres://") || store.starts_with("postgresql://") {
            Ok(StoreKind::Postgres(store))
        } else {
            Err(format!(
                "--store must be `sled` or a postgres:// URL, not {store:?}"
            ))
        }
    }

    /// The document-layer part of the configuration.
    pub fn doc_config(&self) -> DocConfig {
        DocConfig {
            compact_after_updates: self.compact_after_updates,
            compact_after_bytes: self.compact_after_bytes,
            idle_unload: self.idle_unload,
            coalesce_max: self.coalesce_max,
            broadcast_pace: self.broadcast_pace,
            max_doc_bytes: self.max_doc_bytes,
            max_awareness_bytes: self.max_awareness_bytes,
            max_awareness_clients: self.max_awareness_clients,
            history: weft_crdt::history::HistoryConfig {
                interval: self.history_interval.max(Duration::from_millis(100)),
                retention: self.history_retention,
            },
            ..DocConfig::default()
        }
    }
}

/// Where documents are stored, as `--store` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind<'a> {
    /// The embedded sled database in `--data-dir`.
    Sled,
    /// PostgreSQL at this URL (shared by a cluster's nodes).
    Postgres(&'a str),
}

/// Why the configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's complaint.
        source: toml::de::Error,
    },
    /// A key is not a known setting, or its value is not a plain value.
    #[error("config file {path}: {problem}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

/// Parses the command line of a `T` whose arguments include [`ServerConfig`]: when `--config`
/// (or `WEFT_CONFIG`) names a TOML file, each of its keys (long flag names, `-` or `_`) fills a
/// setting that neither a flag nor an environment variable set. Precedence: flags, env, file,
/// defaults. Exits with clap's usual message on bad flags or `--help`.
pub fn parse_with_config_file<T: clap::Parser>() -> Result<T, ConfigFileError> {
    use clap::parser::ValueSource;
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = T::command();
    let matches = command.clone().get_matches_from(&args);
    if matches.subcommand_name().is_some() {
        return Ok(T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()));
    }
    let Some(path) = matches.get_one::<PathBuf>("config").cloned() else {
        return Ok(T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()));
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| ConfigFileError::Parse {
        path: shown.clone(),
        source,
    })?;
    let mut extra: Vec<std::ffi::OsString> = Vec::new();
    for (key, value) in table {
        let id = key.replace('-', "_");
        let known = command
            .get_arguments()
            .any(|a| a.get_id().as_str() == id && a.get_long().is_some());
        if !known || id == "config" {
            return Err(ConfigFileError::Key {
                path: shown,
                problem: format!("unknown setting {key:?}"),
            });
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(ConfigFileError::Key {
                    path: shown,
                    problem: format!("{key:?} must be a string or a number, not {other}"),
                })
            }
        };
        let from_default = matches!(
            matches.value_source(&id),
            None | Some(ValueSource::DefaultValue)
        );
        if from_default {
            extra.push(format!("--{}", key.replace('_', "-")).into());
            extra.push(value.into());
        }
    }
    let mut all = args;
    all.extend(extra);
    Ok(T::parse_from(all))
}

//! Weft's cluster fan-out over Redis Streams: [`RedisFanout`], implementing
//! `weft_crdt::fanout::Fanout`.
//!
//! # Layout
//! One file: the fan-out, its publisher, reader and heartbeat tasks.
//!
//! # In Redis
//! Keys (under a configurable prefix, `weft:` by default):
//! - `doc:<name>`: a stream per document. Each entry is `n` (publishing node id, 16 bytes),
//!   `k` (`m` = a y-protocols message, `x` = the document was deleted) and `d` (the message).
//!   Trimmed to about `stream_maxlen` entries and expired `stream_ttl` after the last write.
//! - `node:<id>`: a node's heartbeat, refreshed every [`HEARTBEAT`], expiring after
//!   [`NODE_EXPIRY`]. When a node's key is gone, the others drop its clients' presence.
//! - `wake:<id>`: a node's private stream, written to interrupt its own blocking read when it
//!   subscribes to a new document.
//!
//! Per node there is one publisher task (pipelines every waiting `XADD`), one reader task
//! (`XREAD BLOCK` over the streams of every loaded document plus its wake stream) and one
//! heartbeat task. Entries a node published itself are skipped by its reader, so nothing loops.
//! When the reader's connection fails it reconnects from the positions it had, and asks every
//! loaded document to re-read the shared store (anything published meanwhile may be lost to
//! Redis, but it is durable in the store). The reader never waits for a document: it hands
//! entries to each document's `RemoteInbox`, which defers to a store re-read when that
//! document's mailbox is full, so one busy document cannot stall the others.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Value};
use tokio::sync::mpsc;
use uuid::Uuid;
use weft_crdt::fanout::{
    Delivered, Fanout, FanoutError, NodeId, RemoteEvent, RemoteInbox, RemoteMessage,
};
use weft_crdt::DocName;

/// How often a node refreshes its heartbeat key and checks the others'.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node whose heartbeat is this old counts as gone.
pub const NODE_EXPIRY: Duration = Duration::from_secs(6);
/// Longest a blocking read waits before it is issued again.
const READ_BLOCK: Duration = Duration::from_secs(5);
/// Most entries taken from one stream per read.
const READ_COUNT: usize = 512;
/// Most messages sent in one pipeline.
const PUBLISH_BATCH: usize = 512;

/// How to reach Redis and how long streams are kept.
#[derive(Debug, Clone)]
pub struct RedisFanoutConfig {
    /// `redis://host:port/db` (or `rediss://` if the redis crate is built with TLS).
    pub url: String,
    /// Prefix of every key Weft uses, so several clusters can share one Redis.
    pub key_prefix: String,
    /// Entries kept per document stream (approximately: trimming is lazy).
    pub stream_maxlen: usize,
    /// A document stream expires this long after its last entry.
    pub stream_ttl: Duration,
}

impl RedisFanoutConfig {
    /// Defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        RedisFanoutConfig {
            url: url.into(),
            key_prefix: "weft:".into(),
            stream_maxlen: 10_000,
            stream_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Fan-out through Redis Streams; see the module documentation.
pub struct RedisFanout {
    shared: Arc<Shared>,
    publisher: mpsc::UnboundedSender<(DocName, RemoteMessage)>,
}

/// A loaded document's subscription.
struct Subscription {
    generation: u64,
    inbox: RemoteInbox,
    /// Id of the last stream entry handled (or the stream's end when subscribing).
    position: String,
}

struct Shared {
    node: NodeId,
    config: RedisFanoutConfig,
    client: redis::Client,
    commands: ConnectionManager,
    subscriptions: Mutex<HashMap<DocName, Subscription>>,
    /// Other nodes whose messages arrived, watched for their heartbeat to stop.
    peers: Mutex<HashSet<NodeId>>,
    stopping: AtomicBool,
}

fn redis_error(error: redis::RedisError) -> FanoutError {
    FanoutError::Unavailable(format!("redis: {error}"))
}

impl RedisFanout {
    /// Connects to Redis, registers this node's heartbeat and starts the publisher, reader and
    /// heartbeat tasks on the current tokio runtime.
    pub async fn connect(config: RedisFanoutConfig) -> Result<Self, FanoutError> {
        let client = redis::Client::open(config.url.as_str()).map_err(redis_error)?;
        // A command fails within about a second while Redis is away (the default reconnects six
        // times with backoff, about 9 s, and the publisher's own retries on top of that), so
        // publishing gives up after a few seconds and the other nodes resync from the store.
        let manager = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let commands = client
            .get_connection_manager_with_config(manager)
            .await
            .map_err(redis_error)?;
        let shared = Arc::new(Shared {
            node: Uuid::new_v4(),
            config,
            client,
            commands,
            subscriptions: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashSet::new()),
            stopping: AtomicBool::new(false),
        });
        shared.beat().await.map_err(redis_error)?;
        let reader_connection = shared.reader_connection().await.map_err(redis_error)?;
        let (publisher, queue) = mpsc::unbounded_channel();
        tokio::spawn(publish_loop(shared.clone(), queue));
        tokio::spawn(read_loop(shared.clone(), reader_connection));
        tokio::spawn(heartbeat_loop(shared.clone()));
        tracing::info!(node = %shared.node, "joined the cluster through Redis");
        Ok(RedisFanout { shared, publisher })
    }
}

impl Shared {
    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.config.key_prefix)
    }

    fn doc_key(&self, name: &DocName) -> String {
        self.key(&format!("doc:{name}"))
    }

    fn node_key(&self, node: &NodeId) -> String {
        self.key(&format!("node:{node}"))
    }

    fn wake_key(&self) -> String {
        self.key(&format!("wake:{}", self.node))
    }

    fn subscriptions(&self) -> std::sync::MutexGuard<'_, HashMap<DocName, Subscription>> {
        self.subscriptions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashSet<NodeId>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refreshes this node's heartbeat key.
    async fn beat(&self) -> redis::RedisResult<()> {
        let mut conn = self.commands.clone();
        redis::cmd("SET")
            .arg(self.node_key(&self.node))
            .arg(1)
            .arg("PX")
            .arg(NODE_EXPIRY.as_millis() as u64)
            .query_async(&mut conn)
            .await
    }

    /// A dedicated connection for blocking reads (a blocked connection serves nobody else).
    async fn reader_connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(READ_BLOCK + Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Hands `event` to every subscribed document (never waiting for one).
    fn tell_everyone(&self, event: RemoteEvent) {
        let inboxes: Vec<RemoteInbox> = self
            .subscriptions()
            .values()
            .map(|s| s.inbox.clone())
            .collect();
        for inbox in inboxes {
            inbox.deliver(event.clone());
        }
    }
}

#[async_trait]
impl Fanout for RedisFanout {
    fn is_shared(&self) -> bool {
        true
    }

    async fn subscribe(
        &self,
        name: &DocName,
        generation: u64,
        inbox: RemoteInbox,
    ) -> Result<(), FanoutError> {
        let shared = &self.shared;
        let mut conn = shared.commands.clone();
        let last: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(shared.doc_key(name))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        let position = last
            .ids
            .first()
            .map_or_else(|| "0-0".to_string(), |entry| entry.id.clone());
        shared.subscriptions().insert(
            name.clone(),
            Subscription {
                generation,
                inbox,
                position,
            },
        );
        // Interrupt the reader's blocking read so it includes this stream right away.
        let woken: redis::RedisResult<()> = redis::cmd("XADD")
            .arg(shared.wake_key())
            .arg("MAXLEN")
            .arg("~")
            .arg(16)
            .arg("*")
            .arg("w")
            .arg(1)
            .query_async(&mut conn)
            .await;
        if let Err(error) = woken {
            tracing::warn!(doc = %name, %error, "could not wake the Redis reader");
        }
        Ok(())
    }

    fn unsubscribe(&self, name: &DocName, generation: u64) {
        let mut subscriptions = self.shared.subscriptions();
        if subscriptions
            .get(name)
            .is_some_and(|s| s.generation == generation)
        {
            subscriptions.remove(name);
        }
    }

    fn publish(&self, name: &DocName, message: RemoteMessage) {
        metrics::gauge!("weft_fanout_publish_queue").increment(1.0);
        if self.publisher.send((name.clone(), message)).is_err() {
            metrics::gauge!("weft_fanout_publish_queue").decrement(1.0);
            tracing::error!(doc = %name, "Redis publisher has stopped; message not relayed");
        }
    }

    async fn leave(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        let mut conn = self.shared.commands.clone();
        let gone: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(self.shared.node_key(&self.shared.node))
            .query_async(&mut conn)
            .await;
        if let Err(error) = gone {
            tracing::warn!(%error, "could not remove this node's heartbeat from Redis");
        }
    }
}

/// Sends queued messages, as many per pipeline as are waiting.
async fn publish_loop(
    shared: Arc<Shared>,
    mut queue: mpsc::UnboundedReceiver<(DocName, RemoteMessage)>,
) {
    let node = shared.node.as_bytes().to_vec();
    let ttl_ms = shared.config.stream_ttl.as_millis() as u64;
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        let mut keys = HashSet::new();
        for (name, message) in &batch {
            let key = shared.doc_key(name);
            let mut authors = Vec::new();
            let (kind, data): (&str, &[u8]) = match message {
                RemoteMessage::Protocol(frame) => ("m", frame),
                RemoteMessage::Update {
                    frame,
                    authors: names,
                } => {
                    authors = serde_json::to_vec(names).unwrap_or_default();
                    ("u", frame)
                }
                RemoteMessage::Deleted => ("x", &[]),
            };
            pipe.cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(shared.config.stream_maxlen)
                .arg("*")
                .arg("n")
                .arg(&node)
                .arg("k")
                .arg(kind)
                .arg("d")
                .arg(data)
                .arg("a")
                .arg(&authors)
                .ignore();
            keys.insert(key);
        }
        for key in keys {
            pipe.cmd("PEXPIRE").arg(key).arg(ttl_ms).ignore();
        }
        let mut attempt = 0;
        loop {
            let mut conn = shared.commands.clone();
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => break,
                Err(error) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(%error, attempt, "publishing to Redis failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(error) => {
                    metrics::counter!("weft_fanout_publish_failures_total")
                        .increment(batch.len() as u64);
                    tracing::error!(%error, messages = batch.len(),
                        "could not publish to Redis; other nodes catch up when they resync");
                    break;
                }
            }
        }
        metrics::gauge!("weft_fanout_publish_queue").decrement(batch.len() as f64);
        batch.clear();
    }
}

/// One parsed stream entry.
struct Entry {
    node: NodeId,
    message: RemoteMessage,
}

fn parse_entry(entry: &StreamId) -> Option<Entry> {
    let field = |name: &str| match entry.map.get(name) {
        Some(Value::BulkString(bytes)) => Some(bytes.as_slice()),
        _ => None,
    };
    let node = Uuid::from_slice(field("n")?).ok()?;
    let message = match field("k")? {
        b"m" => RemoteMessage::Protocol(Bytes::copy_from_slice(field("d")?)),
        b"u" => RemoteMessage::Update {
            frame: Bytes::copy_from_slice(field("d")?),
            authors: serde_json::from_slice(field("a")?).ok()?,
        },
        b"x" => RemoteMessage::Deleted,
        _ => return None,
    };
    Some(Entry { node, message })
}

/// Reads every subscribed document's stream and hands other nodes' entries to the actors.
async fn read_loop(shared: Arc<Shared>, connection: MultiplexedConnection) {
    let wake_key = shared.wake_key();
    let mut wake_position = "0-0".to_string();
    let mut connection = Some(connection);
    let mut backoff = Duration::from_millis(100);
    while !shared.stopping.load(Ordering::Acquire) {
        let Some(conn) = connection.as_mut() else {
            tokio::time::sleep(backoff).await;
            match shared.reader_connection().await {
                Ok(fresh) => {
                    tracing::info!("Redis reader reconnected; documents re-read the store");
                    connection = Some(fresh);
                    backoff = Duration::from_millis(100);
                    shared.tell_everyone(RemoteEvent::Resync);
                }
                Err(error) => {
                    tracing::warn!(%error, "Redis reader cannot reconnect yet");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            continue;
        };
        let mut keys = Vec::new();
        let mut positions = Vec::new();
        let mut generations = HashMap::new();
        for (name, subscription) in shared.subscriptions().iter() {
            let key = shared.doc_key(name);
            keys.push(key.clone());
            positions.push(subscription.position.clone());
            generations.insert(key, (name.clone(), subscription.generation));
        }
        keys.push(wake_key.clone());
        positions.push(wake_position.clone());
        let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&keys)
            .arg(&positions)
            .query_async(conn)
            .await;
        let reply = match reply {
            Ok(Some(reply)) => reply,
            Ok(None) => continue,
            Err(error) => {
                if !shared.stopping.load(Ordering::Acquire) {
                    tracing::warn!(%error, "Redis read failed; reconnecting");
                }
                connection = None;
                continue;
            }
        };
        for stream in reply.keys {
            let Some(last) = stream.ids.last() else {
                continue;
            };
            if stream.key == wake_key {
                wake_position = last.id.clone();
                continue;
            }
            let Some((name, generation)) = generations.get(&stream.key) else {
                continue;
            };
            let inbox = {
                let mut subscriptions = shared.subscriptions();
                match subscriptions.get_mut(name) {
                    // Entries read for an earlier actor of this document are not this one's.
                    Some(s) if s.generation == *generation => {
                        s.position = last.id.clone();
                        s.inbox.clone()
                    }
                    _ => continue,
                }
            };
            for entry in &stream.ids {
                let Some(Entry { node, message }) = parse_entry(entry) else {
                    tracing::warn!(doc = %name, id = %entry.id, "ignoring a malformed stream entry");
                    continue;
                };
                if node == shared.node {
                    continue;
                }
                shared.peers().insert(node);
                metrics::counter!("weft_fanout_received_total").increment(1);
                let event = RemoteEvent::Message {
                    from: node,
                    message,
                };
                if inbox.deliver(event) == Delivered::Gone {
                    break; // The actor stopped; its successor subscribes afresh.
                }
            }
        }
    }
}

/// Refreshes this node's heartbeat and tells the actors about peers whose heartbeat stopped.
async fn heartbeat_loop(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        if let Err(error) = shared.beat().await {
            tracing::warn!(%error, "could not refresh this node's heartbeat in Redis");
            continue;
        }
        let peers: Vec<NodeId> = shared.peers().iter().copied().collect();
        if peers.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        for peer in &peers {
            pipe.cmd("EXISTS").arg(shared.node_key(peer));
        }
        let mut conn = shared.commands.clone();
        let alive: Vec<bool> = match pipe.query_async(&mut conn).await {
            Ok(alive) => alive,
            Err(error) => {
                tracing::warn!(%error, "could not check other nodes' heartbeats");
                continue;
            }
        };
        for (peer, alive) in peers.into_iter().zip(alive) {
            if alive {
                continue;
            }
            tracing::info!(%peer, "node left the cluster; dropping its clients' presence");
            shared.peers().remove(&peer);
            shared.tell_everyone(RemoteEvent::NodeGone(peer));
        }
    }
}

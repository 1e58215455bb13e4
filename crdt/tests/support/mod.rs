//! What the actor tests share: a registry over an in-memory store, sessions joined through the
//! public API, reading what a session receives, and Yjs updates to send. No sockets: these
//! tests drive the document engine directly, most of them under tokio's paused clock.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use weft_crdt::fanout::{Fanout, FanoutError, RemoteInbox, RemoteMessage};
use weft_crdt::hooks::Change;
use weft_crdt::protocol::{self, ClientMessage};
use weft_crdt::store::{LogPos, StoreError};
use weft_crdt::{
    session_queue, CloseReason, ConnId, DocConfig, DocHooks, DocName, DocStore, Hooks, MemoryStore,
    Outbox, QueueLimits, Registry, RegistryOptions, Session, SessionInfo,
};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

/// Longest any test waits for something (virtual time under a paused clock).
pub const WAIT: Duration = Duration::from_secs(30);

pub fn name(s: &str) -> DocName {
    DocName::new(s).expect("valid name")
}

/// Records what documents report.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<String>>,
}

impl Recorder {
    pub fn count(&self, prefix: &str) -> usize {
        let events = self.events.lock().unwrap();
        events.iter().filter(|e| e.starts_with(prefix)).count()
    }

    fn push(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }
}

impl DocHooks for Recorder {
    fn loaded(&self, doc: &DocName) {
        self.push(format!("loaded {doc}"));
    }
    fn unloaded(&self, doc: &DocName) {
        self.push(format!("unloaded {doc}"));
    }
    fn joined(&self, doc: &DocName, session: &SessionInfo) {
        self.push(format!("joined {doc} {}", session.user));
    }
    fn left(&self, doc: &DocName, session: &SessionInfo) {
        self.push(format!("left {doc} {}", session.user));
    }
    fn changed(&self, doc: &DocName, change: &Change<'_>) {
        self.push(format!(
            "changed {doc} {} {}",
            change.updates, change.position
        ));
    }
    fn compacted(&self, doc: &DocName, _snapshot_bytes: u64) {
        self.push(format!("compacted {doc}"));
    }
    fn slow_client(&self, doc: &DocName, _conn: ConnId) {
        self.push(format!("slow {doc}"));
    }
}

/// A registry, its store and what its documents reported.
pub struct Harness {
    pub registry: Registry,
    pub store: Arc<dyn DocStore>,
    pub hooks: Arc<Recorder>,
}

pub fn harness(config: DocConfig) -> Harness {
    harness_with(config, Arc::new(MemoryStore::new()), None)
}

pub fn harness_with(
    config: DocConfig,
    store: Arc<dyn DocStore>,
    fanout: Option<Arc<dyn Fanout>>,
) -> Harness {
    let hooks = Arc::new(Recorder::default());
    let mut options = RegistryOptions {
        hooks: Hooks::new().with(hooks.clone()),
        ..RegistryOptions::default()
    };
    if let Some(fanout) = fanout {
        options.fanout = fanout;
    }
    let registry = Registry::with_options(
        store.clone(),
        config,
        tokio::runtime::Handle::current(),
        options,
    );
    Harness {
        registry,
        store,
        hooks,
    }
}

/// One test client: its line in, its queue out, and the document it has received.
pub struct Client {
    pub session: Session,
    pub outbox: Outbox,
    pub doc: Doc,
    /// Update frames received (SyncStep2 and Update).
    pub update_frames: usize,
}

impl Harness {
    /// Joins `doc` as user `user` with a queue of `frames` frames.
    pub async fn join(&self, doc: &str, user: &str, frames: usize) -> Client {
        self.join_as(doc, user, frames, true).await
    }

    pub async fn join_as(&self, doc: &str, user: &str, frames: usize, can_write: bool) -> Client {
        let (queue, outbox) = session_queue(QueueLimits {
            frames,
            bytes: usize::MAX,
        });
        let info = SessionInfo {
            conn: uuid::Uuid::new_v4(),
            user: user.into(),
            can_write,
            authenticated: false,
            durable_acks: false,
            stateless: false,
        };
        let session = self
            .registry
            .join(&name(doc), info, queue)
            .await
            .expect("join");
        Client {
            session,
            outbox,
            doc: Doc::new(),
            update_frames: 0,
        }
    }
}

impl Client {
    /// Sends a y-protocols frame as the client would.
    pub async fn send_frame(&mut self, frame: Bytes) {
        let message = protocol::decode_client_message(frame).expect("a valid message");
        self.session
            .send_async(message)
            .await
            .expect("the document takes it");
    }

    /// Types `text` at the start of the client's own copy and sends the update.
    pub async fn type_text(&mut self, text: &str) {
        let update = {
            let t = self.doc.get_or_insert_text("text");
            let mut txn = self.doc.transact_mut();
            let before = txn.state_vector();
            t.insert(&mut txn, 0, text);
            txn.encode_state_as_update_v1(&before)
        };
        self.send_frame(protocol::encode_update(&update)).await;
    }

    /// Sends SyncStep1 with the client's state vector.
    pub async fn sync(&mut self) {
        let sv = self.doc.transact().state_vector();
        self.send_frame(protocol::encode_sync_step1(&sv)).await;
    }

    pub fn text(&self) -> String {
        let t = self.doc.get_or_insert_text("text");
        t.get_string(&self.doc.transact())
    }

    /// Takes the next frame and applies what it carries; `None` when the session ended.
    pub async fn next(&mut self) -> Option<ClientMessage> {
        let frame = tokio::time::timeout(WAIT, self.outbox.recv())
            .await
            .expect("a frame in time")?;
        let message = protocol::decode_client_message(frame).expect("a valid frame");
        self.take(&message);
        Some(message)
    }

    /// Applies what a received message carries.
    fn take(&mut self, message: &ClientMessage) {
        if let ClientMessage::Update(update) = message {
            self.update_frames += 1;
            let decoded = Update::decode_v1(&update.bytes).expect("decodes");
            self.doc
                .transact_mut()
                .apply_update(decoded)
                .expect("applies");
        }
    }

    /// Reads frames until `done` holds (panics if the session ends first).
    pub async fn until(&mut self, what: &str, done: impl Fn(&Client) -> bool) {
        while !done(self) {
            if self.next().await.is_none() {
                panic!(
                    "session ended before {what}: {:?}",
                    self.outbox.end_reason()
                );
            }
        }
    }

    /// Reads frames until the session ends; why it ended.
    pub async fn ended(&mut self) -> CloseReason {
        // Raw: a client closed for damaged data may have been sent frames that do not decode.
        while tokio::time::timeout(WAIT, self.outbox.recv())
            .await
            .expect("the end in time")
            .is_some()
        {}
        self.outbox.end_reason().expect("a reason")
    }

    /// Takes every frame already queued, applying updates.
    pub fn drain(&mut self) -> usize {
        let mut taken = 0;
        while let Some(frame) = self.outbox.try_recv() {
            taken += 1;
            if let Ok(message) = protocol::decode_client_message(frame) {
                self.take(&message);
            }
        }
        taken
    }
}

/// A Yjs update inserting `text` into root `text` of a fresh document of client `client`.
pub fn text_update(client: u64, text: &str) -> Vec<u8> {
    let doc = Doc::with_client_id(client);
    let t = doc.get_or_insert_text("text");
    t.insert(&mut doc.transact_mut(), 0, text);
    let update = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    update
}

/// The text a stored document holds.
pub async fn stored_text(store: &dyn DocStore, doc: &str) -> String {
    let stored = store.load(&name(doc)).await.expect("load");
    let rebuilt = weft_crdt::recovery::rebuild(&stored);
    let t = rebuilt.doc.get_or_insert_text("text");
    let txn = rebuilt.doc.transact();
    t.get_string(&txn)
}

/// A fan-out that pretends other nodes exist: it keeps each document's inbox, so a test can
/// deliver what "another node" says, and records what this node publishes.
#[derive(Default)]
pub struct FakeCluster {
    pub inboxes: Mutex<Vec<(DocName, RemoteInbox)>>,
    pub published: Mutex<Vec<(DocName, RemoteMessage)>>,
}

impl FakeCluster {
    pub fn inbox(&self, doc: &str) -> RemoteInbox {
        let inboxes = self.inboxes.lock().unwrap();
        inboxes
            .iter()
            .rev()
            .find(|(n, _)| n.as_str() == doc)
            .map(|(_, i)| i.clone())
            .expect("subscribed")
    }
}

#[async_trait]
impl Fanout for FakeCluster {
    fn is_shared(&self) -> bool {
        true
    }
    async fn subscribe(
        &self,
        name: &DocName,
        _generation: u64,
        inbox: RemoteInbox,
    ) -> Result<(), FanoutError> {
        self.inboxes.lock().unwrap().push((name.clone(), inbox));
        Ok(())
    }
    fn unsubscribe(&self, _name: &DocName, _generation: u64) {}
    fn publish(&self, name: &DocName, message: RemoteMessage) {
        self.published.lock().unwrap().push((name.clone(), message));
    }
    async fn leave(&self) {}
}

/// A memory store whose appends can be held back, to see what happens before one is durable.
#[derive(Default)]
pub struct GatedStore {
    inner: MemoryStore,
    closed: std::sync::atomic::AtomicBool,
    opened: tokio::sync::Notify,
}

impl GatedStore {
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn open(&self) {
        self.closed
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.opened.notify_waiters();
    }
}

#[async_trait]
impl DocStore for GatedStore {
    async fn load(&self, doc: &DocName) -> Result<weft_crdt::store::StoredDoc, StoreError> {
        self.inner.load(doc).await
    }
    async fn append(&self, doc: &DocName, records: Vec<Bytes>) -> Result<LogPos, StoreError> {
        while self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            let opened = self.opened.notified();
            if !self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            opened.await;
        }
        self.inner.append(doc, records).await
    }
    async fn compact(
        &self,
        doc: &DocName,
        snapshot: Bytes,
        upto: LogPos,
    ) -> Result<(), StoreError> {
        self.inner.compact(doc, snapshot, upto).await
    }
    async fn create(&self, doc: &DocName) -> Result<bool, StoreError> {
        self.inner.create(doc).await
    }
    async fn status(&self, doc: &DocName) -> Result<weft_crdt::store::DocStatus, StoreError> {
        self.inner.status(doc).await
    }
    async fn delete(&self, doc: &DocName) -> Result<bool, StoreError> {
        self.inner.delete(doc).await
    }
    async fn list(&self) -> Result<Vec<weft_crdt::store::DocInfo>, StoreError> {
        self.inner.list().await
    }

    async fn deleted(&self) -> Result<Vec<String>, StoreError> {
        self.inner.deleted().await
    }

    async fn add_version(
        &self,
        doc: &DocName,
        record: weft_crdt::store::VersionRecord,
    ) -> Result<bool, StoreError> {
        self.inner.add_version(doc, record).await
    }

    async fn versions(&self, doc: &DocName) -> Result<Vec<(u64, Bytes)>, StoreError> {
        self.inner.versions(doc).await
    }

    async fn version_data(
        &self,
        doc: &DocName,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        self.inner.version_data(doc, from, to).await
    }

    async fn rewrite_versions(
        &self,
        doc: &DocName,
        drop: &[u64],
        put: Vec<weft_crdt::store::VersionRecord>,
    ) -> Result<(), StoreError> {
        self.inner.rewrite_versions(doc, drop, put).await
    }
}

/// Waits (polling, in virtual time under a paused clock) until `done` holds.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

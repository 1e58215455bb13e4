//! The registry: document name -> running actor. Loads each document exactly once.
//!
//! The map entry is inserted under the lock *before* the actor starts loading, so two sessions
//! arriving together always reach the same actor (no check/await/insert race). An actor that
//! unloads removes its own entry (matched by generation) and answers anything still queued with
//! [`DocError::Unloaded`]; the registry then retries with a fresh actor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::actor::DocActor;
use crate::command::{ConnId, DocCommand, DocError, Outbound};
use crate::config::DocConfig;
use crate::fanout::{Fanout, LocalFanout};
use crate::name::DocName;
use bytes::Bytes;

use crate::protocol::ClientMessage;
use crate::store::DocStore;

/// A cheap, cloneable address of a running document actor.
#[derive(Clone)]
pub struct DocHandle {
    name: DocName,
    generation: u64,
    mailbox: mpsc::Sender<DocCommand>,
}

impl DocHandle {
    /// The document's name.
    pub fn name(&self) -> &DocName {
        &self.name
    }

    /// Forwards a decoded client message. Waits while the mailbox is full (backpressure);
    /// false if the actor has stopped.
    pub async fn message(&self, conn: ConnId, message: ClientMessage) -> bool {
        self.mailbox
            .send(DocCommand::Message { conn, message })
            .await
            .is_ok()
    }

    /// Tells the actor a session is gone (a [`crate::SessionMailbox`] does this when dropped).
    pub async fn leave(&self, conn: ConnId) {
        let _ = self.mailbox.send(DocCommand::Leave { conn }).await;
    }

    /// The actor's mailbox (for [`crate::SessionMailbox`]).
    pub(crate) fn mailbox(&self) -> &mpsc::Sender<DocCommand> {
        &self.mailbox
    }
}

/// Called with a document's name after each durable change (e.g. to schedule a webhook).
/// Must be quick and must not block: it runs inside the document actor.
pub type ChangeListener = Arc<dyn Fn(&DocName) + Send + Sync>;

/// Optional parts of a [`Registry`]: who hears of changes, and how nodes share documents.
#[derive(Clone)]
pub struct RegistryOptions {
    /// Told of every durable change (webhooks).
    pub on_change: Option<ChangeListener>,
    /// Relays changes between the nodes of a cluster; [`LocalFanout`] for a single node.
    pub fanout: Arc<dyn Fanout>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            on_change: None,
            fanout: Arc::new(LocalFanout::new()),
        }
    }
}

/// Shared state of a [`Registry`].
pub(crate) struct RegistryInner {
    docs: Mutex<HashMap<DocName, DocHandle>>,
    pub(crate) store: Arc<dyn DocStore>,
    pub(crate) config: Arc<DocConfig>,
    runtime: Handle,
    next_generation: AtomicU64,
    stopping: AtomicBool,
    pub(crate) options: RegistryOptions,
}

impl RegistryInner {
    /// Removes `name` if it still maps to the actor of `generation`.
    pub(crate) fn remove(&self, name: &DocName, generation: u64) {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        if docs.get(name).is_some_and(|h| h.generation == generation) {
            docs.remove(name);
        }
    }
}

/// Every loaded document, by name.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

impl Registry {
    /// Creates a registry whose actors run on `runtime` and persist to `store`.
    pub fn new(store: Arc<dyn DocStore>, config: DocConfig, runtime: Handle) -> Self {
        Self::with_options(store, config, runtime, RegistryOptions::default())
    }

    /// Like [`Registry::new`], with a change listener and/or a cluster fan-out.
    pub fn with_options(
        store: Arc<dyn DocStore>,
        config: DocConfig,
        runtime: Handle,
        options: RegistryOptions,
    ) -> Self {
        Registry {
            inner: Arc::new(RegistryInner {
                docs: Mutex::new(HashMap::new()),
                store,
                config: Arc::new(config),
                runtime,
                next_generation: AtomicU64::new(1),
                stopping: AtomicBool::new(false),
                options,
            }),
        }
    }

    /// The store documents persist to.
    pub fn store(&self) -> &Arc<dyn DocStore> {
        &self.inner.store
    }

    /// The document configuration.
    pub fn config(&self) -> &DocConfig {
        &self.inner.config
    }

    /// Number of documents currently in memory.
    pub fn loaded_count(&self) -> usize {
        self.lock().len()
    }

    /// Whether `name` is currently in memory.
    pub fn is_loaded(&self, name: &DocName) -> bool {
        self.lock().contains_key(name)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DocName, DocHandle>> {
        self.inner.docs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running actor for `name`, started (and loading) if needed.
    fn handle(&self, name: &DocName) -> Result<DocHandle, DocError> {
        if self.inner.stopping.load(Ordering::Acquire) {
            return Err(DocError::ShuttingDown);
        }
        let mut docs = self.lock();
        if let Some(handle) = docs.get(name) {
            return Ok(handle.clone());
        }
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let (mailbox, inbox) = mpsc::channel(self.inner.config.mailbox);
        let handle = DocHandle {
            name: name.clone(),
            generation,
            mailbox,
        };
        docs.insert(name.clone(), handle.clone());
        let actor = DocActor::new(
            name.clone(),
            generation,
            &self.inner,
            inbox,
            handle.mailbox.downgrade(),
        );
        self.inner.runtime.spawn(actor.run());
        Ok(handle)
    }

    /// Sends a request to the document's actor and waits for the answer, retrying with a
    /// fresh actor if the current one was unloading.
    async fn call<T>(
        &self,
        name: &DocName,
        make: impl Fn(oneshot::Sender<Result<T, DocError>>) -> DocCommand,
    ) -> Result<(DocHandle, T), DocError> {
        loop {
            let handle = self.handle(name)?;
            let (reply, answer) = oneshot::channel();
            if handle.mailbox.send(make(reply)).await.is_err() {
                self.inner.remove(name, handle.generation);
                continue;
            }
            match answer.await {
                Ok(Ok(value)) => return Ok((handle, value)),
                Ok(Err(DocError::Unloaded)) | Err(_) => {
                    self.inner.remove(name, handle.generation);
                    continue;
                }
                Ok(Err(error)) => return Err(error),
            }
        }
    }

    /// Joins a session to a document: the actor queues SyncStep1 and the awareness states on
    /// `outbound`. Returns the handle to send the session's messages to.
    pub async fn join(
        &self,
        name: &DocName,
        conn: ConnId,
        outbound: mpsc::Sender<Outbound>,
        can_write: bool,
    ) -> Result<DocHandle, DocError> {
        let (handle, ()) = self
            .call(name, |reply| DocCommand::Join {
                conn,
                outbound: outbound.clone(),
                can_write,
                reply,
            })
            .await?;
        Ok(handle)
    }

    /// Applies an update from outside any session; returns once it is durable and broadcast.
    pub async fn apply_update(&self, name: &DocName, update: Bytes) -> Result<(), DocError> {
        self.call(name, |reply| DocCommand::ApplyUpdate {
            update: update.clone(),
            reply,
        })
        .await
        .map(drop)
    }

    /// Runs `read` against the document inside its actor and returns its result.
    pub async fn read<T, F>(&self, name: &DocName, read: F) -> Result<T, DocError>
    where
        T: Send + 'static,
        F: Fn(&yrs::Doc) -> T + Send + Sync + 'static,
    {
        let read = Arc::new(read);
        let slot = Arc::new(Mutex::new(None));
        self.call(name, |reply| {
            let read = read.clone();
            let slot = slot.clone();
            DocCommand::Read {
                read: Box::new(move |doc| {
                    let value = read(doc);
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
                }),
                reply,
            }
        })
        .await?;
        let value = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        value.ok_or_else(|| DocError::Unavailable("the read produced no value".into()))
    }

    /// Deletes a document: its actor removes it from the store, closes its sessions (close
    /// code 1000, "document deleted") and stops. Returns whether anything was stored.
    pub async fn delete(&self, name: &DocName) -> Result<bool, DocError> {
        self.call(name, |reply| DocCommand::Delete { reply })
            .await
            .map(|(_, existed)| existed)
    }

    /// Refuses new documents, stops every actor (closing their sessions) and flushes the store.
    pub async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Release);
        let handles: Vec<DocHandle> = self.lock().values().cloned().collect();
        let mut answers = Vec::with_capacity(handles.len());
        for handle in handles {
            let (reply, answer) = oneshot::channel();
            if handle
                .mailbox
                .send(DocCommand::Shutdown { reply })
                .await
                .is_ok()
            {
                answers.push(answer);
            }
        }
        for answer in answers {
            let _ = answer.await;
        }
        if let Err(error) = self.inner.store.flush().await {
            tracing::error!(%error, "final store flush failed");
        }
        self.inner.options.fanout.leave().await;
    }
}

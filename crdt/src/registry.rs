//! The registry: document name -> running actor. Loads each document exactly once.
//!
//! The map entry is inserted under the lock *before* the actor starts loading, so two sessions
//! arriving together always reach the same actor (no check/await/insert race). An actor that
//! stops removes its own entry (matched by generation) through the callback it is given and
//! answers anything still queued with [`DocError::Unloaded`]; the registry then retries with a
//! fresh actor. An actor that panics is dropped like one that stopped: its entry goes, its
//! sessions are told, and a caller waiting on it gets an error instead of retrying forever.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::actor::{ActorSetup, DocActor};
use crate::command::{DocCommand, Origin, Reply, Stop};
use crate::config::DocConfig;
use crate::error::DocError;
use crate::fanout::{Fanout, LocalFanout};
use crate::history::{Author, VersionMeta};
use crate::hooks::Hooks;
use crate::inbox::RemoteInbox;
use crate::name::DocName;
use crate::outbox::{SessionInfo, SessionQueue};
use crate::protocol;
use crate::session::Session;
use crate::store::DocStore;

/// How often a request follows an unloading document to its next actor before giving up.
const MAX_ATTEMPTS: usize = 16;

/// A running actor's address.
#[derive(Clone)]
struct DocHandle {
    generation: u64,
    mailbox: mpsc::Sender<DocCommand>,
}

/// Optional parts of a [`Registry`]: who hears of documents, and how nodes share them.
#[derive(Clone)]
pub struct RegistryOptions {
    /// Told of everything documents do (webhooks, metrics, an embedding application).
    pub hooks: Hooks,
    /// Relays changes between the nodes of a cluster; [`LocalFanout`] for a single node.
    pub fanout: Arc<dyn Fanout>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            hooks: Hooks::new(),
            fanout: Arc::new(LocalFanout),
        }
    }
}

/// The map and whether the registry still takes documents, under one lock: a document is
/// either started before shutdown sees the map, or refused.
#[derive(Default)]
struct Docs {
    map: HashMap<DocName, DocHandle>,
    stopping: bool,
}

struct Inner {
    docs: Mutex<Docs>,
    store: Arc<dyn DocStore>,
    config: Arc<DocConfig>,
    runtime: Handle,
    next_generation: AtomicU64,
    options: RegistryOptions,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Docs> {
        self.docs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes `name` if it still maps to the actor of `generation`.
    fn remove(&self, name: &DocName, generation: u64) {
        let mut docs = self.lock();
        if docs
            .map
            .get(name)
            .is_some_and(|h| h.generation == generation)
        {
            docs.map.remove(name);
        }
    }
}

/// Every loaded document, by name.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl Registry {
    /// Creates a registry whose actors run on `runtime` and persist to `store`.
    pub fn new(store: Arc<dyn DocStore>, config: DocConfig, runtime: Handle) -> Self {
        Self::with_options(store, config, runtime, RegistryOptions::default())
    }

    /// Like [`Registry::new`], with hooks and/or a cluster fan-out.
    pub fn with_options(
        store: Arc<dyn DocStore>,
        config: DocConfig,
        runtime: Handle,
        options: RegistryOptions,
    ) -> Self {
        Registry {
            inner: Arc::new(Inner {
                docs: Mutex::new(Docs::default()),
                store,
                config: Arc::new(config),
                runtime,
                next_generation: AtomicU64::new(1),
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
        self.inner.lock().map.len()
    }

    /// Whether `name` is currently in memory.
    pub fn is_loaded(&self, name: &DocName) -> bool {
        self.inner.lock().map.contains_key(name)
    }

    /// The running actor for `name`, started (and loading) if needed.
    fn handle(&self, name: &DocName) -> Result<DocHandle, DocError> {
        let mut docs = self.inner.lock();
        if docs.stopping {
            return Err(DocError::ShuttingDown);
        }
        if let Some(handle) = docs.map.get(name) {
            return Ok(handle.clone());
        }
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let (mailbox, receiver) = mpsc::channel(self.inner.config.mailbox);
        let handle = DocHandle {
            generation,
            mailbox,
        };
        docs.map.insert(name.clone(), handle.clone());
        let registry: Weak<Inner> = Arc::downgrade(&self.inner);
        let exiting = name.clone();
        let actor = DocActor::new(ActorSetup {
            name: name.clone(),
            generation,
            store: self.inner.store.clone(),
            config: self.inner.config.clone(),
            fanout: self.inner.options.fanout.clone(),
            hooks: self.inner.options.hooks.clone(),
            mailbox: receiver,
            inbox: RemoteInbox::new(handle.mailbox.downgrade()),
            on_exit: Box::new(move || {
                if let Some(registry) = registry.upgrade() {
                    registry.remove(&exiting, generation);
                }
            }),
        });
        let doc = name.clone();
        self.inner.runtime.spawn(async move {
            if AssertUnwindSafe(actor.run()).catch_unwind().await.is_err() {
                tracing::error!(doc = %doc, "document actor panicked; its sessions were closed");
            }
        });
        Ok(handle)
    }

    /// Sends a request to the document's actor and waits for the answer, following an
    /// unloading document to its next actor.
    async fn call<T>(
        &self,
        name: &DocName,
        mut make: impl FnMut(oneshot::Sender<Result<T, DocError>>) -> Result<DocCommand, DocError>,
    ) -> Result<(DocHandle, T), DocError> {
        for _ in 0..MAX_ATTEMPTS {
            let handle = self.handle(name)?;
            let (reply, answer) = oneshot::channel();
            if handle.mailbox.send(make(reply)?).await.is_err() {
                self.inner.remove(name, handle.generation);
                continue;
            }
            match answer.await {
                Ok(Ok(value)) => return Ok((handle, value)),
                Ok(Err(DocError::Unloaded)) => {
                    self.inner.remove(name, handle.generation);
                    continue;
                }
                Ok(Err(error)) => return Err(error),
                // Dropped unanswered: the actor failed (it answers everything it refuses).
                Err(_) => {
                    self.inner.remove(name, handle.generation);
                    return Err(DocError::Unavailable(
                        "the document failed; try again".into(),
                    ));
                }
            }
        }
        Err(DocError::Unavailable(
            "the document keeps unloading; try again".into(),
        ))
    }

    /// Joins a session to a document: the actor queues SyncStep1 and the awareness states on
    /// `queue`. Returns the session's line into the document.
    pub async fn join(
        &self,
        name: &DocName,
        session: SessionInfo,
        queue: SessionQueue,
    ) -> Result<Session, DocError> {
        let conn = session.conn;
        let (handle, ()) = self
            .call(name, |reply| {
                Ok(DocCommand::Join {
                    session: session.clone(),
                    queue: queue.clone(),
                    reply,
                })
            })
            .await?;
        Ok(Session::new(conn, handle.mailbox))
    }

    /// Applies an update from outside any session (the HTTP API), written by `author`; returns
    /// once it is durable and broadcast.
    pub async fn apply_update(
        &self,
        name: &DocName,
        update: Bytes,
        author: Author,
    ) -> Result<(), DocError> {
        let refused = |error: protocol::ProtocolError| DocError::Refused(error.to_string());
        let mut decoded = Some(protocol::decode_bare_update(update.clone()).map_err(refused)?);
        self.call(name, |reply: Reply| {
            // The first attempt sends the update decoded above; a retry (its actor was
            // unloading and dropped the command) decodes it again.
            let update = match decoded.take() {
                Some(update) => update,
                None => protocol::decode_bare_update(update.clone()).map_err(refused)?,
            };
            Ok(DocCommand::Update {
                origin: Origin::Api(reply),
                update,
                author: Some(author.clone()),
            })
        })
        .await
        .map(drop)
    }

    /// Keeps a version of the document now, named `label` (an unnamed one only if something
    /// changed since the last: `None` otherwise), once everything before it is durable.
    pub async fn keep_version(
        &self,
        name: &DocName,
        label: Option<String>,
    ) -> Result<Option<VersionMeta>, DocError> {
        self.keep(name, label, false).await
    }

    /// A version holding the document as it is now: the last one if nothing changed since it,
    /// else a new one named `label` (what a restore keeps of the state it replaces).
    pub async fn ensure_version(
        &self,
        name: &DocName,
        label: String,
    ) -> Result<Option<VersionMeta>, DocError> {
        self.keep(name, Some(label), true).await
    }

    async fn keep(
        &self,
        name: &DocName,
        label: Option<String>,
        reuse: bool,
    ) -> Result<Option<VersionMeta>, DocError> {
        let (_, kept) = self
            .call(name, |reply| {
                Ok(DocCommand::KeepVersion {
                    label: label.clone(),
                    reuse,
                    reply,
                })
            })
            .await?;
        Ok(kept)
    }

    /// Runs `read` against the document inside its actor and returns its result, once what it
    /// saw is durable.
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
            Ok(DocCommand::Read {
                read: Box::new(move |doc| {
                    let value = read(doc);
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
                }),
                reply,
            })
        })
        .await?;
        let value = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        value.ok_or_else(|| DocError::Unavailable("the read produced no value".into()))
    }

    /// Deletes a document: its actor removes it from the store, closes its sessions ("document
    /// deleted") and stops. Returns whether anything was stored.
    pub async fn delete(&self, name: &DocName) -> Result<bool, DocError> {
        self.call(name, |reply| Ok(DocCommand::Stop(Stop::Delete(reply))))
            .await
            .map(|(_, existed)| existed)
    }

    /// Refuses new documents, stops every actor (closing their sessions) and tells the other
    /// nodes this one is leaving.
    pub async fn shutdown(&self) {
        let handles: Vec<DocHandle> = {
            let mut docs = self.inner.lock();
            docs.stopping = true;
            docs.map.values().cloned().collect()
        };
        let mut answers = Vec::with_capacity(handles.len());
        for handle in handles {
            let (reply, answer) = oneshot::channel();
            if handle
                .mailbox
                .send(DocCommand::Stop(Stop::Shutdown(reply)))
                .await
                .is_ok()
            {
                answers.push(answer);
            }
        }
        for answer in answers {
            let _ = answer.await;
        }
        self.inner.options.fanout.leave().await;
    }
}

//! Building and running the server: [`Application`] binds, serves, and shuts down cleanly.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{guard, middleware, web, App, HttpServer};
use tokio::sync::watch;
use weft_crdt::fanout::{Fanout, FanoutError, LocalFanout};
use weft_crdt::store::StoreError;
use weft_crdt::{DocStore, Hooks, Registry, RegistryOptions};
use weft_store_sled::SledStore;

use crate::auth::Authenticator;
use crate::config::{ServerConfig, StoreKind};
use crate::limits::{Caps, ConnectionLimits};
use crate::metrics::MetricsHook;
use crate::origin::{AllowedHosts, AllowedOrigins};
use crate::readiness::Readiness;
use crate::state::AppState;
use crate::webhook::Webhooks;
use crate::{api, routes, web as web_ui, ws};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The auth settings are unusable.
    #[error("auth configuration: {0}")]
    Auth(#[from] crate::auth::AuthSetupError),
    /// PostgreSQL could not be reached or its schema set up.
    #[error("cannot use the PostgreSQL store: {0}")]
    Postgres(StoreError),
    /// Redis could not be reached.
    #[error("cannot join the cluster through Redis: {0}")]
    Redis(FanoutError),
    /// The settings contradict each other.
    #[error("configuration: {0}")]
    Config(String),
    /// The store could not be opened.
    #[error("cannot open the store in {dir}: {source}")]
    Store {
        /// The data directory.
        dir: String,
        /// What went wrong.
        source: StoreError,
    },
    /// The settings ask for something this build leaves out.
    #[error("this build of weft has no {0} support (cargo feature `{0}`)")]
    NotBuilt(&'static str),
}

/// A bound, ready-to-run server.
pub struct Application {
    addr: SocketAddr,
    server: Server,
    registry: Registry,
    shutdown: watch::Sender<bool>,
}

/// `Upgrade: websocket` requests go to the document endpoint, whatever their path.
fn is_websocket_upgrade(ctx: &guard::GuardContext<'_>) -> bool {
    ctx.head()
        .headers()
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Opens the store `--store` names: sled in `--data-dir`, or PostgreSQL. (A new backend is a
/// crate under `backends/`, a `StoreKind` and an arm here.)
async fn open_store(config: &ServerConfig) -> Result<Arc<dyn DocStore>, StartupError> {
    if let StoreKind::Postgres(url) = config.store_kind().map_err(StartupError::Config)? {
        return open_postgres(url, config.postgres_pool).await;
    }
    let sled =
        SledStore::open_with_cache(&config.data_dir, config.cache_bytes).map_err(|source| {
            StartupError::Store {
                dir: config.data_dir.display().to_string(),
                source,
            }
        })?;
    Ok(Arc::new(sled))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, pool: usize) -> Result<Arc<dyn DocStore>, StartupError> {
    let postgres = weft_store_postgres::PostgresStore::connect(url, pool)
        .await
        .map_err(StartupError::Postgres)?;
    tracing::info!("storing documents in PostgreSQL");
    Ok(Arc::new(postgres))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str, _pool: usize) -> Result<Arc<dyn DocStore>, StartupError> {
    Err(StartupError::NotBuilt("postgres"))
}

/// Joins the cluster through Redis when `--redis` is set; otherwise this node is alone.
async fn join_cluster(config: &ServerConfig) -> Result<Arc<dyn Fanout>, StartupError> {
    let Some(url) = &config.redis else {
        return Ok(Arc::new(LocalFanout));
    };
    if config.store_kind() == Ok(StoreKind::Sled) {
        return Err(StartupError::Config(
            "--redis (cluster mode) needs a store every node shares: set --store postgres://...; \
             with sled each node would keep its own copy of every document"
                .into(),
        ));
    }
    connect_redis(url, config).await
}

#[cfg(feature = "redis")]
async fn connect_redis(url: &str, config: &ServerConfig) -> Result<Arc<dyn Fanout>, StartupError> {
    use weft_fanout_redis::{RedisFanout, RedisFanoutConfig};
    let fanout = RedisFanout::connect(RedisFanoutConfig {
        url: url.to_string(),
        key_prefix: config.redis_prefix.clone(),
        stream_maxlen: config.redis_stream_maxlen,
        stream_ttl: config.redis_stream_ttl,
    })
    .await
    .map_err(StartupError::Redis)?;
    Ok(Arc::new(fanout))
}

#[cfg(not(feature = "redis"))]
async fn connect_redis(
    _url: &str,
    _config: &ServerConfig,
) -> Result<Arc<dyn Fanout>, StartupError> {
    Err(StartupError::NotBuilt("redis"))
}

impl Application {
    /// Opens the store and binds the listener. Document actors run on the current tokio
    /// runtime (multi-threaded in the binary), not on the HTTP workers.
    pub async fn build(config: ServerConfig) -> Result<Self, StartupError> {
        let auth = Authenticator::from_config(&config.auth)?;
        let store = open_store(&config).await?;
        let fanout = join_cluster(&config).await?;
        crate::metrics::install();
        let webhooks = Webhooks::start(&config.webhook);
        let mut hooks = Hooks::new().with(Arc::new(MetricsHook));
        if let Some(webhooks) = &webhooks {
            hooks = hooks.with(webhooks.hook());
        }
        let registry = Registry::with_options(
            store,
            config.doc_config(),
            tokio::runtime::Handle::current(),
            RegistryOptions { hooks, fanout },
        );
        if auth.is_none() {
            tracing::warn!(
                "auth is off: anyone who can reach this server can read and write every document"
            );
        }
        let listener = TcpListener::bind(&config.addr).map_err(|source| StartupError::Bind {
            addr: config.addr.clone(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: config.addr.clone(),
            source,
        })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        crate::memory::spawn_trimmer(registry.clone(), shutdown_rx.clone());
        let workers = config.workers;
        let unacked_timeout = config.client_timeout;
        let limits = ConnectionLimits::new(Caps {
            total: config.max_connections,
            per_doc: config.max_connections_per_doc,
            per_ip: config.max_connections_per_ip,
            per_user: config.max_connections_per_user,
            bad_messages_per_minute: config.max_bad_messages_per_minute,
        });
        let origins = AllowedOrigins::parse(config.allowed_origins.as_deref())
            .map_err(StartupError::Config)?;
        let hosts =
            AllowedHosts::parse(config.allowed_hosts.as_deref()).map_err(StartupError::Config)?;
        let hosts = auth.is_none().then_some(hosts);
        let inflight = crate::inflight::InflightBytes::new(config.max_inflight_bytes);
        let payload_limit = config.max_message_bytes;
        let state = web::Data::new(AppState {
            config,
            registry: registry.clone(),
            auth,
            limits,
            origins,
            hosts,
            inflight,
            readiness: Readiness::default(),
            history_work: Arc::new(tokio::sync::Semaphore::new(
                crate::versions::HISTORY_WORKERS,
            )),
            restoring: tokio::sync::Mutex::new(()),
            shutdown: shutdown_rx,
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(middleware::from_fn(crate::origin::host_gate))
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(payload_limit))
                .service(
                    web::resource("/{tail:.*}")
                        .guard(guard::fn_guard(is_websocket_upgrade))
                        .to(ws::upgrade::upgrade),
                )
                .route("/healthz", web::get().to(routes::healthz))
                .route("/readyz", web::get().to(routes::readyz))
                .route("/metrics", web::get().to(crate::metrics::render))
                .configure(api::configure)
                .service(
                    web::scope("")
                        .wrap(middleware::Compress::default())
                        .route("/", web::get().to(web_ui::index))
                        .route("/d/{name:.*}", web::get().to(web_ui::index))
                        .route("/assets/{file}", web::get().to(web_ui::asset)),
                )
                .default_service(web::to(routes::not_found))
        })
        .disable_signals()
        // Frames are small and latency matters: no Nagle delay (waiting for the client's ACK
        // before sending the next small frame).
        .tcp_nodelay(true)
        .on_connect(move |io, _| limit_unacknowledged_time(io, unacked_timeout))
        .shutdown_timeout(5);
        if let Some(workers) = workers {
            server = server.workers(workers.max(1));
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartupError::Bind {
                addr: addr.to_string(),
                source,
            })?
            .run();
        Ok(Application {
            addr,
            server,
            registry,
            shutdown,
        })
    }

    /// The address the server listens on (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The document registry (for embedding and tests).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Serves until `stop` completes, then shuts down: sessions are closed (1001), the
    /// listener stops and every document actor stops (every write is durable already).
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        tokio::select! {
            result = &mut server => {
                // The server ended on its own (it should not): still flush the documents.
                self.registry.shutdown().await;
                return result.unwrap_or_else(|e| Err(std::io::Error::other(e)));
            }
            _ = stop => {}
        }
        tracing::info!("shutting down: closing sessions and flushing documents");
        let _ = self.shutdown.send(true);
        // No new connections; every document then closes its sessions (1001) after the frames
        // already queued for them, and flushes; the connections end once those are written.
        handle.pause().await;
        self.registry.shutdown().await;
        handle.stop(true).await;
        let _ = server.await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Lets the kernel drop a connection whose peer has acknowledged nothing the server sent for
/// `timeout` (TCP_USER_TIMEOUT), including a client that keeps its receive window shut by never
/// reading. Such a connection's document has dropped it long before, but its socket, its
/// connection slot and whatever actix buffered would otherwise stay until the client goes away.
fn limit_unacknowledged_time(io: &dyn std::any::Any, timeout: std::time::Duration) {
    let Some(stream) = io.downcast_ref::<actix_web::rt::net::TcpStream>() else {
        return;
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(timeout)) {
        tracing::debug!(%error, "could not set TCP_USER_TIMEOUT");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (stream, timeout);
}

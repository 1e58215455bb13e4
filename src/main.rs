//! The `weft` binary: parses the command line, then serves (the default) or runs a tool
//! subcommand (`weft token`, `fsck`, `migrate`, `export`, `import`; the tools' logic lives in
//! `weft_server::admin`).

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weft_server::admin::stores::{self, StoreSpec};
use weft_server::admin::{archive, fsck, migrate};
use weft_server::auth::{claims_for, AuthConfig, Authenticator, Permission};
use weft_server::config::{parse_with_config_file, StoreKind};
use weft_server::{telemetry, Application, ServerConfig};

/// Weft: a self-hostable, y-websocket-compatible collaborative editing server.
///
/// Without a subcommand, serves documents over WebSocket (`ws://ADDR/<name>`), the HTTP API
/// (`/api/docs`), the editor (`/`), `/healthz`, `/readyz` and `/metrics`.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    server: ServerConfig,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check every stored document and list damaged ones (exit 1 if any). Stop the server first
    /// when the store is sled: it allows one process at a time.
    Fsck {
        #[command(flatten)]
        store: StoreArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy every document from one store to another (e.g. sled to PostgreSQL), verifying each
    /// by reading it back. Refuses if a document already has content in the destination, unless
    /// --merge. Stop the servers using a sled store first.
    Migrate {
        /// The store to copy from: sled:DIR or a postgres:// URL.
        #[arg(long)]
        from: StoreSpec,
        /// The store to copy into: sled:DIR or a postgres:// URL.
        #[arg(long)]
        to: StoreSpec,
        /// Merge into documents that already have content (Yjs merges lose nothing).
        #[arg(long)]
        merge: bool,
    },
    /// Write every document of a store into a new directory: each as a Yjs update file, plus
    /// manifest.json (names, sizes, SHA-256). A backup that any Yjs library can read.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// The directory to create (must not exist, or be empty).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Write the documents of an export (see `weft export`) into a store, each verified.
    /// Refuses if a document already has content there, unless --merge.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// The export directory.
        #[arg(long = "in")]
        input: std::path::PathBuf,
        /// Merge into documents that already have content (Yjs merges lose nothing).
        #[arg(long)]
        merge: bool,
    },
    /// Print a token signed with the configured shared secret (for scripts and tests).
    Token {
        /// Document name, prefix pattern (`org-42/*`) or `*`.
        #[arg(long)]
        doc: String,
        /// `read` or `write`.
        #[arg(long, default_value = "write")]
        perm: Permission,
        /// How long the token is valid (e.g. 1h, 30m, 7d).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// The user id (`sub` claim).
        #[arg(long, default_value = "weft-cli")]
        sub: String,
        /// Let a read token send stateless messages (Hocuspocus clients; `stateless` claim).
        #[arg(long)]
        allow_stateless: bool,
        #[command(flatten)]
        auth: AuthConfig,
    },
}

/// Which store a tool works on: the server's own flags (and environment variables).
#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// `sled` (the database in --data-dir) or a postgres:// URL.
    #[arg(long, env = "WEFT_STORE", default_value = "sled")]
    store: String,
    /// Directory of the sled database.
    #[arg(long, env = "WEFT_DATA_DIR", default_value = "./data")]
    data_dir: std::path::PathBuf,
}

impl StoreArgs {
    fn spec(&self) -> anyhow::Result<StoreSpec> {
        if self.store.trim() == "sled" {
            return Ok(StoreSpec::Sled(self.data_dir.clone()));
        }
        self.store.parse().map_err(anyhow::Error::msg)
    }

    async fn open(&self) -> anyhow::Result<std::sync::Arc<dyn weft_crdt::DocStore>> {
        let spec = self.spec()?;
        stores::open(&spec)
            .await
            .with_context(|| format!("opening the store {spec}"))
    }

    /// Opens a store that must exist already (a tool reading it).
    async fn open_existing(&self) -> anyhow::Result<std::sync::Arc<dyn weft_crdt::DocStore>> {
        let spec = self.spec()?;
        stores::open_existing(&spec)
            .await
            .with_context(|| format!("opening the store {spec}"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = parse_with_config_file()?;
    match cli.command {
        Some(Command::Token {
            doc,
            perm,
            ttl,
            sub,
            allow_stateless,
            auth,
        }) => {
            let auth = Authenticator::from_config(&auth)?
                .context("no auth secret configured: pass --auth-secret or WEFT_AUTH_SECRET")?;
            anyhow::ensure!(!ttl.is_zero(), "--ttl must be longer than 0s");
            anyhow::ensure!(
                ttl <= Duration::from_secs(100 * 365 * 86_400),
                "--ttl must be at most 100 years"
            );
            // The pattern's prefix must be something a document name can start with.
            let prefix = doc.strip_suffix('*').unwrap_or(&doc);
            if !prefix.is_empty() {
                weft_crdt::DocName::new(prefix).map_err(|error| {
                    anyhow::anyhow!("--doc {doc:?} can never match a document: {error}")
                })?;
            }
            let mut claims = claims_for(&sub, &doc, perm, ttl);
            claims.stateless = allow_stateless;
            println!("{}", auth.issue(&claims)?);
            Ok(())
        }
        Some(Command::Fsck { store, json }) => run_fsck(&store, json).await,
        Some(Command::Migrate { from, to, merge }) => run_migrate(&from, &to, merge).await,
        Some(Command::Export { store, out }) => {
            let store = store.open_existing().await?;
            let report = archive::export(store.as_ref(), &out, |name| eprintln!("exported {name}"))
                .await
                .with_context(|| format!("exporting into {}", out.display()))?;
            println!("{} deletions exported", report.deleted);
            finish(report.documents, "exported", &report.damaged)
        }
        Some(Command::Import {
            store,
            input,
            merge,
        }) => {
            let store = store.open().await?;
            let report = archive::import(store.as_ref(), &input, merge, |name| {
                eprintln!("imported {name}")
            })
            .await
            .with_context(|| format!("importing {}", input.display()))?;
            deletions(report.deleted, &report.kept);
            finish(report.documents, "imported", &report.damaged)
        }
        None => serve(cli.server).await,
    }
}

async fn run_migrate(from: &StoreSpec, to: &StoreSpec, merge: bool) -> anyhow::Result<()> {
    anyhow::ensure!(from != to, "--from and --to name the same store");
    let source = stores::open_existing(from)
        .await
        .with_context(|| format!("opening {from}"))?;
    let destination = stores::open(to)
        .await
        .with_context(|| format!("opening {to}"))?;
    let report = migrate::migrate(source.as_ref(), destination.as_ref(), merge, |name| {
        eprintln!("copied {name}")
    })
    .await
    .with_context(|| format!("migrating {from} to {to}"))?;
    deletions(report.deleted, &report.kept);
    println!("{} versions copied and verified", report.versions);
    finish(report.copied, "copied and verified", &report.damaged)
}

/// Prints the deletions a tool carried over, and those `--merge` did not (content kept).
fn deletions(deleted: usize, kept: &[String]) {
    for name in kept {
        println!("KEPT {name} (deleted in the source, content in the destination kept by --merge)");
    }
    println!("{deleted} deletions carried over");
}

/// Prints a tool's summary; exit 1 if damaged records were left out.
fn finish(
    count: usize,
    what: &str,
    damaged: &[(String, Vec<weft_crdt::recovery::Damage>)],
) -> anyhow::Result<()> {
    for (name, damage) in damaged {
        println!("DAMAGED {name} (left out:)");
        for damage in damage {
            println!("  {}: {}", damage.record, damage.reason);
        }
    }
    println!("{count} documents {what}");
    if !damaged.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

async fn run_fsck(store: &StoreArgs, json: bool) -> anyhow::Result<()> {
    let store = store.open_existing().await?;
    let reports = fsck::check(store.as_ref()).await?;
    let damaged: Vec<_> = reports.iter().filter(|r| !r.damage.is_empty()).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &damaged {
            println!("DAMAGED {}", report.name);
            for damage in &report.damage {
                println!("  {}: {}", damage.record, damage.reason);
            }
        }
        println!(
            "{} documents checked, {} damaged",
            reports.len(),
            damaged.len()
        );
    }
    if !damaged.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    telemetry::init(config.log_format);
    let store = match config.store_kind() {
        Ok(StoreKind::Postgres(_)) => "postgresql".to_string(),
        _ => format!("sled in {}", config.data_dir.display()),
    };
    let cluster = config.redis.is_some();
    let app = Application::build(config)
        .await
        .context("starting the server")?;
    let stop = stop_signal();
    tracing::info!(addr = %app.addr(), %store, cluster, "weft listening on http://{}", app.addr());
    app.run_until_stopped(stop)
        .await
        .context("running the server")?;
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed when this is called (not
/// when the future is first polled), so a signal that arrives right after start-up is not lost.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let (Ok(mut interrupt), Ok(mut terminate)) = (interrupt, terminate) else {
                tracing::error!("cannot listen for SIGINT and SIGTERM");
                return std::future::pending::<()>().await;
            };
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("SIGINT received");
    }
}

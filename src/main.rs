//! The `weft` binary: parses the command line, then serves (the default) or runs a tool
//! subcommand (`weft token`).

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
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
    /// Check every stored document and list damaged ones (exit 1 if any). Stop the server first:
    /// the store allows one process at a time.
    Fsck {
        /// Directory of the sled database.
        #[arg(long, env = "WEFT_DATA_DIR", default_value = "./data")]
        data_dir: std::path::PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
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
        #[command(flatten)]
        auth: AuthConfig,
    },
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
            auth,
        }) => {
            let auth = Authenticator::from_config(&auth)?
                .context("no auth secret configured: pass --auth-secret or WEFT_AUTH_SECRET")?;
            println!("{}", auth.issue(&claims_for(&sub, &doc, perm, ttl))?);
            Ok(())
        }
        Some(Command::Fsck { data_dir, json }) => fsck(&data_dir, json).await,
        None => serve(cli.server).await,
    }
}

async fn fsck(data_dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let store = weft_crdt::SledStore::open(data_dir)
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let reports = weft_crdt::recovery::check_store(&store).await?;
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
    tracing::info!(addr = %app.addr(), %store, cluster, "weft listening on http://{}", app.addr());
    app.run_until_stopped(stop_signal())
        .await
        .context("running the server")?;
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}

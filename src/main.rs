//! The `weft` binary: parses the command line and runs the server until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use weft_server::{telemetry, Application, ServerConfig};

/// Weft: a self-hostable, y-websocket-compatible collaborative editing server.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about)]
struct Cli {
    #[command(flatten)]
    server: ServerConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.server.log_format);
    let data_dir = cli.server.data_dir.display().to_string();
    let app = Application::build(cli.server)
        .await
        .context("starting the server")?;
    tracing::info!(addr = %app.addr(), data_dir = %data_dir, "weft listening on http://{}", app.addr());
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

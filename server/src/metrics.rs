//! Prometheus metrics: the process-wide recorder and `GET /metrics`.
//!
//! Every layer records through the `metrics` facade (`weft_*` names); this module installs the
//! Prometheus recorder once per process, renders it in the text exposition format, and is the
//! document hook ([`MetricsHook`]) through which documents are counted (the engine itself
//! records nothing).

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::HttpResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use weft_crdt::hooks::Change;
use weft_crdt::{ConnId, DocHooks, DocName};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (first call only) and returns its handle; `None` if another recorder
/// was installed by the embedding program.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 0.5, 1.0,
                ])
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("weft-metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "weft_connections",
        "Open document sessions (a Hocuspocus socket holds one per document)"
    );
    describe_gauge!(
        "weft_sockets",
        "Open WebSocket connections, by wire protocol (protocol=y-websocket|hocuspocus)"
    );
    describe_counter!(
        "weft_stateless_messages_total",
        "Stateless messages received, by wire protocol"
    );
    describe_gauge!("weft_documents_loaded", "Documents in memory");
    describe_counter!("weft_updates_applied_total", "Updates applied and stored");
    describe_counter!(
        "weft_updates_broadcast_total",
        "Update frames queued to clients"
    );
    describe_counter!(
        "weft_bytes_in_total",
        Unit::Bytes,
        "WebSocket payload bytes received"
    );
    describe_counter!(
        "weft_bytes_out_total",
        Unit::Bytes,
        "WebSocket payload bytes sent"
    );
    describe_histogram!(
        "weft_persist_seconds",
        Unit::Seconds,
        "Durable append latency (group commit)"
    );
    describe_counter!(
        "weft_awareness_frames_merged_total",
        "Awareness messages relayed merged into one frame with others of their batch"
    );
    describe_counter!("weft_compactions_total", "Log compactions");
    describe_counter!("weft_auth_refusals_total", "Requests refused by auth");
    describe_counter!(
        "weft_slow_client_disconnects_total",
        "Clients disconnected for a full outgoing queue"
    );
    describe_counter!(
        "weft_connections_refused_total",
        "Connections refused before the upgrade"
    );
    describe_counter!("weft_webhooks_total", "Webhook deliveries by result");
    describe_counter!(
        "weft_memory_trims_total",
        "Times freed memory was returned to the OS after documents unloaded"
    );
}

/// `GET /metrics`: Prometheus text format.
pub async fn render() -> HttpResponse {
    match HANDLE.get().cloned().flatten() {
        Some(handle) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(handle.render()),
        None => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "error": "metrics recorder not installed" })),
    }
}

/// Counts what documents do: the `weft_documents_loaded` gauge, updates applied and broadcast,
/// persist time, compactions, merged awareness relays, slow-client disconnects.
pub struct MetricsHook;

impl DocHooks for MetricsHook {
    fn loaded(&self, _doc: &DocName) {
        metrics::gauge!("weft_documents_loaded").increment(1.0);
    }

    fn unloaded(&self, _doc: &DocName) {
        metrics::gauge!("weft_documents_loaded").decrement(1.0);
    }

    fn changed(&self, _doc: &DocName, change: &Change<'_>) {
        metrics::histogram!("weft_persist_seconds").record(change.persist_time.as_secs_f64());
        metrics::counter!("weft_updates_applied_total").increment(change.updates as u64);
    }

    fn compacted(&self, _doc: &DocName, _snapshot_bytes: u64) {
        metrics::counter!("weft_compactions_total").increment(1);
    }

    fn broadcast(&self, _doc: &DocName, receivers: usize) {
        metrics::counter!("weft_updates_broadcast_total").increment(receivers as u64);
    }

    fn awareness_merged(&self, _doc: &DocName, merged: usize) {
        metrics::counter!("weft_awareness_frames_merged_total").increment(merged as u64);
    }

    fn slow_client(&self, _doc: &DocName, _conn: ConnId) {
        metrics::counter!("weft_slow_client_disconnects_total").increment(1);
    }
}

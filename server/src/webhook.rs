//! Webhooks: a debounced `POST {doc, updatedAt}` to `--webhook-url` after a document changes,
//! signed with `--webhook-secret`.
//!
//! Signature: header `Weft-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`,
//! keyed with the secret. A receiver recomputes it over the raw body, compares in constant time,
//! and refuses a `t` more than a few minutes old (a replayed request). Failures are logged
//! without the URL (its query string may hold a secret).
//!
//! [`Webhooks`] is a document hook: the actor only marks the document as changed (a map
//! insert, never blocking). A
//! dispatcher task fires once a document has been quiet for `--webhook-wait`, or at the latest
//! `--webhook-max-wait` after its first unreported change, and retries failed deliveries with
//! backoff. Failures are logged and counted; editing never waits for a webhook.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use tokio::sync::Notify;
use weft_crdt::hooks::Change;
use weft_crdt::{DocHooks, DocName};

/// Webhook settings.
#[derive(Debug, Clone, Args)]
pub struct WebhookConfig {
    /// URL that receives `POST {"doc": ..., "updatedAt": ...}` after changes.
    #[arg(long, env = "WEFT_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// Quiet time after the last change before the webhook fires.
    #[arg(long, env = "WEFT_WEBHOOK_WAIT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub webhook_wait: Duration,

    /// Longest delay after the first unreported change, even if changes keep coming.
    #[arg(long, env = "WEFT_WEBHOOK_MAX_WAIT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub webhook_max_wait: Duration,

    /// Timeout of one delivery attempt.
    #[arg(long, env = "WEFT_WEBHOOK_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub webhook_timeout: Duration,

    /// Delivery attempts before giving up on one notification.
    #[arg(long, env = "WEFT_WEBHOOK_ATTEMPTS", default_value_t = 4)]
    pub webhook_attempts: u32,

    /// Secret that signs every webhook (header `Weft-Signature`, see the README).
    #[arg(long, env = "WEFT_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
}

/// The header carrying a webhook's signature.
pub const SIGNATURE_HEADER: &str = "Weft-Signature";

/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">` keyed with `secret`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // Any key length is valid for HMAC.
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={timestamp},v1={digest}")
}

/// When a document's changes were first and last seen since its last notification.
struct Pending {
    first: Instant,
    last: Instant,
    updated_at_ms: u64,
}

/// Debounces change notifications and delivers them.
///
/// The hook holds the dispatcher weakly: once the server drops its `Arc`, changes are ignored.
pub struct WebhookHook(std::sync::Weak<Webhooks>);

impl DocHooks for WebhookHook {
    fn changed(&self, doc: &DocName, _change: &Change<'_>) {
        if let Some(hooks) = self.0.upgrade() {
            hooks.mark_changed(doc);
        }
    }
}

/// Debounces change notifications and delivers them.
pub struct Webhooks {
    config: WebhookConfig,
    url: String,
    pending: Mutex<HashMap<DocName, Pending>>,
    wake: Notify,
}

impl Webhooks {
    /// Starts the dispatcher on the current runtime; `None` when no URL is configured.
    pub fn start(config: &WebhookConfig) -> Option<Arc<Webhooks>> {
        let url = config.webhook_url.clone()?;
        let hooks = Arc::new(Webhooks {
            config: config.clone(),
            url,
            pending: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        });
        tokio::spawn(Arc::clone(&hooks).dispatch());
        Some(hooks)
    }

    /// The document hook that feeds this dispatcher.
    pub fn hook(self: &Arc<Self>) -> Arc<dyn DocHooks> {
        Arc::new(WebhookHook(Arc::downgrade(self)))
    }

    fn mark_changed(&self, name: &DocName) {
        let now = Instant::now();
        let updated_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .entry(name.clone())
            .and_modify(|p| {
                p.last = now;
                p.updated_at_ms = updated_at_ms;
            })
            .or_insert(Pending {
                first: now,
                last: now,
                updated_at_ms,
            });
        drop(pending);
        self.wake.notify_one();
    }

    fn due_at(&self, p: &Pending) -> Instant {
        (p.last + self.config.webhook_wait).min(p.first + self.config.webhook_max_wait)
    }

    async fn dispatch(self: Arc<Self>) {
        let client = match reqwest::Client::builder()
            .timeout(self.config.webhook_timeout)
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "cannot build the webhook HTTP client; webhooks are off");
                return;
            }
        };
        loop {
            let now = Instant::now();
            let (due, next) = {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let due: Vec<DocName> = pending
                    .iter()
                    .filter(|(_, p)| self.due_at(p) <= now)
                    .map(|(name, _)| name.clone())
                    .collect();
                let due: Vec<(DocName, u64)> = due
                    .into_iter()
                    .filter_map(|name| pending.remove(&name).map(|p| (name, p.updated_at_ms)))
                    .collect();
                let next = pending.values().map(|p| self.due_at(p)).min();
                (due, next)
            };
            for (doc, updated_at_ms) in due {
                let client = client.clone();
                let hooks = Arc::clone(&self);
                tokio::spawn(async move { hooks.deliver(&client, &doc, updated_at_ms).await });
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    async fn deliver(&self, client: &reqwest::Client, doc: &DocName, updated_at_ms: u64) {
        let body = serde_json::json!({ "doc": doc.as_str(), "updatedAt": updated_at_ms });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut backoff = Duration::from_millis(250);
        for attempt in 1..=self.config.webhook_attempts.max(1) {
            let mut request = client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(secret) = &self.config.webhook_secret {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                request =
                    request.header(SIGNATURE_HEADER, signature(secret.as_bytes(), now, &body));
            }
            let result = request.send().await;
            match result {
                Ok(response) if response.status().is_success() => {
                    metrics::counter!("weft_webhooks_total", "result" => "delivered").increment(1);
                    tracing::debug!(doc = %doc, attempt, "webhook delivered");
                    return;
                }
                Ok(response) => {
                    tracing::warn!(doc = %doc, attempt, status = response.status().as_u16(), "webhook refused")
                }
                Err(error) => {
                    // Never the URL: its query string may hold a secret.
                    let error = error.without_url();
                    tracing::warn!(doc = %doc, attempt, %error, "webhook failed")
                }
            }
            if attempt < self.config.webhook_attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        metrics::counter!("weft_webhooks_total", "result" => "failed").increment(1);
        tracing::error!(doc = %doc, attempts = self.config.webhook_attempts, "webhook gave up");
    }
}

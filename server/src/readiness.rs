//! Readiness: whether the store answers, checked at most once a second. `/readyz` is
//! unauthenticated, and each check goes through the store (a flush for sled), so a flood of
//! probes must not become a flood of checks.

use std::time::{Duration, Instant};

use weft_crdt::DocStore;

/// How long a readiness answer is reused.
const READINESS_TTL: Duration = Duration::from_secs(1);

/// The last store check and when it was made. Probes arriving together wait for one check.
#[derive(Default)]
pub struct Readiness(tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>);

impl Readiness {
    /// Whether `store` works, from a check at most a second old.
    pub async fn check(&self, store: &dyn DocStore) -> Result<(), String> {
        let mut last = self.0.lock().await;
        if let Some((at, result)) = last.as_ref() {
            if at.elapsed() < READINESS_TTL {
                return result.clone();
            }
        }
        metrics::counter!("weft_readiness_checks_total").increment(1);
        let result = store.check().await.map_err(|e| e.to_string());
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

//! Limits that protect everyone from one client: connection caps (checked before the upgrade)
//! and a per-connection message rate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use weft_crdt::DocName;

use crate::error::ApiError;

/// Counts open WebSocket connections, in total and per document.
pub struct ConnectionLimits {
    max_total: usize,
    max_per_doc: usize,
    total: AtomicUsize,
    per_doc: Mutex<HashMap<DocName, usize>>,
}

/// One counted connection; dropping it frees the slot.
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    doc: DocName,
}

impl ConnectionLimits {
    /// Limits of `max_total` connections, `max_per_doc` to any one document.
    pub fn new(max_total: usize, max_per_doc: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_doc,
            total: AtomicUsize::new(0),
            per_doc: Mutex::new(HashMap::new()),
        })
    }

    /// Open connections right now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Takes a slot for a connection to `doc`, or refuses with 503.
    pub fn acquire(self: &Arc<Self>, doc: &DocName) -> Result<ConnectionPermit, ApiError> {
        let mut per_doc = self.per_doc.lock().unwrap_or_else(|e| e.into_inner());
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            metrics::counter!("weft_connections_refused_total", "reason" => "server_full")
                .increment(1);
            return Err(ApiError::Unavailable(format!(
                "server is at its limit of {} connections",
                self.max_total
            )));
        }
        let count = per_doc.entry(doc.clone()).or_insert(0);
        if *count >= self.max_per_doc {
            metrics::counter!("weft_connections_refused_total", "reason" => "document_full")
                .increment(1);
            return Err(ApiError::Unavailable(format!(
                "document {doc} is at its limit of {} connections",
                self.max_per_doc
            )));
        }
        *count += 1;
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("weft_connections").set(total as f64);
        Ok(ConnectionPermit {
            limits: Arc::clone(self),
            doc: doc.clone(),
        })
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut per_doc = self
            .limits
            .per_doc
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_doc.get_mut(&self.doc) {
            *count -= 1;
            if *count == 0 {
                per_doc.remove(&self.doc);
            }
        }
        let total = self.limits.total.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("weft_connections").set(total as f64);
    }
}

/// A token bucket: `rate` messages per second, bursts up to twice that.
pub struct RateLimiter {
    rate: f64,
    capacity: f64,
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// A full bucket for `per_second` messages per second.
    pub fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        RateLimiter {
            rate,
            capacity: rate * 2.0,
            tokens: rate * 2.0,
            refilled: Instant::now(),
        }
    }

    /// Takes one token; false when the client is over its rate.
    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_count_and_free_their_slots() {
        let limits = ConnectionLimits::new(3, 2);
        let a = DocName::new("a").unwrap();
        let b = DocName::new("b").unwrap();
        let p1 = limits.acquire(&a).unwrap();
        let _p2 = limits.acquire(&a).unwrap();
        assert!(limits.acquire(&a).is_err(), "per-document cap");
        let _p3 = limits.acquire(&b).unwrap();
        assert!(limits.acquire(&b).is_err(), "total cap");
        drop(p1);
        assert_eq!(limits.open(), 2);
        assert!(limits.acquire(&a).is_ok());
    }

    #[test]
    fn rate_limiter_allows_a_burst_then_refuses() {
        let mut limiter = RateLimiter::new(10);
        let allowed = (0..100).filter(|_| limiter.allow()).count();
        assert!(
            (20..=21).contains(&allowed),
            "burst of twice the rate, got {allowed}"
        );
    }
}

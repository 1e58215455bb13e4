//! One byte budget for every large message in flight at once, across all connections and API
//! requests.
//!
//! `--max-message-bytes` bounds one message, but a thousand connections each sending one
//! message just under it would still make the server buffer a thousand times that before any
//! of them is complete. So a message (or request body) larger than [`SMALL`] reserves its size
//! from this budget as soon as its size is known (a WebSocket frame's header, a request's
//! `Content-Length` or its chunks so far), and gives it back once it has been handed on. When
//! the budget is spent, the newcomer is refused as busy (WebSocket 1013, HTTP 503 with
//! `Retry-After`) before its bytes arrive; the server's memory for messages in flight stays
//! under `--max-inflight-bytes` plus [`SMALL`] per connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Messages up to this size never reserve: ordinary edits cost nothing extra, and what they can
/// add up to is bounded by the connection caps.
pub const SMALL: usize = 64 * 1024;

/// The shared budget.
#[derive(Debug)]
pub struct InflightBytes {
    used: AtomicUsize,
    max: usize,
}

impl InflightBytes {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(InflightBytes {
            used: AtomicUsize::new(0),
            max,
        })
    }

    /// An empty reservation against this budget.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            held: 0,
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn take(&self, bytes: usize) -> bool {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let Some(next) = used.checked_add(bytes).filter(|n| *n <= self.max) else {
                metrics::counter!("weft_inflight_refusals_total").increment(1);
                return false;
            };
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    metrics::gauge!("weft_inflight_bytes").set(next as f64);
                    return true;
                }
                Err(now) => used = now,
            }
        }
    }

    fn give_back(&self, bytes: usize) {
        let now = self.used.fetch_sub(bytes, Ordering::AcqRel) - bytes;
        metrics::gauge!("weft_inflight_bytes").set(now as f64);
    }
}

/// What one message (or body) in flight holds of the budget; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<InflightBytes>,
    held: usize,
}

impl Reservation {
    /// Makes the reservation cover a message of `bytes` (no change if it already does, or if
    /// the message is [`SMALL`]); false if the budget cannot (what was held stays held).
    pub fn grow_to(&mut self, bytes: usize) -> bool {
        if bytes <= SMALL || bytes <= self.held {
            return true;
        }
        if !self.budget.take(bytes - self.held) {
            return false;
        }
        self.held = bytes;
        true
    }

    /// Gives everything back (the message has been handed on).
    pub fn release(&mut self) {
        if self.held > 0 {
            self.budget.give_back(self.held);
            self.held = 0;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_messages_share_the_budget_small_ones_are_free() {
        let budget = InflightBytes::new(1000 * 1024);
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        assert!(a.grow_to(SMALL), "small messages never reserve");
        assert_eq!(budget.used(), 0);
        assert!(a.grow_to(600 * 1024));
        assert!(a.grow_to(500 * 1024), "already covered");
        assert!(!b.grow_to(500 * 1024), "over the budget");
        assert_eq!(budget.used(), 600 * 1024);
        a.release();
        assert!(b.grow_to(500 * 1024));
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}

//! Limits that protect everyone from one client: connection caps (checked before the upgrade:
//! in total, per document, per client address and per user), a per-connection message rate,
//! and a penalty box for addresses that keep sending invalid messages.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weft_crdt::DocName;

use crate::error::ApiError;

/// How long an address's invalid messages are counted against it.
const PENALTY_WINDOW: Duration = Duration::from_secs(60);

/// The caps, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Connections in total.
    pub total: usize,
    /// Connections to one document.
    pub per_doc: usize,
    /// Connections from one client address.
    pub per_ip: usize,
    /// Connections of one user.
    pub per_user: usize,
    /// Invalid messages one address may send per minute before it is refused.
    pub bad_messages_per_minute: u32,
}

/// Counts per key, dropping keys that reach zero.
struct Counts<K>(HashMap<K, usize>);

impl<K: Hash + Eq + Clone> Counts<K> {
    fn get(&self, key: &K) -> usize {
        self.0.get(key).copied().unwrap_or(0)
    }

    fn add(&mut self, key: &K) {
        *self.0.entry(key.clone()).or_insert(0) += 1;
    }

    fn remove(&mut self, key: &K) {
        if let Some(count) = self.0.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.0.remove(key);
            }
        }
    }
}

/// Open connections by document, address and user.
struct Open {
    per_doc: Counts<DocName>,
    per_ip: Counts<IpAddr>,
    per_user: Counts<String>,
}

/// Counts open WebSocket connections and invalid messages.
pub struct ConnectionLimits {
    caps: Caps,
    total: AtomicUsize,
    open: Mutex<Open>,
    /// Invalid messages per address: how many, since when.
    penalties: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// One counted connection; dropping it frees the slot.
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    /// The document and user it counts against (`None`: a socket with no document yet).
    doc: Option<DocName>,
    ip: IpAddr,
    user: Option<String>,
}

impl ConnectionLimits {
    /// Limits with these caps.
    pub fn new(caps: Caps) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            caps,
            total: AtomicUsize::new(0),
            open: Mutex::new(Open {
                per_doc: Counts(HashMap::new()),
                per_ip: Counts(HashMap::new()),
                per_user: Counts(HashMap::new()),
            }),
            penalties: Mutex::new(HashMap::new()),
        })
    }

    /// Open connections right now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Takes a slot for a connection of `user` from `ip` to `doc`, or refuses: 503 when the
    /// server or the document is full, 429 when this address or user has its share, or when
    /// the address sent too many invalid messages lately. `user` is `None` when auth is off:
    /// every client is then "anonymous", and only the address cap applies (a per-user cap
    /// would cap the whole server).
    pub fn acquire(
        self: &Arc<Self>,
        doc: &DocName,
        ip: IpAddr,
        user: Option<&str>,
    ) -> Result<ConnectionPermit, ApiError> {
        self.take(Some(doc), ip, user)
    }

    /// Takes a slot for a socket that has no document yet (a Hocuspocus connection before its
    /// first Auth): counted in total and against its address, so sockets that never open a
    /// document cannot go uncounted. Refused as [`Self::acquire`] refuses.
    pub fn acquire_socket(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, ApiError> {
        self.take(None, ip, None)
    }

    /// Checks every cap that applies (the document's and the user's only when given), then
    /// counts the connection against them.
    fn take(
        self: &Arc<Self>,
        doc: Option<&DocName>,
        ip: IpAddr,
        user: Option<&str>,
    ) -> Result<ConnectionPermit, ApiError> {
        self.check_penalty(ip)?;
        let caps = self.caps;
        let user = user.map(str::to_string);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let refused = |reason: &'static str, error: ApiError| {
            metrics::counter!("weft_connections_refused_total", "reason" => reason).increment(1);
            Err(error)
        };
        if self.total.load(Ordering::Relaxed) >= caps.total {
            return refused(
                "server_full",
                ApiError::Unavailable(format!(
                    "server is at its limit of {} connections",
                    caps.total
                )),
            );
        }
        if let Some(doc) = doc.filter(|doc| open.per_doc.get(doc) >= caps.per_doc) {
            return refused(
                "document_full",
                ApiError::Unavailable(format!(
                    "document {doc} is at its limit of {} connections",
                    caps.per_doc
                )),
            );
        }
        if open.per_ip.get(&ip) >= caps.per_ip {
            return refused(
                "address_share",
                ApiError::TooMany(format!(
                    "this address has its share of {} connections",
                    caps.per_ip
                )),
            );
        }
        if user
            .as_ref()
            .is_some_and(|u| open.per_user.get(u) >= caps.per_user)
        {
            return refused(
                "user_share",
                ApiError::TooMany(format!(
                    "this user has its share of {} connections",
                    caps.per_user
                )),
            );
        }
        if let Some(doc) = doc {
            open.per_doc.add(doc);
        }
        open.per_ip.add(&ip);
        if let Some(user) = &user {
            open.per_user.add(user);
        }
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("weft_connections").set(total as f64);
        Ok(ConnectionPermit {
            limits: Arc::clone(self),
            doc: doc.cloned(),
            ip,
            user,
        })
    }

    /// Counts an invalid message from `ip`.
    pub fn penalize(&self, ip: IpAddr) {
        let mut penalties = self.penalties.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Forget addresses whose window is over, so the map stays small.
        if penalties.len() > 4096 {
            penalties.retain(|_, (_, since)| now.duration_since(*since) < PENALTY_WINDOW);
        }
        let entry = penalties.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= PENALTY_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    /// 429 if `ip` sent too many invalid messages in the current window.
    pub fn check_penalty(&self, ip: IpAddr) -> Result<(), ApiError> {
        let penalties = self.penalties.lock().unwrap_or_else(|e| e.into_inner());
        let Some((count, since)) = penalties.get(&ip) else {
            return Ok(());
        };
        if *count >= self.caps.bad_messages_per_minute && since.elapsed() < PENALTY_WINDOW {
            metrics::counter!("weft_connections_refused_total", "reason" => "bad_messages")
                .increment(1);
            return Err(ApiError::TooMany(
                "too many invalid messages from this address; try again later".into(),
            ));
        }
        Ok(())
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(doc) = &self.doc {
            open.per_doc.remove(doc);
        }
        open.per_ip.remove(&self.ip);
        if let Some(user) = &self.user {
            open.per_user.remove(user);
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

    fn caps() -> Caps {
        Caps {
            total: 4,
            per_doc: 2,
            per_ip: 3,
            per_user: 3,
            bad_messages_per_minute: 2,
        }
    }

    /// With auth off there is no user to count: 512 anonymous clients used to fill the whole
    /// server (the per-user cap counted them all as "anonymous").
    #[test]
    fn without_auth_only_the_address_cap_applies() {
        let limits = ConnectionLimits::new(Caps {
            total: 100,
            per_doc: 100,
            per_ip: 100,
            per_user: 2,
            ..caps()
        });
        let doc = DocName::new("a").unwrap();
        let permits: Vec<_> = (0..10u8)
            .map(|i| limits.acquire(&doc, [10, 0, 0, i].into(), None).unwrap())
            .collect();
        assert_eq!(permits.len(), 10);
    }

    #[test]
    fn permits_count_and_free_their_slots() {
        let limits = ConnectionLimits::new(Caps {
            per_ip: 10,
            per_user: 10,
            total: 3,
            ..caps()
        });
        let ip: IpAddr = [10, 0, 0, 1].into();
        let a = DocName::new("a").unwrap();
        let b = DocName::new("b").unwrap();
        let p1 = limits.acquire(&a, ip, Some("u")).unwrap();
        let _p2 = limits.acquire(&a, ip, Some("u")).unwrap();
        assert!(
            limits.acquire(&a, ip, Some("u")).is_err(),
            "per-document cap"
        );
        let _p3 = limits.acquire(&b, ip, Some("u")).unwrap();
        assert!(limits.acquire(&b, ip, Some("u")).is_err(), "total cap");
        drop(p1);
        assert_eq!(limits.open(), 2);
        assert!(limits.acquire(&a, ip, Some("u")).is_ok());
    }

    #[test]
    fn an_address_or_a_user_gets_its_share_only() {
        let limits = ConnectionLimits::new(Caps {
            total: 100,
            per_doc: 100,
            ..caps()
        });
        let (one, two): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let docs: Vec<DocName> = (0..8)
            .map(|i| DocName::new(&format!("d{i}")).unwrap())
            .collect();
        let held: Vec<_> = (0..3)
            .map(|i| {
                limits
                    .acquire(&docs[i], one, Some(&format!("u{i}")))
                    .unwrap()
            })
            .collect();
        assert!(
            matches!(
                limits.acquire(&docs[3], one, Some("u9")),
                Err(ApiError::TooMany(_))
            ),
            "per address"
        );
        let mine: Vec<_> = (0..3)
            .map(|i| limits.acquire(&docs[i], two, Some("same")).unwrap())
            .collect();
        assert!(
            matches!(
                limits.acquire(&docs[4], two, Some("same")),
                Err(ApiError::TooMany(_))
            ),
            "per user"
        );
        drop((held, mine));
        assert!(limits.acquire(&docs[5], one, Some("u9")).is_ok());
    }

    #[test]
    fn an_address_that_keeps_sending_invalid_messages_is_refused() {
        let limits = ConnectionLimits::new(caps());
        let ip: IpAddr = [10, 0, 0, 3].into();
        let doc = DocName::new("d").unwrap();
        limits.penalize(ip);
        assert!(limits.check_penalty(ip).is_ok(), "one is a mistake");
        limits.penalize(ip);
        assert!(matches!(
            limits.acquire(&doc, ip, Some("u")),
            Err(ApiError::TooMany(_))
        ));
        let other: IpAddr = [10, 0, 0, 4].into();
        assert!(
            limits.acquire(&doc, other, Some("u")).is_ok(),
            "others are not affected"
        );
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

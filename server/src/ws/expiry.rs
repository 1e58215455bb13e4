//! When a connection's token expires: [`Expiry`] ends the connection then (close code 4401),
//! and says whether it has, so nothing the client sends after `exp` reaches a document.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Sleep;

/// A token's expiry and the timer that fires at it.
pub(crate) struct Expiry {
    /// Seconds since the Unix epoch (`None`: no token, no expiry).
    at: Option<u64>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Expiry {
    pub fn new(at: Option<u64>) -> Self {
        Expiry {
            at,
            timer: at.map(|exp| Box::pin(tokio::time::sleep(until(exp)))),
        }
    }

    /// Ends the connection at `at` too, if that is sooner (a connection carrying several
    /// documents, each opened with its own token, ends when the first of them expires).
    pub fn tighten(&mut self, at: Option<u64>) {
        let Some(at) = at else { return };
        if self.at.is_none_or(|current| at < current) {
            *self = Expiry::new(Some(at));
        }
    }

    /// Whether the token has expired.
    pub fn expired(&self) -> bool {
        self.at.is_some_and(|exp| now() >= exp)
    }

    /// True once the token has expired (the waker in `cx` is woken then).
    pub fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        let (Some(exp), Some(timer)) = (self.at, self.timer.as_mut()) else {
            return false;
        };
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        if now() >= exp {
            return true;
        }
        // Woken early (the monotonic and the wall clock disagree a little): wait for the rest.
        let rest = until(exp).max(Duration::from_millis(10));
        timer.as_mut().reset(tokio::time::Instant::now() + rest);
        let _ = timer.as_mut().poll(cx);
        false
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long until `exp` (seconds since the Unix epoch); zero if it has passed.
fn until(exp: u64) -> Duration {
    let exp = UNIX_EPOCH + Duration::from_secs(exp);
    exp.duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

//! The generator's clock, the measurement window on it, and the markers that carry a send time
//! in each update's text (`~W<writer>S<seq>T<send time>~`): written by writers, found by readers
//! in the raw update bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since the generator's epoch (its first call).
pub fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// The measurement window, in µs since the generator's epoch: empty until it is set, once
/// everyone is connected.
pub struct Window {
    from: AtomicU64,
    to: AtomicU64,
}

impl Window {
    /// A window not set yet (it contains no time).
    pub fn unset() -> Window {
        Window {
            from: AtomicU64::new(u64::MAX),
            to: AtomicU64::new(u64::MAX),
        }
    }

    /// Sets the window to `from..to`.
    pub fn set(&self, from: u64, to: u64) {
        self.from.store(from, Ordering::Relaxed);
        self.to.store(to, Ordering::Relaxed);
    }

    /// Whether time `at` is inside the window.
    pub fn contains(&self, at: u64) -> bool {
        at >= self.from.load(Ordering::Relaxed) && at < self.to.load(Ordering::Relaxed)
    }
}

/// The marker for update `seq` of writer `writer`, sent at `sent_at` (µs).
pub fn encode(writer: u32, seq: u64, sent_at: u64) -> String {
    format!("~W{writer}S{seq}T{sent_at}~")
}

/// Finds every marker in `bytes`: (writer, seq, send time in µs). This runs for every delivered
/// update (millions per second under overload), so it looks for `~W` and reads the digits itself.
pub fn markers(bytes: &[u8]) -> impl Iterator<Item = (u32, u64, u64)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        while let Some(pos) = bytes[at..].iter().position(|&b| b == b'~') {
            let start = at + pos + 1;
            at = start;
            if bytes.get(start) != Some(&b'W') {
                continue;
            }
            if let Some((marker, len)) = parse_marker(&bytes[start + 1..]) {
                at = start + 1 + len;
                return Some(marker);
            }
        }
        None
    })
}

/// Parses `<writer>S<seq>T<time>~`; returns it and how many bytes it took.
fn parse_marker(rest: &[u8]) -> Option<((u32, u64, u64), usize)> {
    let (writer, a) = number_until(rest, b'S')?;
    let (seq, b) = number_until(&rest[a..], b'T')?;
    let (time, c) = number_until(&rest[a + b..], b'~')?;
    Some(((u32::try_from(writer).ok()?, seq, time), a + b + c))
}

/// A decimal number of 1 to 19 digits followed by `end`; returns it and its length with `end`.
fn number_until(bytes: &[u8], end: u8) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(20) {
        match byte {
            b'0'..=b'9' => {
                value = value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
            }
            _ if byte == end && i > 0 => return Some((value, i + 1)),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::markers;

    #[test]
    fn finds_adjacent_markers_and_skips_lookalikes() {
        let bytes = b"\x01~W~W3S4~~W1S2T30~~W2S9T40~x~W5S6T~~W7S8T99";
        let found: Vec<_> = markers(bytes).collect();
        assert_eq!(found, vec![(1, 2, 30), (2, 9, 40)]);
    }
}

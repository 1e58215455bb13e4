//! What readers received inside the measurement window: each reader's own [`Tally`] per kind of
//! message (updates, cursors), added up into the shared [`Totals`] when the reader stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::marker::{markers, now_us, Window};

/// What one reader received of one kind of message (updates, or cursors) sent inside the
/// window: each marker's latency, and how many frames carried them.
#[derive(Default)]
pub struct Tally {
    latencies: Vec<u32>,
    frames: u64,
}

impl Tally {
    /// An empty tally with room for `latencies` markers.
    pub fn with_capacity(latencies: usize) -> Tally {
        Tally {
            latencies: Vec::with_capacity(latencies),
            frames: 0,
        }
    }

    /// Records the window's markers in `frame`, received now; the frame counts if it had any.
    pub fn record(&mut self, window: &Window, frame: &[u8]) {
        let now = now_us();
        let before = self.latencies.len();
        for (_, _, sent) in markers(frame) {
            if window.contains(sent) {
                self.latencies
                    .push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
            }
        }
        if self.latencies.len() > before {
            self.frames += 1;
        }
    }
}

/// Every reader's [`Tally`] of one kind, added up.
#[derive(Default)]
pub struct Totals {
    latencies: Mutex<Vec<u32>>,
    frames: AtomicU64,
}

impl Totals {
    /// Adds a reader's tally.
    pub fn add(&self, tally: Tally) {
        self.frames.fetch_add(tally.frames, Ordering::Relaxed);
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(tally.latencies);
    }

    /// The latencies (sorted: one per marker received), and the frames that carried them.
    pub fn take(&self) -> (Vec<u32>, u64) {
        let mut latencies =
            std::mem::take(&mut *self.latencies.lock().unwrap_or_else(|e| e.into_inner()));
        latencies.sort_unstable();
        (latencies, self.frames.load(Ordering::Relaxed))
    }
}

//! Giving memory back: after documents unload, glibc keeps freed heap pages resident (its
//! arenas only shrink from the top). A housekeeping task asks it to return them, so the
//! process's RSS falls back when clients leave instead of staying at its high-water mark.

use std::time::Duration;

use tokio::sync::watch;
use weft_crdt::Registry;

/// How often the task looks at the number of loaded documents.
const PERIOD: Duration = Duration::from_secs(5);

/// Starts the task on the current runtime. It trims after the loaded-document count fell, and
/// ends (releasing its hold on the registry and so the store) when `shutdown` turns true.
pub fn spawn_trimmer(registry: Registry, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut last = registry.loaded_count();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PERIOD) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
            let now = registry.loaded_count();
            if now < last {
                // malloc_trim walks every arena; off the async workers.
                let _ = tokio::task::spawn_blocking(trim).await;
                metrics::counter!("weft_memory_trims_total").increment(1);
            }
            last = now;
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only releases free memory back to the OS; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

//! Session threads: one single-threaded tokio runtime per thread, each owning
//! the sessions handed to it.
//!
//! Why not one multi-threaded runtime: a relay does almost nothing per
//! message besides two socket calls, so the scheduler's own cost shows. With
//! work stealing, a task woken by one worker's epoll is often run by another
//! (a futex wake-up and a cache miss per hop), and idle workers are unparked
//! to go looking for work. Here a session's sockets, timers and task all live
//! on one thread for the session's whole life, as in pgbouncer's event loop,
//! and the threads share nothing on the hot path. Sessions are handed out
//! round robin; a session is long-lived, so the load evens out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Each thread's stop signal and join handle, taken by `stop`.
    threads: Mutex<Vec<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

impl Workers {
    /// Starts `n` session threads (at least one).
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            handles.push(rt.handle().clone());
            let t = std::thread::Builder::new()
                .name(format!("sqlgate-io-{i}"))
                .spawn(move || {
                    // A current-thread runtime runs its tasks only inside
                    // `block_on`: this thread drives them until told to stop.
                    let _ = rt.block_on(stopped);
                    rt.shutdown_timeout(std::time::Duration::from_secs(1));
                })?;
            threads.push((stop, t));
        }
        Ok(Workers {
            handles,
            next: AtomicUsize::new(0),
            threads: Mutex::new(threads),
        })
    }

    /// The runtime the next session goes to.
    pub fn next(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }

    /// Stops the threads and waits for them. Whatever still runs there
    /// (sessions cut at the shutdown timeout, approval timers) is dropped,
    /// and with it every handle on the audit log, so the log can close.
    pub fn stop(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        // All threads are told first, so that they wind down together.
        let (stops, joins): (Vec<_>, Vec<_>) = threads.into_iter().unzip();
        drop(stops);
        for t in joins {
            let _ = t.join();
        }
    }
}

/// The default number of session threads: one per CPU, or `SQLGATE_WORKERS`.
pub fn default_count() -> usize {
    std::env::var("SQLGATE_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

//! How a cancel reaches a session that is holding a statement for approval,
//! on either wire: PostgreSQL's CancelRequest (see
//! `proxy::postgres::cancel`), MySQL's `KILL QUERY` next.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How a cancel reaches a session that is holding a statement.
///
/// A held statement is not running upstream, so cancelling it means
/// withdrawing the request, and the cancel must *not* also go upstream: it
/// would arrive there asynchronously and could cancel whatever the agent
/// sends next (the agent has already been told its statement was cancelled).
#[derive(Default)]
pub struct HoldSignal {
    notify: tokio::sync::Notify,
    holding: AtomicBool,
    cancels: AtomicU64,
}

impl HoldSignal {
    /// A CancelRequest for this session: true when it withdrew a held
    /// statement (then there is nothing upstream to cancel).
    pub fn cancel(&self) -> bool {
        if !self.holding.load(Ordering::Acquire) {
            return false;
        }
        self.cancels.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
        true
    }

    /// Marks the session as holding until the guard is dropped.
    pub fn hold(&self) -> HoldGuard<'_> {
        let start = self.cancels.load(Ordering::Acquire);
        self.holding.store(true, Ordering::Release);
        HoldGuard {
            signal: self,
            start,
        }
    }
}

pub struct HoldGuard<'a> {
    signal: &'a HoldSignal,
    start: u64,
}

impl HoldGuard<'_> {
    /// A cancel arrived since the hold began. Checked on every wake-up as
    /// well, so a cancel landing between two waits is not lost.
    pub fn cancelled(&self) -> bool {
        self.signal.cancels.load(Ordering::Acquire) != self.start
    }

    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.signal.notify.notified()
    }
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        self.signal.holding.store(false, Ordering::Release);
    }
}

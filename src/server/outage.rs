//! Warnings for failures that repeat on every request during an outage
//! (Redis down: every send skips its rate limit and claim). Logging each one
//! would flood the log at thousands per second; [`Outage::warn`] logs the
//! first and then at most one per [`EVERY`], with how many it left out.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

const EVERY_MS: i64 = 5_000;
/// At most one warning per this interval per [`Outage`].
pub const EVERY: std::time::Duration = std::time::Duration::from_millis(EVERY_MS as u64);

pub struct Outage {
    what: &'static str,
    last_ms: AtomicI64,
    suppressed: AtomicU64,
}

impl Outage {
    pub const fn new(what: &'static str) -> Self {
        Self { what, last_ms: AtomicI64::new(i64::MIN), suppressed: AtomicU64::new(0) }
    }

    pub fn warn(&self, error: &dyn std::fmt::Display) {
        let now = super::clock::now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < EVERY_MS
            || self.last_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(suppressed, "{}: {error}", self.what);
    }
}

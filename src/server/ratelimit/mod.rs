//! Rate-limit ports. [`RateLimiter`]: fixed windows per key (e.g.
//! `auth:<ip>`), counting hits or amounts (bytes). [`LoginThrottle`]: log-in
//! attempts per account with a growing, capped lock. Drivers, one file
//! each: [`local`] (in memory) and, scaled, [`redis`] so all instances
//! share counts and locks.

pub mod local;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    #[error("rate limit store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one hit on `key`. `Ok(None)` when allowed; `Ok(Some(secs))`
    /// when over `limit` in the current `window`, with seconds to wait.
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<Option<u64>, RateLimitError>;

    /// Adds `amount` (e.g. bytes uploaded) to `key`'s total in the current
    /// `window`; `Ok(Some(secs))` when the total is now over `limit`. Exact
    /// (no local batching): amounts are few and large.
    async fn add(&self, key: &str, amount: u64, limit: u64, window: Duration) -> Result<Option<u64>, RateLimitError>;
}

/// Counts one hit on `key`; `Err(seconds to wait)` when over the limit.
/// Fails open when the limiter's store is down, so people can still log in
/// and chat through a Redis outage; the outage is logged.
pub async fn check(limiter: &dyn RateLimiter, key: &str, limit: u32, window: Duration) -> Result<(), u64> {
    fail_open(limiter.hit(key, limit, window).await)
}

/// [`check`] for an amount: `Err(seconds to wait)` once `key`'s total in
/// `window` is over `limit`. Fails open like [`check`].
pub async fn check_amount(
    limiter: &dyn RateLimiter,
    key: &str,
    amount: u64,
    limit: u64,
    window: Duration,
) -> Result<(), u64> {
    fail_open(limiter.add(key, amount, limit, window).await)
}

fn fail_open(verdict: Result<Option<u64>, RateLimitError>) -> Result<(), u64> {
    match verdict {
        Ok(None) => Ok(()),
        Ok(Some(retry_after)) => Err(retry_after),
        Err(e) => {
            static OUTAGE: crate::server::outage::Outage =
                crate::server::outage::Outage::new("rate limiter unavailable, allowing requests");
            OUTAGE.warn(&e);
            Ok(())
        }
    }
}

/// Failed log-ins of one account are counted in windows this long.
pub const LOGIN_FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The first lock; each further one doubles…
pub const LOGIN_LOCK_BASE: Duration = Duration::from_secs(60);
/// …up to this, so a guesser cannot lock a user out for longer than this
/// at a time, however long they keep going.
pub const LOGIN_LOCK_MAX: Duration = Duration::from_secs(15 * 60);
/// Locks are remembered this long (since the last one) to grow the next.
pub const LOGIN_STRIKE_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// How log-ins to one account are throttled: `max_failures` attempts that
/// did not succeed within `window`, then a lock of [`LoginPolicy::lock_for`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginPolicy {
    pub max_failures: u32,
    pub window: Duration,
    pub base_lock: Duration,
    pub max_lock: Duration,
    pub strike_memory: Duration,
}

impl LoginPolicy {
    pub fn new(max_failures: u32) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window: LOGIN_FAILURE_WINDOW,
            base_lock: LOGIN_LOCK_BASE,
            max_lock: LOGIN_LOCK_MAX,
            strike_memory: LOGIN_STRIKE_MEMORY,
        }
    }

    /// The lock after the `strike`-th run of failures (1-based): the base
    /// doubling each time, capped at `max_lock`.
    pub fn lock_for(&self, strike: u32) -> Duration {
        let doublings = strike.saturating_sub(1).min(32);
        self.base_lock.saturating_mul(1u32 << doublings.min(31)).min(self.max_lock)
    }
}

/// Log-in attempts per account, shared by every instance in the scaled mode.
///
/// An attempt is counted *before* the password is checked (and forgotten
/// when it turns out right), so a burst of parallel guesses cannot slip
/// past the count while the first ones are still being hashed.
#[async_trait]
pub trait LoginThrottle: Send + Sync {
    /// Counts an attempt on `account`: `Ok(None)` to go ahead, or
    /// `Ok(Some(secs))` while the account is locked (this attempt may be
    /// the one that locked it).
    async fn attempt(&self, account: &str, policy: &LoginPolicy) -> Result<Option<u64>, RateLimitError>;
    /// The password was right: forget the account's attempts and locks.
    async fn succeeded(&self, account: &str) -> Result<(), RateLimitError>;
}

/// Counts a log-in attempt on `account`; `Err(seconds to wait)` while it
/// is locked. Fails open (logged) like [`check`]: the per-IP limit and the
/// password hashing's cost still apply.
pub async fn login_attempt(throttle: &dyn LoginThrottle, account: &str, policy: &LoginPolicy) -> Result<(), u64> {
    fail_open(throttle.attempt(account, policy).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_doubles_from_the_base_up_to_the_cap() {
        let p = LoginPolicy::new(5);
        let mins = |s: u32| p.lock_for(s).as_secs() / 60;
        assert_eq!([mins(1), mins(2), mins(3), mins(4), mins(5), mins(6)], [1, 2, 4, 8, 15, 15]);
        assert_eq!(p.lock_for(0), LOGIN_LOCK_BASE);
        assert_eq!(p.lock_for(u32::MAX), LOGIN_LOCK_MAX, "no overflow, still capped");
        assert_eq!(LoginPolicy::new(0).max_failures, 1);
    }
}

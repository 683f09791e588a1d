//! In-memory drivers: a fixed-window limiter and the log-in throttle.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;

use super::{LoginPolicy, LoginThrottle, RateLimitError, RateLimiter};

/// Keys kept before entries that no longer matter are forgotten.
const MAX_KEYS: usize = 10_000;
/// Accounts the log-in throttle tracks at most. Beyond this (a flood of
/// attempts on distinct emails from many addresses) the unlocked ones are
/// forgotten: their counts restart, locks stay, memory stays bounded.
const MAX_ACCOUNTS: usize = 100_000;

#[derive(Default)]
pub struct LocalRateLimiter {
    windows: Mutex<HashMap<String, (Instant, u64)>>,
}

impl LocalRateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    fn count(&self, key: &str, amount: u64, limit: u64, window: Duration) -> Option<u64> {
        let now = Instant::now();
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        // Keep the map bounded: forget windows that have ended.
        if map.len() > MAX_KEYS {
            map.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = map.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(amount);
        if entry.1 > limit {
            let left = window.saturating_sub(now.duration_since(entry.0));
            Some(left.as_secs().max(1))
        } else {
            None
        }
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<Option<u64>, RateLimitError> {
        Ok(self.count(key, 1, limit.into(), window))
    }

    async fn add(&self, key: &str, amount: u64, limit: u64, window: Duration) -> Result<Option<u64>, RateLimitError> {
        Ok(self.count(key, amount, limit, window))
    }
}

/// One account's log-in history.
struct Account {
    window_started: Instant,
    attempts: u32,
    strikes: u32,
    last_strike: Option<Instant>,
    locked_until: Option<Instant>,
}

#[derive(Default)]
pub struct LocalLoginThrottle {
    accounts: Mutex<HashMap<String, Account>>,
}

impl LocalLoginThrottle {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Whole seconds to wait for `until`, at least 1 (a `Retry-After`).
fn secs_until(until: Instant, now: Instant) -> u64 {
    let left = until.saturating_duration_since(now);
    (left.as_millis().div_ceil(1000) as u64).max(1)
}

#[async_trait]
impl LoginThrottle for LocalLoginThrottle {
    async fn attempt(&self, account: &str, policy: &LoginPolicy) -> Result<Option<u64>, RateLimitError> {
        let now = Instant::now();
        let mut map = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > MAX_KEYS {
            map.retain(|_, a| {
                a.locked_until.is_some_and(|u| u > now)
                    || now.duration_since(a.window_started) < policy.window
                    || a.last_strike.is_some_and(|s| now.duration_since(s) < policy.strike_memory)
            });
        }
        if map.len() > MAX_ACCOUNTS {
            map.retain(|_, a| a.locked_until.is_some_and(|u| u > now));
        }
        let a = map.entry(account.to_string()).or_insert(Account {
            window_started: now,
            attempts: 0,
            strikes: 0,
            last_strike: None,
            locked_until: None,
        });
        if let Some(until) = a.locked_until.filter(|u| *u > now) {
            return Ok(Some(secs_until(until, now)));
        }
        if a.last_strike.is_some_and(|s| now.duration_since(s) >= policy.strike_memory) {
            a.strikes = 0;
        }
        if now.duration_since(a.window_started) >= policy.window {
            a.window_started = now;
            a.attempts = 0;
        }
        a.attempts += 1;
        if a.attempts <= policy.max_failures {
            return Ok(None);
        }
        a.strikes = a.strikes.saturating_add(1);
        a.last_strike = Some(now);
        a.attempts = 0;
        a.window_started = now;
        let until = now + policy.lock_for(a.strikes);
        a.locked_until = Some(until);
        Ok(Some(secs_until(until, now)))
    }

    async fn succeeded(&self, account: &str) -> Result<(), RateLimitError> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner()).remove(account);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_then_resets() {
        let l = LocalRateLimiter::new();
        let w = Duration::from_millis(200);
        assert_eq!(l.hit("k", 2, w).await.unwrap(), None);
        assert_eq!(l.hit("k", 2, w).await.unwrap(), None);
        assert!(l.hit("k", 2, w).await.unwrap().is_some());
        assert_eq!(l.hit("other", 2, w).await.unwrap(), None);
        tokio::time::sleep(w).await;
        assert_eq!(l.hit("k", 2, w).await.unwrap(), None);
    }

    #[tokio::test]
    async fn amounts_add_up_to_the_limit() {
        let l = LocalRateLimiter::new();
        let w = Duration::from_secs(60);
        assert_eq!(l.add("bytes", 600, 1000, w).await.unwrap(), None);
        assert_eq!(l.add("bytes", 400, 1000, w).await.unwrap(), None, "exactly the limit is allowed");
        assert!(l.add("bytes", 1, 1000, w).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn login_locks_grow_are_capped_and_reset_on_success() {
        let t = LocalLoginThrottle::new();
        let p = LoginPolicy {
            max_failures: 3,
            window: Duration::from_secs(60),
            base_lock: Duration::from_millis(100),
            max_lock: Duration::from_millis(250),
            strike_memory: Duration::from_secs(60),
        };
        for _ in 0..3 {
            assert_eq!(t.attempt("a", &p).await.unwrap(), None);
        }
        assert_eq!(t.attempt("a", &p).await.unwrap(), Some(1), "the fourth attempt locks");
        assert_eq!(t.attempt("a", &p).await.unwrap(), Some(1), "still locked");
        assert_eq!(t.attempt("b", &p).await.unwrap(), None, "other accounts are not affected");
        // Strike 2 locks for 200 ms, strike 3 would be 400 but is capped at 250.
        for (strike, lock_ms) in [(2u32, 200u64), (3, 250)] {
            tokio::time::sleep(Duration::from_millis(lock_ms.max(100) + 20)).await;
            for _ in 0..3 {
                assert_eq!(t.attempt("a", &p).await.unwrap(), None, "strike {strike}: free again");
            }
            assert!(t.attempt("a", &p).await.unwrap().is_some());
            assert_eq!(p.lock_for(strike), Duration::from_millis(lock_ms));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        t.attempt("a", &p).await.unwrap();
        t.succeeded("a").await.unwrap();
        for _ in 0..3 {
            assert_eq!(t.attempt("a", &p).await.unwrap(), None, "a success forgets the failures");
        }
    }
}

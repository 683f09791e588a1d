//! Redis drivers, shared by every instance: fixed-window rate limits
//! ([`RedisRateLimiter`]: INCRBY the window's counter, give it an expiry on
//! first use, read the TTL when over) and the log-in throttle
//! ([`RedisLoginThrottle`]).
//! Fails fast while Redis is unreachable (and after a short timeout
//! otherwise), so the caller's fail-open check does not stall sends.
//!
//! **Hits are counted locally and flushed in chunks.** A generous limit
//! (600 sends a minute) does not need a Redis round trip per hit: each
//! instance counts a key's hits in memory and adds them to Redis once it
//! holds `limit / 20` of them (or the key looks close to the limit), so
//! the send path touches Redis for one send in 30 at the default limit.
//! The price is bounded slack: across N instances a key can exceed its
//! limit by at most N × chunk − 1 hits per window. Small limits (under
//! 20, e.g. the tests') flush every hit and are exact.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use dashmap::DashMap;
use fred::prelude::*;

use super::{LoginPolicy, LoginThrottle, RateLimitError, RateLimiter};
use crate::server::redis_conn::hot_path_options;

/// Hits of one key this instance has counted but not yet added to Redis.
struct LocalCount {
    window_started: Instant,
    unflushed: u32,
    /// The key's total in Redis after this instance's last flush.
    last_total: i64,
}

pub struct RedisRateLimiter {
    redis: Client,
    prefix: String,
    local: DashMap<String, LocalCount>,
}

/// Local counts kept before windows that have ended are forgotten.
const LOCAL_KEYS: usize = 10_000;

impl RedisRateLimiter {
    pub fn new(redis: Client, prefix: &str) -> Self {
        Self { redis, prefix: format!("{prefix}:rl:"), local: DashMap::new() }
    }

    /// Counts one hit locally; `Some(n)` when `n` hits must be flushed now.
    fn count_locally(&self, key: &str, limit: u32, window: Duration) -> Option<u32> {
        let now = Instant::now();
        if self.local.len() > LOCAL_KEYS {
            self.local.retain(|_, c| now.duration_since(c.window_started) < window);
        }
        let chunk = (limit / 20).max(1);
        let mut c = self.local.entry(key.to_string()).or_insert(LocalCount {
            window_started: now,
            unflushed: 0,
            last_total: 0,
        });
        if now.duration_since(c.window_started) >= window {
            *c = LocalCount { window_started: now, unflushed: 0, last_total: 0 };
        }
        c.unflushed += 1;
        let near_limit = c.last_total + i64::from(c.unflushed) + i64::from(chunk) > i64::from(limit);
        if c.unflushed >= chunk || near_limit { Some(std::mem::take(&mut c.unflushed)) } else { None }
    }

    fn remember_total(&self, key: &str, total: i64) {
        if let Some(mut c) = self.local.get_mut(key) {
            c.last_total = total;
        }
    }
}

fn unavailable(e: fred::error::Error) -> RateLimitError {
    RateLimitError::Unavailable(e.to_string())
}

impl RedisRateLimiter {
    /// Adds `amount` to `key`'s window in Redis; `Some(secs)` when the
    /// total is over `limit`.
    async fn add_in_redis(
        &self,
        key: &str,
        amount: i64,
        limit: i64,
        window: Duration,
    ) -> Result<Option<u64>, RateLimitError> {
        if !self.redis.is_connected() {
            return Err(RateLimitError::Unavailable("redis is not connected".into()));
        }
        let redis_key = format!("{}{key}", self.prefix);
        let redis = self.redis.with_options(&hot_path_options());
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let total: i64 = redis.incr_by(&redis_key, amount).await.map_err(unavailable)?;
        self.remember_total(key, total);
        if total == amount {
            let _: () = redis.pexpire(&redis_key, window_ms, None).await.map_err(unavailable)?;
        }
        if total <= limit {
            return Ok(None);
        }
        let ttl_ms: i64 = redis.pttl(&redis_key).await.map_err(unavailable)?;
        if ttl_ms < 0 {
            // The expiry was lost (a crash between INCRBY and PEXPIRE): set it.
            let _: () = redis.pexpire(&redis_key, window_ms, None).await.map_err(unavailable)?;
            return Ok(Some(window.as_secs().max(1)));
        }
        Ok(Some(((ttl_ms as u64) / 1000).max(1)))
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<Option<u64>, RateLimitError> {
        let Some(hits) = self.count_locally(key, limit, window) else {
            return Ok(None);
        };
        self.add_in_redis(key, i64::from(hits), i64::from(limit), window).await
    }

    async fn add(&self, key: &str, amount: u64, limit: u64, window: Duration) -> Result<Option<u64>, RateLimitError> {
        let amount = i64::try_from(amount).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.add_in_redis(&format!("sum:{key}"), amount, limit, window).await
    }
}

/// Log-in attempts per account in Redis: `<prefix>:login:n:<account>`
/// counts attempts in the window, `…:s:…` counts locks (strikes, kept for
/// the strike memory), `…:lock:…` exists while the account is locked (its
/// TTL is the `Retry-After`). Plain keys, no scripts: two instances racing
/// past the limit at once at worst count one strike twice.
pub struct RedisLoginThrottle {
    redis: Client,
    prefix: String,
}

impl RedisLoginThrottle {
    pub fn new(redis: Client, prefix: &str) -> Self {
        Self { redis, prefix: format!("{prefix}:login:") }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

#[async_trait]
impl LoginThrottle for RedisLoginThrottle {
    async fn attempt(&self, account: &str, policy: &LoginPolicy) -> Result<Option<u64>, RateLimitError> {
        if !self.redis.is_connected() {
            return Err(RateLimitError::Unavailable("redis is not connected".into()));
        }
        let redis = self.redis.with_options(&hot_path_options());
        let (attempts_key, strikes_key, lock_key) = (
            format!("{}n:{account}", self.prefix),
            format!("{}s:{account}", self.prefix),
            format!("{}lock:{account}", self.prefix),
        );
        let lock_ms: i64 = redis.pttl(&lock_key).await.map_err(unavailable)?;
        if lock_ms > 0 {
            return Ok(Some((lock_ms as u64).div_ceil(1000).max(1)));
        }
        let attempts: i64 = redis.incr(&attempts_key).await.map_err(unavailable)?;
        if attempts == 1 {
            let _: () = redis.pexpire(&attempts_key, millis(policy.window), None).await.map_err(unavailable)?;
        }
        if attempts <= i64::from(policy.max_failures) {
            return Ok(None);
        }
        let strikes: i64 = redis.incr(&strikes_key).await.map_err(unavailable)?;
        let _: () = redis.pexpire(&strikes_key, millis(policy.strike_memory), None).await.map_err(unavailable)?;
        let lock = policy.lock_for(u32::try_from(strikes).unwrap_or(u32::MAX));
        let _: () = redis
            .set(&lock_key, strikes, Some(fred::types::Expiration::PX(millis(lock))), None, false)
            .await
            .map_err(unavailable)?;
        let _: i64 = redis.del(&attempts_key).await.map_err(unavailable)?;
        Ok(Some(lock.as_secs().max(1)))
    }

    async fn succeeded(&self, account: &str) -> Result<(), RateLimitError> {
        if !self.redis.is_connected() {
            return Err(RateLimitError::Unavailable("redis is not connected".into()));
        }
        let keys = vec![format!("{}n:{account}", self.prefix), format!("{}s:{account}", self.prefix)];
        let _: i64 = self.redis.with_options(&hot_path_options()).del(keys).await.map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_flushed_in_chunks_and_every_hit_near_the_limit() {
        // Never connected: count_locally does not talk to Redis.
        let limiter = RedisRateLimiter::new(Client::default(), "t");
        let w = Duration::from_secs(60);
        // limit 600 → chunks of 30.
        let flushes: Vec<Option<u32>> = (0..60).map(|_| limiter.count_locally("k", 600, w)).collect();
        assert_eq!(flushes.iter().flatten().collect::<Vec<_>>(), vec![&30, &30]);
        assert_eq!(flushes[29], Some(30));
        // Close to the limit (as Redis last said), every hit is checked.
        limiter.remember_total("k", 580);
        assert_eq!(limiter.count_locally("k", 600, w), Some(1));
        // Small limits are exact: every hit goes to Redis.
        assert_eq!(limiter.count_locally("small", 3, w), Some(1));
        assert_eq!(limiter.count_locally("small", 3, w), Some(1));
    }

    #[tokio::test]
    async fn login_throttle_fails_open_while_redis_is_down() {
        // Never connected: every call says unavailable at once, and the
        // log-in goes on (the per-IP limit and hashing cost still apply).
        let throttle = RedisLoginThrottle::new(Client::default(), "t");
        let policy = LoginPolicy::new(5);
        assert!(matches!(throttle.attempt("a@b.c", &policy).await, Err(RateLimitError::Unavailable(_))));
        assert_eq!(super::super::login_attempt(&throttle, "a@b.c", &policy).await, Ok(()));
        assert!(throttle.succeeded("a@b.c").await.is_err());
        let limiter = RedisRateLimiter::new(Client::default(), "t");
        assert!(limiter.add("k", 10, 5, Duration::from_secs(60)).await.is_err());
    }
}

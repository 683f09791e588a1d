//! Fixed-window rate limits in Redis, shared by every instance: INCR the
//! window's counter, give it an expiry on first use, read the TTL when over.
//! Fails fast while Redis is unreachable (and after a short timeout
//! otherwise), so the caller's fail-open check does not stall sends.

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;

use super::{RateLimitError, RateLimiter};
use crate::server::redis_conn::hot_path_options;

pub struct RedisRateLimiter {
    redis: Client,
    prefix: String,
}

impl RedisRateLimiter {
    pub fn new(redis: Client, prefix: &str) -> Self {
        Self { redis, prefix: format!("{prefix}:rl:") }
    }
}

fn unavailable(e: fred::error::Error) -> RateLimitError {
    RateLimitError::Unavailable(e.to_string())
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<Option<u64>, RateLimitError> {
        if !self.redis.is_connected() {
            return Err(RateLimitError::Unavailable("redis is not connected".into()));
        }
        let key = format!("{}{key}", self.prefix);
        let redis = self.redis.with_options(&hot_path_options());
        let count: i64 = redis.incr(&key).await.map_err(unavailable)?;
        if count == 1 {
            let _: () = redis.pexpire(&key, window.as_millis() as i64, None).await.map_err(unavailable)?;
        }
        if count <= limit as i64 {
            return Ok(None);
        }
        let ttl_ms: i64 = redis.pttl(&key).await.map_err(unavailable)?;
        if ttl_ms < 0 {
            // The expiry was lost (a crash between INCR and PEXPIRE): set it.
            let _: () = redis.pexpire(&key, window.as_millis() as i64, None).await.map_err(unavailable)?;
            return Ok(Some(window.as_secs().max(1)));
        }
        Ok(Some(((ttl_ms as u64) / 1000).max(1)))
    }
}

//! Fixed-window rate limits in Redis, shared by every instance: INCR the
//! window's counter, give it an expiry on first use, read the TTL when over.

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;

use super::{RateLimitError, RateLimiter};

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
        let key = format!("{}{key}", self.prefix);
        let count: i64 = self.redis.incr(&key).await.map_err(unavailable)?;
        if count == 1 {
            let _: () = self.redis.pexpire(&key, window.as_millis() as i64, None).await.map_err(unavailable)?;
        }
        if count <= limit as i64 {
            return Ok(None);
        }
        let ttl_ms: i64 = self.redis.pttl(&key).await.map_err(unavailable)?;
        if ttl_ms < 0 {
            // The expiry was lost (a crash between INCR and PEXPIRE): set it.
            let _: () = self.redis.pexpire(&key, window.as_millis() as i64, None).await.map_err(unavailable)?;
            return Ok(Some(window.as_secs().max(1)));
        }
        Ok(Some(((ttl_ms as u64) / 1000).max(1)))
    }
}

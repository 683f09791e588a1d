//! Rate-limit port: fixed windows per key (e.g. `auth:<ip>`). Drivers:
//! [`local`] (in memory) and, scaled, Redis so all instances share counts.

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
}

/// Counts one hit on `key`; `Err(seconds to wait)` when over the limit.
/// Fails open when the limiter's store is down, so people can still log in
/// and chat through a Redis outage; the outage is logged.
pub async fn check(limiter: &dyn RateLimiter, key: &str, limit: u32, window: Duration) -> Result<(), u64> {
    match limiter.hit(key, limit, window).await {
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

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

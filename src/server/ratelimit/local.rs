//! In-memory fixed-window limiter.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;

use super::{RateLimitError, RateLimiter};

#[derive(Default)]
pub struct LocalRateLimiter {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LocalRateLimiter {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<Option<u64>, RateLimitError> {
        let now = Instant::now();
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        // Keep the map bounded: forget windows that have ended.
        if map.len() > 10_000 {
            map.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = map.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 > limit {
            let left = window.saturating_sub(now.duration_since(entry.0));
            Ok(Some(left.as_secs().max(1)))
        } else {
            Ok(None)
        }
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
}

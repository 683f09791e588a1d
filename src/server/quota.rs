//! Per-user quotas on what costs the server storage or other users'
//! bandwidth: uploads (count and bytes per hour, avatars included),
//! profile edits (each one is broadcast to everyone watching the user) and
//! `watch` changes (each one is a presence lookup and, scaled, a Redis
//! event on every instance). They live on the [`RateLimiter`] port, so in
//! the scaled mode every instance shares them, and fail open with it.

use std::{sync::Arc, time::Duration};

use super::{
    config::Limits,
    ratelimit::{self, RateLimiter},
};
use crate::api::AppError;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

pub struct Quotas {
    limiter: Arc<dyn RateLimiter>,
    uploads_per_hour: u32,
    upload_bytes_per_hour: u64,
    profile_updates_per_hour: u32,
    watch_rate_per_minute: u32,
}

/// A 429 saying which quota ran out and when to come back.
fn exceeded(message: String, retry_after: u64) -> AppError {
    AppError { retry_after: Some(retry_after.max(1)), ..AppError::new(429, message) }
}

/// "in 12 minutes" / "in 40 seconds", for messages.
fn when(secs: u64) -> String {
    if secs >= 120 { format!("in {} minutes", secs.div_ceil(60)) } else { format!("in {secs} seconds") }
}

impl Quotas {
    pub fn new(limiter: Arc<dyn RateLimiter>, limits: &Limits) -> Self {
        Self {
            limiter,
            uploads_per_hour: limits.uploads_per_hour,
            upload_bytes_per_hour: limits.upload_bytes_per_hour,
            profile_updates_per_hour: limits.profile_updates_per_hour,
            watch_rate_per_minute: limits.watch_rate_per_minute,
        }
    }

    /// Counts one upload of `bytes` by `user_id` (a message image or an
    /// avatar); 429 once the hour's count or bytes are used up.
    pub async fn upload(&self, user_id: &str, bytes: usize) -> Result<(), AppError> {
        let (count, total) = (self.uploads_per_hour, self.upload_bytes_per_hour);
        let limiter = self.limiter.as_ref();
        let over = |secs| {
            exceeded(
                format!(
                    "Upload limit reached ({count} images or {} MiB per hour); try again {}",
                    total / (1024 * 1024),
                    when(secs)
                ),
                secs,
            )
        };
        ratelimit::check(limiter, &format!("upload:{user_id}"), count, HOUR).await.map_err(over)?;
        ratelimit::check_amount(limiter, &format!("upload-bytes:{user_id}"), bytes as u64, total, HOUR)
            .await
            .map_err(over)
    }

    /// Counts one profile edit by `user_id`.
    pub async fn profile_update(&self, user_id: &str) -> Result<(), AppError> {
        let limit = self.profile_updates_per_hour;
        ratelimit::check(self.limiter.as_ref(), &format!("profile:{user_id}"), limit, HOUR).await.map_err(|secs| {
            exceeded(format!("Too many profile changes ({limit} per hour); try again {}", when(secs)), secs)
        })
    }

    /// Counts one `watch` frame of `user_id` (all sessions together);
    /// `Err(seconds)` when over the per-minute rate.
    pub async fn watch(&self, user_id: &str) -> Result<(), u64> {
        ratelimit::check(self.limiter.as_ref(), &format!("watch:{user_id}"), self.watch_rate_per_minute, MINUTE).await
    }

    pub fn watch_rate_per_minute(&self) -> u32 {
        self.watch_rate_per_minute
    }
}

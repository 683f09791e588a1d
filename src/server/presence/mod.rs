//! Presence port: a user is online while they have at least one session on
//! any instance. Drivers: [`local`] (counts in memory) and, scaled, Redis
//! with per-instance heartbeats so a dead instance's users expire.

pub mod local;
pub mod redis;

use std::collections::HashSet;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("presence unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Presence: Send + Sync {
    /// A session of `user_id` opened; true when the user just came online.
    async fn session_opened(&self, user_id: &str) -> Result<bool, PresenceError>;
    /// A session of `user_id` closed; true when the user just went offline.
    async fn session_closed(&self, user_id: &str) -> Result<bool, PresenceError>;
    /// Which of `user_ids` are online. There is deliberately no "everyone
    /// online": a client asks about the users it shows.
    async fn online_among(&self, user_ids: &[String]) -> Result<HashSet<String>, PresenceError>;
    /// Whether one user is online (without listing everyone).
    async fn is_online(&self, user_id: &str) -> Result<bool, PresenceError>;
}

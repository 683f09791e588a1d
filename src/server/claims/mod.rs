//! Send-claims port: what makes a send idempotent when the log itself
//! cannot check (Kafka). A claim maps `(sender, client_msg_id)` to the
//! first attempt's message for a while, so a retry gets the same message
//! (same id, same ack) instead of a second one.
//!
//! Claims are an optimisation of the user's view, not the last line of
//! defence: history has a unique `(sender_id, client_msg_id)`, so even a
//! lost claim (Redis restarted, or unreachable and skipped) never stores a
//! message twice. That is why a claims outage fails open.
//! Drivers: [`redis`] (shared by all instances) and [`local`] (in memory,
//! for a Kafka log without Redis).

pub mod local;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;

/// How long a claim is remembered.
pub const CLAIM_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("send claims unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait SendClaims: Send + Sync {
    /// Claims `(sender_id, client_msg_id)` for `payload`. `Ok(None)`: the
    /// claim is new; `Ok(Some(first))`: it was claimed before, for `first`.
    async fn claim(&self, sender_id: &str, client_msg_id: &str, payload: &str) -> Result<Option<String>, ClaimError>;
}

//! Live fan-out port: an event published for a user reaches that user's
//! sessions on every instance. Drivers, one file each: [`local`]
//! (in-process) and, for the scaled mode, Redis pub/sub.

pub mod local;
pub mod redis;

use async_trait::async_trait;
use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

/// Who an event is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Every session of one user.
    User(String),
    /// Every connected session (presence, contact changes).
    Everyone,
}

#[async_trait]
pub trait Bus: Send + Sync {
    /// Publishes an already-serialised server event (JSON text).
    async fn publish(&self, audience: Audience, frame: Bytes) -> Result<(), BusError>;
    /// Called when this instance gets its first session of `user_id`.
    async fn subscribe(&self, user_id: &str) -> Result<(), BusError>;
    /// Called when this instance loses its last session of `user_id`.
    async fn unsubscribe(&self, user_id: &str) -> Result<(), BusError>;
}

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

/// One WebSocket session anywhere: the instance holding it ([`crate::server::hub::Hub::instance_id`])
/// and its id there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionRef {
    pub instance: u64,
    pub session: u64,
}

/// Who an event is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Every session of one user.
    User(String),
    /// Every session of each member of a conversation (two for a direct
    /// chat, more for a group: one path for both), except `except`: the
    /// session the event came from, which gets its own answer (an ack).
    Members { users: Vec<String>, except: Option<SessionRef> },
    /// Every session that shows this user (watches it, see
    /// [`crate::protocol::ClientEvent::Watch`]): presence and profile
    /// changes. Reaches O(who displays the user), not everyone online.
    Watchers(String),
}

#[async_trait]
pub trait Bus: Send + Sync {
    /// Publishes an already-serialised server event (JSON text). Live
    /// delivery is best effort (history has every message), so drivers
    /// must not make the caller wait on a slow or unreachable bus: the
    /// Redis driver queues the event and returns at once. Events published
    /// one after another by one caller arrive in that order.
    async fn publish(&self, audience: Audience, frame: Bytes) -> Result<(), BusError>;
    /// Called when this instance gets its first session of `user_id`.
    async fn subscribe(&self, user_id: &str) -> Result<(), BusError>;
    /// Called when this instance loses its last session of `user_id`.
    async fn unsubscribe(&self, user_id: &str) -> Result<(), BusError>;
}

//! Persistence port. One trait per storage concern (users, tokens, media,
//! conversations, messages, log checkpoints); [`Store`] is all of them.
//! Drivers, one file each: [`embedded`] (SQLite under the data dir) and,
//! for the scaled mode, MongoDB.

pub mod embedded;
pub mod mongo;

use async_trait::async_trait;

use crate::api::dto::{ChatMessage, Contact, User};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key (e.g. an email) is already taken.
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    /// The database could not be reached or failed; retrying may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// A user row, password hash included; never leaves the server as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    /// Normalised: trimmed, lowercase.
    pub email: String,
    pub password_hash: String,
    pub full_name: String,
    pub bio: String,
    pub avatar_media_id: Option<String>,
    pub created_at_ms: i64,
}

impl UserRecord {
    pub fn avatar_url(&self) -> String {
        self.avatar_media_id.as_deref().map(media_url).unwrap_or_default()
    }

    pub fn to_user(&self) -> User {
        User {
            id: self.id.clone(),
            email: self.email.clone(),
            full_name: self.full_name.clone(),
            profile_picture: self.avatar_url(),
            bio: self.bio.clone(),
            created_at: crate::server::clock::rfc3339(self.created_at_ms),
        }
    }

    pub fn to_contact(&self, online: bool) -> Contact {
        Contact {
            id: self.id.clone(),
            full_name: self.full_name.clone(),
            profile_picture: self.avatar_url(),
            bio: self.bio.clone(),
            online,
        }
    }
}

/// The stable URL media is served from.
pub fn media_url(id: &str) -> String {
    format!("/api/media/{id}")
}

/// A change to a profile; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct ProfileChange {
    pub full_name: Option<String>,
    pub bio: Option<String>,
    pub avatar_media_id: Option<String>,
}

/// An uploaded image. `conversation_id` is `None` for avatars (public) and
/// the conversation for message images (visible to its members only).
#[derive(Clone, Debug)]
pub struct MediaRecord {
    pub id: String,
    pub owner_id: String,
    pub conversation_id: Option<String>,
    pub content_type: String,
    pub data: bytes::Bytes,
    pub created_at_ms: i64,
}

/// What permission checks and cache revalidation need to know about media:
/// everything but the bytes, which can be megabytes.
#[derive(Clone, Debug)]
pub struct MediaInfo {
    pub owner_id: String,
    pub conversation_id: Option<String>,
    pub content_type: String,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Fails with [`StoreError::Duplicate`]`("email")` if the email is taken.
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Applies the change; returns the updated user and the avatar media id
    /// it replaced (for the caller to delete), or `None` for an unknown id.
    async fn update_profile(
        &self,
        id: &str,
        change: ProfileChange,
    ) -> Result<Option<(UserRecord, Option<String>)>, StoreError>;
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Revokes a token id until it would have expired anyway.
    async fn revoke_token(&self, jti: &str, expires_at_ms: i64) -> Result<(), StoreError>;
    async fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError>;
    /// Drops revocations of tokens that have expired; returns how many.
    async fn purge_expired_revocations(&self, now_ms: i64) -> Result<u64, StoreError>;
}

#[async_trait]
pub trait MediaStore: Send + Sync {
    async fn put_media(&self, media: &MediaRecord) -> Result<(), StoreError>;
    async fn get_media(&self, id: &str) -> Result<Option<MediaRecord>, StoreError>;
    /// Media without its data; drivers must not read the bytes for it.
    async fn media_info(&self, id: &str) -> Result<Option<MediaInfo>, StoreError>;
    async fn delete_media(&self, id: &str) -> Result<(), StoreError>;
}

#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Creates the conversation with these members if it does not exist.
    async fn ensure_conversation(&self, id: &str, members: &[String]) -> Result<(), StoreError>;
    /// Members of a conversation; empty when it does not exist.
    async fn conversation_members(&self, id: &str) -> Result<Vec<String>, StoreError>;
}

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Inserts messages not stored yet (by id, and by sender and
    /// `client_msg_id`); a replay is harmless.
    /// Returns how many were new.
    async fn save_messages(&self, messages: &[ChatMessage]) -> Result<u64, StoreError>;
    /// Up to `limit` messages of a conversation with id < `before` (all when
    /// `None`), newest first.
    async fn messages_before(
        &self,
        conversation_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError>;
}

/// Where the worker keeps its place in the log, and what it could not read.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// Next offset to consume for (`stream`, `partition`), if any was saved.
    async fn load_offset(&self, stream: &str, partition: i32) -> Result<Option<i64>, StoreError>;
    async fn save_offset(&self, stream: &str, partition: i32, next_offset: i64) -> Result<(), StoreError>;
    /// Keeps an undecodable record for inspection instead of stopping the worker.
    async fn dead_letter(
        &self,
        stream: &str,
        partition: i32,
        offset: i64,
        payload: &[u8],
        error: &str,
    ) -> Result<(), StoreError>;
}

/// Everything Charcha persists.
pub trait Store: UserStore + TokenStore + MediaStore + ConversationStore + MessageStore + CheckpointStore {}

impl<T> Store for T where T: UserStore + TokenStore + MediaStore + ConversationStore + MessageStore + CheckpointStore {}

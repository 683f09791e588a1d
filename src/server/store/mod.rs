//! Persistence port. One trait per storage concern (users, tokens, media,
//! conversations, groups, messages, log checkpoints); [`Store`] is all of them.
//! Drivers, one file each: [`embedded`] (SQLite under the data dir) and,
//! for the scaled mode, MongoDB.

pub mod embedded;
pub mod mongo;

use std::sync::Arc;

use async_trait::async_trait;

use crate::api::dto::{ChatMessage, Contact, GroupRole, ReactionCount, Reactions, User, is_group_id};

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
    /// The users with these ids that exist, in no particular order.
    async fn users_by_ids(&self, ids: &[String]) -> Result<Vec<UserRecord>, StoreError>;
    /// One page of the users whose name has a word starting with `query`,
    /// or whose email starts with it (see [`search_terms`]; an empty query
    /// matches everyone), except `exclude`, in [`UserCursor`] order after
    /// `after`.
    async fn search_users(
        &self,
        query: &str,
        exclude: &str,
        after: Option<&UserCursor>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError>;
}

/// Where a page of [`UserStore::search_users`] ends: users sort by their
/// [`name_key`], then id, so pages are alphabetical and stable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserCursor {
    pub name_key: String,
    pub id: String,
}

impl UserCursor {
    pub fn after(user: &UserRecord) -> Self {
        Self { name_key: name_key(&user.full_name), id: user.id.clone() }
    }

    /// An opaque, URL-safe token (hex of `name_key`, a tab, the id).
    pub fn encode(&self) -> String {
        format!("{}\t{}", self.name_key, self.id).bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// `None` for anything [`UserCursor::encode`] did not make.
    pub fn decode(token: &str) -> Option<Self> {
        if !token.len().is_multiple_of(2) || token.len() > 2048 {
            return None;
        }
        let bytes: Option<Vec<u8>> =
            (0..token.len()).step_by(2).map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok()).collect();
        let text = String::from_utf8(bytes?).ok()?;
        let (name_key, id) = text.split_once('\t')?;
        Some(Self { name_key: name_key.to_string(), id: id.to_string() })
    }
}

/// How a name sorts and is searched: trimmed, whitespace collapsed,
/// lowercase.
pub fn name_key(full_name: &str) -> String {
    full_name.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// The search query as stored terms are: trimmed, lowercase.
pub fn normalize_query(query: &str) -> String {
    query.trim().to_lowercase()
}

/// What a user is found by: each word of the name, the whole name (so
/// "asha r" finds "Asha Rao") and the email, lowercase. A query matches
/// when it is a prefix of one of them.
pub fn search_terms(user: &UserRecord) -> Vec<String> {
    let key = name_key(&user.full_name);
    let mut terms: Vec<String> = key.split(' ').filter(|w| !w.is_empty()).map(str::to_string).collect();
    terms.push(key);
    terms.push(user.email.to_lowercase());
    terms.sort();
    terms.dedup();
    terms
}

/// One entry of a user's conversation list: the conversation, the other
/// member, and its newest message (text cut to [`PREVIEW_CHARS`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxEntry {
    pub conversation_id: String,
    pub peer_id: String,
    pub last: ChatMessage,
}

/// Characters of a message kept as its conversation's preview.
pub const PREVIEW_CHARS: usize = 160;

/// For each conversation of `messages`, its newest message (by id), as
/// the inbox entries of its members; texts cut to the preview length. A
/// direct chat's members are its sender and recipient (the entry's peer is
/// the other one); a group's are its current members in `group_members`
/// (read by the driver when it stores the batch; the entry's peer is the
/// group id), so a member removed before the message was stored does not
/// get it in their list. Drivers apply these with "only if newer than what
/// is stored", so a replayed or out-of-order batch never moves a preview back.
pub fn inbox_updates(
    messages: &[ChatMessage],
    group_members: &std::collections::HashMap<String, Vec<String>>,
) -> Vec<(String, InboxEntry)> {
    let mut newest: std::collections::HashMap<&str, &ChatMessage> = std::collections::HashMap::new();
    for m in messages {
        let e = newest.entry(m.conversation_id.as_str()).or_insert(m);
        if m.id > e.id || m.supersedes(e) {
            *e = m;
        }
    }
    let mut out = Vec::with_capacity(newest.len() * 2);
    for m in newest.into_values() {
        let mut last = m.clone();
        if let Some((cut, _)) = last.text.char_indices().nth(PREVIEW_CHARS) {
            last.text.truncate(cut);
        }
        if is_group_id(&m.conversation_id) {
            for user in group_members.get(&m.conversation_id).into_iter().flatten() {
                let entry = InboxEntry {
                    conversation_id: m.conversation_id.clone(),
                    peer_id: m.conversation_id.clone(),
                    last: last.clone(),
                };
                out.push((user.clone(), entry));
            }
            continue;
        }
        for (user, peer) in [(&m.sender_id, &m.recipient_id), (&m.recipient_id, &m.sender_id)] {
            let entry =
                InboxEntry { conversation_id: m.conversation_id.clone(), peer_id: peer.clone(), last: last.clone() };
            out.push((user.clone(), entry));
        }
    }
    out
}

/// The groups among the conversations of `messages` (for [`inbox_updates`]).
pub fn group_ids_of(messages: &[ChatMessage]) -> Vec<String> {
    let mut ids: Vec<String> =
        messages.iter().filter(|m| is_group_id(&m.conversation_id)).map(|m| m.conversation_id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// A group as stored. Its id (`grp:<ulid>`) is also its conversation id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    pub id: String,
    /// Trimmed, 1 to [`crate::api::dto::MAX_GROUP_NAME_CHARS`] characters.
    pub name: String,
    pub creator_id: String,
    pub created_at_ms: i64,
    /// Oldest member first (by `joined_at_ms`, then user id).
    pub members: Vec<GroupMemberRecord>,
}

impl GroupRecord {
    pub fn member(&self, user_id: &str) -> Option<&GroupMemberRecord> {
        self.members.iter().find(|m| m.user_id == user_id)
    }

    pub fn member_ids(&self) -> Vec<String> {
        self.members.iter().map(|m| m.user_id.clone()).collect()
    }
}

/// One membership of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMemberRecord {
    pub user_id: String,
    pub role: GroupRole,
    pub joined_at_ms: i64,
}

/// Orders members oldest first, as [`GroupRecord::members`] promises.
pub fn sort_members(members: &mut [GroupMemberRecord]) {
    members.sort_by(|a, b| (a.joined_at_ms, &a.user_id).cmp(&(b.joined_at_ms, &b.user_id)));
}

/// Group conversations: names, members and their roles. Written directly
/// (not through the log): membership is checked on every read and write of
/// the group, so it must be current the moment a change is acknowledged.
/// Authorization (who may change what) is the chat service's; drivers only
/// store.
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Stores a new group with its members.
    async fn create_group(&self, group: &GroupRecord) -> Result<(), StoreError>;
    /// The groups with these ids that exist, each with its members, in no
    /// particular order.
    async fn groups_by_ids(&self, ids: &[String]) -> Result<Vec<GroupRecord>, StoreError>;
    /// Renames a group; false when it does not exist.
    async fn rename_group(&self, id: &str, name: &str) -> Result<bool, StoreError>;
    /// Adds those of `members` who are not members yet (existing members
    /// keep their role); returns how many were added.
    async fn add_group_members(&self, id: &str, members: &[GroupMemberRecord]) -> Result<u64, StoreError>;
    /// Removes one member; false when they were not one.
    async fn remove_group_member(&self, id: &str, user_id: &str) -> Result<bool, StoreError>;
    /// Changes one member's role; false when they are not a member.
    async fn set_group_role(&self, id: &str, user_id: &str, role: GroupRole) -> Result<bool, StoreError>;
    /// The ids of the groups `user_id` is a member of now.
    async fn groups_of(&self, user_id: &str) -> Result<Vec<String>, StoreError>;
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
    /// One pass of the media clean-up: media created before
    /// `created_before_ms` and not yet examined is kept for good when a
    /// message (its `image`) or a user (its avatar) refers to it (messages
    /// are never deleted, and a replaced avatar is deleted by the profile
    /// update), and deleted otherwise. Examines at most about `limit`
    /// uploads per call.
    async fn sweep_unreferenced_media(&self, created_before_ms: i64, limit: usize) -> Result<MediaSweep, StoreError>;
}

/// What one [`MediaStore::sweep_unreferenced_media`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaSweep {
    /// Uploads looked at (kept for good or deleted).
    pub examined: u64,
    pub deleted: u64,
}

#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Creates the conversation with these members if it does not exist.
    async fn ensure_conversation(&self, id: &str, members: &[String]) -> Result<(), StoreError> {
        self.ensure_conversations(&[(id.to_string(), members.to_vec())]).await
    }
    /// Creates every conversation `(id, members)` that does not exist yet,
    /// in one round trip: the history worker meets hundreds of new
    /// conversations in one batch, and one insert each made it store a
    /// fifth as fast (BENCHMARKS.md, "Worker").
    async fn ensure_conversations(&self, conversations: &[(String, Vec<String>)]) -> Result<(), StoreError>;
    /// Members of a conversation; empty when it does not exist.
    async fn conversation_members(&self, id: &str) -> Result<Vec<String>, StoreError>;
    /// One page of `user_id`'s conversations, the most recently active
    /// first: those whose newest message id is below `before` (all when
    /// `None`). Kept by [`MessageStore::save_messages`].
    async fn inbox(&self, user_id: &str, before: Option<&str>, limit: usize) -> Result<Vec<InboxEntry>, StoreError>;
}

/// How the history worker fills a batch for a store whose cost is mostly
/// per batch, not per message ([`MessageStore::gather`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gather {
    /// How long the worker may wait for more records once the log is busy
    /// (Kafka's `fetch.max.wait.ms`).
    pub window: std::time::Duration,
    /// Most records in one batch.
    pub up_to: usize,
    /// How many records one fetch must return for the worker to gather
    /// more: fewer means the worker is keeping up, and what it fetched is
    /// stored at once.
    pub busy: usize,
}

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Inserts messages not stored yet (by id, and by sender and
    /// `client_msg_id`); a replay is harmless. A later version of a stored
    /// message ([`ChatMessage::supersedes`]: an edit or delete, by its
    /// sender) replaces it. Also moves each member's
    /// inbox entry of the conversation to its newest message
    /// ([`inbox_updates`]). Returns how many messages were new.
    async fn save_messages(&self, messages: Arc<[ChatMessage]>) -> Result<u64, StoreError>;
    /// How the history worker fills a batch before it calls
    /// [`Self::save_messages`]: by default it stores what one fetch of the
    /// log returns, at once.
    fn gather(&self) -> Gather {
        Gather { window: std::time::Duration::ZERO, up_to: crate::server::worker::BATCH, busy: usize::MAX }
    }
    /// One stored message (its newest version), if it exists.
    async fn message_by_id(&self, id: &str) -> Result<Option<ChatMessage>, StoreError>;
    /// Up to `limit` messages of a conversation with id < `before` (all when
    /// `None`), newest first.
    async fn messages_before(
        &self,
        conversation_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError>;
}

/// How far each member has read each conversation: one marker (a message
/// id) per user and conversation, only ever moved forward. Written directly,
/// not through the log: a marker is idempotent and monotonic, so a lost or
/// repeated write costs nothing a later one does not repair.
#[async_trait]
pub trait ReadStore: Send + Sync {
    /// Moves `user_id`'s marker in `conversation_id` to `message_id` unless
    /// it is there or further already. Returns whether it moved.
    async fn mark_read(&self, user_id: &str, conversation_id: &str, message_id: &str) -> Result<bool, StoreError>;
    /// For each `(conversation_id, peer_id)` of `user_id`, in order: how many
    /// messages from others follow the user's marker (counted up to
    /// [`crate::api::dto::UNREAD_COUNT_CAP`]) and the peer's marker.
    async fn read_states(
        &self,
        user_id: &str,
        conversations: &[(String, String)],
    ) -> Result<Vec<ReadState>, StoreError>;
    /// Every marker of `conversation_id`: `(user_id, message_id)`, in any
    /// order ("Seen by N" in groups; the caller keeps current members only).
    async fn read_markers(&self, conversation_id: &str) -> Result<Vec<(String, String)>, StoreError>;
}

/// Reactions under messages: who chose which emoji. Written directly, not
/// through the log (like read markers: stating the wanted state makes a
/// repeat or a lost write harmless).
#[async_trait]
pub trait ReactionStore: Send + Sync {
    /// Adds (`on`) or removes one user's emoji under a message. Returns
    /// whether that changed anything.
    async fn set_reaction(&self, message_id: &str, user_id: &str, emoji: &str, on: bool) -> Result<bool, StoreError>;
    /// The reactions of those of `message_ids` that have any.
    async fn reactions_for(&self, message_ids: &[String]) -> Result<Vec<Reactions>, StoreError>;
}

/// `(emoji, user_id)` rows of one message, in any order, as its
/// [`Reactions`]: emoji in [`crate::api::dto::REACTION_EMOJI`] order, users
/// in row order.
pub fn group_reactions(message_id: String, rows: Vec<(String, String)>) -> Reactions {
    let mut emoji: Vec<ReactionCount> = Vec::new();
    for (e, user) in rows {
        match emoji.iter_mut().find(|c| c.emoji == e) {
            Some(c) => c.user_ids.push(user),
            None => emoji.push(ReactionCount { emoji: e, user_ids: vec![user] }),
        }
    }
    let rank = |e: &str| crate::api::dto::REACTION_EMOJI.iter().position(|x| *x == e).unwrap_or(usize::MAX);
    emoji.sort_by_key(|c| rank(&c.emoji));
    Reactions { message_id, emoji }
}

/// One conversation's read state for one user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadState {
    pub unread: u32,
    pub peer_read: Option<String>,
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

/// Full-text search over history. Every driver finds a message when each
/// of the query's [`search_words`] is a word of its text (the last one as a
/// prefix), ignoring case and diacritics; kept in step with
/// [`MessageStore::save_messages`] (an edit is found by its new words
/// only, a deleted message not at all).
#[async_trait]
pub trait SearchStore: Send + Sync {
    /// Up to `limit` messages of `user_id`'s conversations — the direct
    /// chats they sent or received in, and the groups `groups` (those they
    /// are a member of now) — not deleted, whose text matches `terms`
    /// (non-empty, from [`search_words`]), with id < `before` (all when
    /// `None`), newest first. A group's messages are found through
    /// `groups` only, never by their sender, so a former member finds
    /// nothing of it.
    async fn search_messages(
        &self,
        user_id: &str,
        groups: &[String],
        terms: &[String],
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError>;
}

/// Words of a query used at most; the rest are ignored.
pub const MAX_SEARCH_TERMS: usize = 8;

/// The words of `text` as search compares them: runs of letters, digits
/// and combining marks, lowercase, with the diacritics of Latin-script
/// letters removed ("Crème" → "creme"; other scripts keep their marks, as
/// SQLite's `unicode61` tokenizer does). Never FTS or regex syntax: anything
/// else is a separator.
pub fn search_words(text: &str) -> Vec<String> {
    use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};
    // The combining diacritical mark blocks (accents, not Indic vowel signs).
    let diacritic = |c: char| matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}');
    let folded: String = text.nfd().filter(|c| !diacritic(*c)).nfc().collect::<String>().to_lowercase();
    folded
        .split(|c: char| !(c.is_alphanumeric() || is_combining_mark(c)))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Everything Charcha persists.
pub trait Store:
    UserStore
    + TokenStore
    + MediaStore
    + ConversationStore
    + GroupStore
    + MessageStore
    + SearchStore
    + ReadStore
    + ReactionStore
    + CheckpointStore
{
}

impl<T> Store for T where
    T: UserStore
        + TokenStore
        + MediaStore
        + ConversationStore
        + GroupStore
        + MessageStore
        + SearchStore
        + ReadStore
        + ReactionStore
        + CheckpointStore
{
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_cursor_round_trips_and_refuses_junk() {
        let c = UserCursor { name_key: "asha rao ✓".into(), id: "01J00000000000000000000000".into() };
        assert_eq!(UserCursor::decode(&c.encode()), Some(c));
        for junk in ["", "zz", "abc", "41", "ff00"] {
            assert_eq!(UserCursor::decode(junk), None, "{junk}");
        }
    }

    #[test]
    fn search_words_fold_case_and_diacritics_and_drop_syntax() {
        assert_eq!(search_words("Crème BRÛLÉE, s'il-vous"), ["creme", "brulee", "s", "il", "vous"]);
        assert_eq!(search_words(r#""a*" NEAR(b -c) ^d:"#), ["a", "near", "b", "c", "d"]);
        assert!(search_words(" *()\"-").is_empty());
        assert_eq!(search_words("नमस्ते, 한국"), ["नमस्ते", "한국"], "other scripts as they are");
    }

    #[test]
    fn search_terms_cover_words_name_and_email() {
        let user = UserRecord {
            id: "u".into(),
            email: "asha@example.com".into(),
            password_hash: String::new(),
            full_name: "  Asha   Rao ".into(),
            bio: String::new(),
            avatar_media_id: None,
            created_at_ms: 0,
        };
        assert_eq!(search_terms(&user), ["asha", "asha rao", "asha@example.com", "rao"]);
    }

    #[test]
    fn inbox_keeps_the_newest_message_per_conversation_for_both_members() {
        let m = |id: &str, conv: &str, from: &str, to: &str, text: &str| ChatMessage {
            id: id.into(),
            conversation_id: conv.into(),
            sender_id: from.into(),
            recipient_id: to.into(),
            text: text.into(),
            image: None,
            created_at: String::new(),
            client_msg_id: None,
            edited_at: None,
            deleted: false,
            reply_to: None,
        };
        let long = "é".repeat(PREVIEW_CHARS + 10);
        let groups = std::collections::HashMap::from([("grp:g".to_string(), vec!["a".to_string(), "d".to_string()])]);
        let updates = inbox_updates(
            &[
                m("2", "c1", "a", "b", "new"),
                m("1", "c1", "b", "a", "old"),
                m("3", "c2", "a", "c", &long),
                m("4", "grp:g", "b", "grp:g", "to the group"),
            ],
            &groups,
        );
        assert_eq!(updates.len(), 6);
        // A group's entries go to its current members (the sender "b" was removed), the peer is the group.
        let in_group: Vec<(&str, &str)> = updates
            .iter()
            .filter(|(_, e)| e.conversation_id == "grp:g")
            .map(|(u, e)| (u.as_str(), e.peer_id.as_str()))
            .collect();
        assert_eq!(in_group, [("a", "grp:g"), ("d", "grp:g")]);
        let of = |user: &str, conv: &str| {
            updates.iter().find(|(u, e)| u == user && e.conversation_id == conv).map(|(_, e)| e)
        };
        assert_eq!(of("a", "c1").map(|e| (e.peer_id.as_str(), e.last.text.as_str())), Some(("b", "new")));
        assert_eq!(of("b", "c1").map(|e| (e.peer_id.as_str(), e.last.id.as_str())), Some(("a", "2")));
        assert_eq!(of("c", "c2").map(|e| e.last.text.chars().count()), Some(PREVIEW_CHARS));
    }
}

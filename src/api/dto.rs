//! Data shapes shared by the server, the REST API and the wasm client.
//! Field names follow the original app's JSON (`_id`, `full_name`, …).

use serde::{Deserialize, Serialize};

/// The signed-in user, as returned by `/api/auth/*`. Never carries a password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    #[serde(rename = "_id")]
    pub id: String,
    pub email: String,
    pub full_name: String,
    /// URL of the avatar, or empty when the user has none.
    pub profile_picture: String,
    pub bio: String,
    /// RFC 3339.
    pub created_at: String,
}

/// Another user as seen in the contact list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    #[serde(rename = "_id")]
    pub id: String,
    pub full_name: String,
    pub profile_picture: String,
    pub bio: String,
    pub online: bool,
}

/// One chat message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Server-assigned ULID: sorts by creation time, unique.
    #[serde(rename = "_id")]
    pub id: String,
    pub conversation_id: String,
    pub sender_id: String,
    pub recipient_id: String,
    pub text: String,
    #[serde(default)]
    pub image: Option<String>,
    /// RFC 3339, milliseconds.
    pub created_at: String,
    #[serde(default)]
    pub client_msg_id: Option<String>,
    /// When the sender last edited or deleted it (RFC 3339, milliseconds):
    /// also the version of the message, so a stored copy is only ever
    /// replaced by a later one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
    /// Deleted by its sender: a tombstone with no text or image.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The message of the same conversation this one answers. Clients
    /// show it quoted from what they hold, so the server never reads
    /// history to send a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

impl ChatMessage {
    /// Whether `self` is a later version of the same message than `other`
    /// (an edit or a delete of it).
    pub fn supersedes(&self, other: &ChatMessage) -> bool {
        self.id == other.id
            && !other.deleted
            && self.edited_at.as_deref().unwrap_or("") > other.edited_at.as_deref().unwrap_or("")
    }
}

/// One page of a conversation, oldest to newest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePage {
    pub messages: Vec<ChatMessage>,
    /// True when older messages exist before the first one of this page.
    pub has_more: bool,
    /// How far the peer has read (a message id): "Seen".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_read: Option<String>,
    /// Reactions to the messages of this page (only those that have some).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reactions>,
}

/// The reactions to one message: who reacted with which emoji.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reactions {
    pub message_id: String,
    /// One entry per emoji used, in [`REACTION_EMOJI`] order.
    pub emoji: Vec<ReactionCount>,
}

/// One emoji under a message and the users who chose it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionCount {
    pub emoji: String,
    pub user_ids: Vec<String>,
}

/// The emoji a message can be reacted to with.
pub const REACTION_EMOJI: &[&str] = &["👍", "❤️", "😂", "😮", "😢", "🎉"];

pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 100;

/// One page of people (a search, or `/api/messages/users`), alphabetical.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactPage {
    pub contacts: Vec<Contact>,
    /// Pass back as `cursor` for the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

/// One entry of the conversation list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub conversation_id: String,
    pub peer: Contact,
    /// The newest message; its text is cut to a preview length.
    pub last_message: ChatMessage,
    /// Messages from others after the user's read marker, counted up to
    /// [`UNREAD_COUNT_CAP`] (shown as "99+" beyond).
    #[serde(default)]
    pub unread: u32,
    /// How far the peer has read (a message id): "Seen" under the user's
    /// own messages up to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_read: Option<String>,
}

/// Unread messages are counted up to this many per conversation.
pub const UNREAD_COUNT_CAP: u32 = 100;

/// One page of the conversation list, most recently active first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationPage {
    pub conversations: Vec<ConversationSummary>,
    /// Pass back as `cursor` for the next (older) page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// Conversations or people per page unless asked otherwise, and at most.
pub const DEFAULT_LIST_PAGE: usize = 30;
pub const MAX_LIST_PAGE: usize = 100;

/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 100;

/// One message found by a message search, with the other member of its
/// conversation (the one to open it with: `/chat/<peer id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSearchHit {
    pub message: ChatMessage,
    pub peer: Contact,
}

/// One page of a message search, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSearchPage {
    pub results: Vec<MessageSearchHit>,
    /// Pass back as `cursor` for the next (older) page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// Message search results per page unless asked otherwise, and at most.
pub const DEFAULT_SEARCH_PAGE: usize = 20;
pub const MAX_SEARCH_PAGE: usize = 50;

/// Deterministic id of the conversation between `a` and `b`: the same for
/// both orders, so a pair always lands in the same conversation (and, with
/// Kafka, the same partition).
pub fn direct_conversation_id(a: &str, b: &str) -> String {
    if a <= b { format!("dm:{a}:{b}") } else { format!("dm:{b}:{a}") }
}

/// DaisyUI themes offered in Settings; the first one is the default.
pub const THEMES: &[&str] = &[
    "light",
    "dark",
    "cupcake",
    "emerald",
    "corporate",
    "synthwave",
    "retro",
    "cyberpunk",
    "valentine",
    "forest",
    "aqua",
    "dracula",
    "night",
    "coffee",
    "winter",
    "nord",
    "sunset",
];

pub fn is_theme(name: &str) -> bool {
    THEMES.contains(&name)
}

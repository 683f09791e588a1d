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
    /// Groups only: how far each other current member has read, for
    /// "Seen by N" under any message (kept current by `read` events).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_markers: Vec<ReadMarker>,
}

/// How far one member has read a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMarker {
    pub user_id: String,
    pub message_id: String,
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

/// One entry of the conversation list: a direct chat (`peer` set) or a
/// group (`group` set). A direct chat's JSON is what it was before groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub conversation_id: String,
    /// The other member of a direct chat; `None` for a group (it has no
    /// single other member; see `group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<Contact>,
    /// The group, for a group conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupSummary>,
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
    /// Groups only: how many of the other current members have read up to
    /// `last_message` ("Seen by N").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_by: Option<u32>,
    /// One of the unread messages `@mentions` the user: the "@" badge, also
    /// after a reload.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mentioned: bool,
}

/// What the conversation list shows of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    #[serde(rename = "_id")]
    pub id: String,
    pub name: String,
    pub member_count: u32,
}

/// A member's role in a group: admins (the creator is one) may rename it
/// and add or remove members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRole {
    Admin,
    Member,
}

impl GroupRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// `None` for anything [`Self::as_str`] did not make.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// One member of a group, as its members see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    pub contact: Contact,
    pub role: GroupRole,
}

/// A group conversation as its members see it (`GET /api/groups/{id}`, and
/// the `group` event after every change). Its id is also its
/// conversation id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    #[serde(rename = "_id")]
    pub id: String,
    pub name: String,
    pub creator_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// Oldest member first.
    pub members: Vec<GroupMember>,
}

/// Longest group name, in characters (after trimming).
pub const MAX_GROUP_NAME_CHARS: usize = 80;

/// Most members a group may have, its creator included: every message is
/// one frame per member session, so this bounds a send's fan-out.
pub const MAX_GROUP_MEMBERS: usize = 256;

/// Group ids are `grp:<ulid>`; they are also the group's conversation id.
pub const GROUP_PREFIX: &str = "grp:";

/// Whether `id` names a group (by its shape; it may not exist).
pub fn is_group_id(id: &str) -> bool {
    id.starts_with(GROUP_PREFIX)
}

/// Unread messages are counted up to this many per conversation.
pub const UNREAD_COUNT_CAP: u32 = 100;

/// One page of the conversation list, most recently active first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationPage {
    pub conversations: Vec<ConversationSummary>,
    /// Pass back as `cursor` for the next (older) page; `None` on the last.
    pub next_cursor: Option<String>,
    /// First page only: the user's groups that have no message yet (just
    /// made, or nobody has written), which the list has no entry for; a
    /// client lists them too, by when they were made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_groups: Vec<Group>,
}

/// Conversations or people per page unless asked otherwise, and at most.
pub const DEFAULT_LIST_PAGE: usize = 30;
pub const MAX_LIST_PAGE: usize = 100;

/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 100;

/// One message found by a message search, with the other member of its
/// conversation (the one to open it with: `/chat/<peer id>`), or its group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSearchHit {
    pub message: ChatMessage,
    /// `None` for a group message (see `group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<Contact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupSummary>,
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

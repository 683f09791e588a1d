//! WebSocket wire types, shared verbatim by the server and the wasm client.
//!
//! Every frame is one JSON text message with a `type` tag. The server speaks
//! first with [`ServerEvent::Hello`], which carries [`PROTOCOL_VERSION`] so an
//! old client can tell it is talking to a newer server and reload.

use serde::{Deserialize, Serialize};

use crate::api::dto::{ChatMessage, Contact, Group, User};
use crate::api::json::{self, RawJson};

/// Bumped on any incompatible change to the frames below.
/// 2: `hello` no longer lists everyone online; clients `watch` the users
/// they show and get their presence (`presence_batch`, then `presence`).
/// 4: group conversations: `send` names a group by `conversation_id`,
/// messages may belong to a group (`recipient_id` is then the group id),
/// and the `group` and `group_removed` events.
pub const PROTOCOL_VERSION: u32 = 4;

/// Close code when the session's token was revoked (a logout) or expired:
/// the client should not reconnect with it, but ask the user to log in.
pub const CLOSE_SESSION_ENDED: u16 = 4401;

/// Most users one session may watch at once.
pub const MAX_WATCHED: usize = 500;

/// Longest message text, in Unicode scalar values.
pub const MAX_TEXT_CHARS: usize = 4_000;

/// Largest frame the server accepts, in bytes; larger ones close with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// How long a typing indicator stays up without a new `typing` frame.
pub const TYPING_SHOWN_MS: u64 = 6_000;

/// How often a client repeats `typing` while the user keeps typing; the
/// server drops repeats that come faster (per user and conversation).
pub const TYPING_EVERY_MS: u64 = 3_000;

/// Frames a client sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    /// Send a message to `to` (a user id: a direct chat) or to the group
    /// `conversation_id` (exactly one of the two). The sender is the
    /// authenticated user of the connection, never a field of the frame.
    Send {
        /// Chosen by the client; a retry with the same id never creates a
        /// second message and is answered with the same ack.
        client_msg_id: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        to: String,
        /// A group's id (`grp:…`), instead of `to`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation_id: Option<String>,
        #[serde(default)]
        text: String,
        /// URL of an image uploaded beforehand through `/api/media`.
        #[serde(default)]
        image: Option<String>,
        /// The id of the message (of the same conversation) this answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
    /// The users this client shows (its conversation list, search results,
    /// the open conversation): replaces the previous set. The server
    /// answers with a [`ServerEvent::PresenceBatch`] for the users new to
    /// the set, then sends [`ServerEvent::Presence`] and
    /// [`ServerEvent::Contact`] about watched users as they change.
    Watch { user_ids: Vec<String> },
    /// The user has read `conversation_id` up to `message_id` (the newest
    /// message it has seen there). Markers only move forward; the server
    /// tells every member ([`ServerEvent::Read`]) when this one moved.
    Read { conversation_id: String, message_id: String },
    /// The user is typing in `conversation_id`. Sent at most every few
    /// seconds while typing; the others see it for [`TYPING_SHOWN_MS`]
    /// unless it is repeated. Goes through the bus only: never stored.
    Typing { conversation_id: String },
    /// Replaces the text of one of the user's own messages. Goes through
    /// the log like a send, ordered with the conversation's messages;
    /// answered with [`ServerEvent::Updated`] carrying `client_msg_id`.
    Edit { client_msg_id: String, message_id: String, text: String },
    /// Deletes one of the user's own messages, leaving a tombstone.
    Delete { client_msg_id: String, message_id: String },
    /// Adds (`on`) or removes the user's `emoji` (one of
    /// [`crate::api::dto::REACTION_EMOJI`]) under a message. Stating the
    /// wanted state rather than toggling makes a repeat harmless.
    React { message_id: String, emoji: String, on: bool },
    /// Application-level heartbeat; answered with [`ServerEvent::Pong`].
    Ping {
        #[serde(default)]
        nonce: u64,
    },
}

/// Frames the server sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    Hello {
        protocol_version: u32,
        user: User,
    },
    /// The message is durably in the log; it will be in history.
    Ack {
        client_msg_id: String,
        message: ChatMessage,
    },
    /// A message for one of this user's conversations (sent by the peer, or
    /// by this user from another session).
    Message {
        message: ChatMessage,
    },
    /// A watched user came online or went offline.
    Presence {
        user_id: String,
        online: bool,
    },
    /// The presence of users just added to the watch set. A user in
    /// neither list already had a `presence` event, which is newer.
    PresenceBatch {
        online: Vec<String>,
        offline: Vec<String>,
    },
    /// A watched user changed their profile.
    Contact {
        contact: Contact,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
        /// Seconds until the refused frame may be sent again, for
        /// `rate_limited` (clients that predate the field ignore it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    Pong {
        nonce: u64,
    },
    /// `user_id` has read `conversation_id` up to `message_id`: to every
    /// member's sessions (the reader's other tabs clear their unread badge,
    /// the others show "Seen").
    Read {
        conversation_id: String,
        user_id: String,
        message_id: String,
    },
    /// `user_id` is typing in `conversation_id` (to the other members).
    Typing {
        conversation_id: String,
        user_id: String,
    },
    /// A message was edited or deleted (`message.edited_at`,
    /// `message.deleted`): replace the copy with the same id if this one
    /// is later. The session that asked gets it with its `client_msg_id`.
    Updated {
        message: ChatMessage,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
    },
    /// `user_id` added (`on`) or removed `emoji` under a message: to every
    /// member's sessions but the one that asked.
    Reaction {
        conversation_id: String,
        message_id: String,
        user_id: String,
        emoji: String,
        on: bool,
    },
    /// A group the user is a member of was created or changed (renamed,
    /// members added or removed, roles): its whole new state, to every
    /// current member's sessions.
    Group {
        group: Group,
    },
    /// The user is no longer a member of the group `conversation_id`
    /// (removed by an admin, or left from another tab): drop it. No other
    /// frame about it follows.
    GroupRemoved {
        conversation_id: String,
    },
}

/// Machine-readable error codes of [`ServerEvent::Error`]. New codes may
/// be added without a protocol version bump: a client reads a code it does
/// not know as [`ErrorCode::Unknown`] (the frame still parses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, unknown `type`, missing or mistyped fields.
    BadFrame,
    /// Text too long, empty message, bad image URL, unknown recipient,
    /// too many or malformed ids in a watch.
    Invalid,
    /// The message could not be made durable; it was NOT sent. Retry with
    /// the same `client_msg_id`.
    Unavailable,
    /// Too many sends (with `client_msg_id`) or `watch` frames (without);
    /// `retry_after` says when to try again.
    RateLimited,
    /// Sent instead of `hello` when the user already has as many
    /// connections open as allowed; the server then closes with 1008.
    /// Reconnecting will not help until another tab or window closes.
    TooManyConnections,
    /// A code this build does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

impl ServerEvent {
    /// Parses a frame: the same result as `serde_json::from_str::<ServerEvent>`
    /// for every frame the server sends, in much less wasm (BENCHMARKS.md,
    /// "Client size"). It reads with the client's JSON reader
    /// ([`crate::api::json`]), as server-function replies are read, so the
    /// decoder of a type both carry (`ChatMessage`, `Contact`, `User`,
    /// `Group`) is compiled once. Serde's derive for an internally tagged
    /// enum would first buffer the whole object into its private `Content`
    /// tree and then decode each variant from it: a second copy of every
    /// decoder. A struct per variant avoids that but still costs one derived
    /// decoder per variant. Here the frame is read once into one struct
    /// holding every field any variant has, each optional, and the variant is
    /// built from it by its `type`: one decoder for all of them.
    ///
    /// The two names that carry different types in different variants
    /// (`message`: a [`ChatMessage`], or the error's text; `online`: a flag,
    /// or a list of ids) are kept as their JSON text and read once the type
    /// is known. Every other known name has one type in every variant, so a
    /// frame whose field has the wrong type is refused as before; unknown
    /// fields are ignored, as the derive does.
    pub fn from_json(text: &str) -> Result<Self, json::Error> {
        use serde::de::Error as _;
        fn decode<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, json::Error> {
            json::from_slice(text.as_bytes())
        }
        fn required<T>(field: Option<T>, name: &'static str) -> Result<T, json::Error> {
            field.ok_or_else(|| json::Error::missing_field(name))
        }

        /// Every field of every variant, by its one name on the wire.
        #[derive(Deserialize)]
        struct Fields<'a> {
            #[serde(rename = "type")]
            kind: String,
            protocol_version: Option<u32>,
            user: Option<User>,
            client_msg_id: Option<String>,
            #[serde(borrow)]
            message: Option<RawJson<'a>>,
            user_id: Option<String>,
            #[serde(borrow)]
            online: Option<RawJson<'a>>,
            offline: Option<Vec<String>>,
            contact: Option<Contact>,
            code: Option<ErrorCode>,
            retry_after: Option<u64>,
            nonce: Option<u64>,
            conversation_id: Option<String>,
            message_id: Option<String>,
            emoji: Option<String>,
            on: Option<bool>,
            group: Option<Group>,
        }
        const TYPES: &[&str] = &[
            "hello",
            "ack",
            "message",
            "presence",
            "presence_batch",
            "contact",
            "error",
            "pong",
            "read",
            "typing",
            "updated",
            "reaction",
            "group",
            "group_removed",
        ];

        let f: Fields = decode(text)?;
        let message = || required(f.message, "message").and_then(|raw| decode::<ChatMessage>(raw.0));
        let online = || required(f.online, "online").map(|raw| raw.0);
        Ok(match f.kind.as_str() {
            "hello" => Self::Hello {
                protocol_version: required(f.protocol_version, "protocol_version")?,
                user: required(f.user, "user")?,
            },
            "ack" => Self::Ack { client_msg_id: required(f.client_msg_id, "client_msg_id")?, message: message()? },
            "message" => Self::Message { message: message()? },
            "presence" => Self::Presence { user_id: required(f.user_id, "user_id")?, online: decode(online()?)? },
            "presence_batch" => {
                Self::PresenceBatch { online: decode(online()?)?, offline: required(f.offline, "offline")? }
            }
            "contact" => Self::Contact { contact: required(f.contact, "contact")? },
            "error" => Self::Error {
                code: required(f.code, "code")?,
                message: decode(required(f.message, "message")?.0)?,
                client_msg_id: f.client_msg_id,
                retry_after: f.retry_after,
            },
            "pong" => Self::Pong { nonce: required(f.nonce, "nonce")? },
            "read" => Self::Read {
                conversation_id: required(f.conversation_id, "conversation_id")?,
                user_id: required(f.user_id, "user_id")?,
                message_id: required(f.message_id, "message_id")?,
            },
            "typing" => Self::Typing {
                conversation_id: required(f.conversation_id, "conversation_id")?,
                user_id: required(f.user_id, "user_id")?,
            },
            "updated" => Self::Updated { message: message()?, client_msg_id: f.client_msg_id },
            "reaction" => Self::Reaction {
                conversation_id: required(f.conversation_id, "conversation_id")?,
                message_id: required(f.message_id, "message_id")?,
                user_id: required(f.user_id, "user_id")?,
                emoji: required(f.emoji, "emoji")?,
                on: required(f.on, "on")?,
            },
            "group" => Self::Group { group: required(f.group, "group")? },
            "group_removed" => Self::GroupRemoved { conversation_id: required(f.conversation_id, "conversation_id")? },
            other => return Err(json::Error::unknown_variant(other, TYPES)),
        })
    }

    pub fn to_json(&self) -> String {
        // Serialising these plain data types cannot fail: no maps with
        // non-string keys, no custom serializers.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// The JSON of [`ServerEvent::Message`] around a message that is already
    /// serialised (the log record), so a sent message is serialised once.
    pub fn message_frame(message_json: &str) -> String {
        format!(r#"{{"type":"message","message":{message_json}}}"#)
    }

    /// The JSON of [`ServerEvent::Ack`] around an already serialised message.
    pub fn updated_frame(message_json: &str) -> String {
        format!(r#"{{"type":"updated","message":{message_json}}}"#)
    }

    pub fn ack_frame(client_msg_id: &str, message_json: &str) -> String {
        // A JSON string of a `&str` always serialises.
        let id = serde_json::to_string(client_msg_id).unwrap_or_else(|_| String::from("\"\""));
        format!(r#"{{"type":"ack","client_msg_id":{id},"message":{message_json}}}"#)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::dto::{GroupMember, GroupRole};

    #[test]
    fn message_frame_is_the_serialised_event() {
        let message = ChatMessage {
            id: "01J00000000000000000000000".into(),
            conversation_id: "dm:a:b".into(),
            sender_id: "a".into(),
            recipient_id: "b".into(),
            text: "hi \"there\"\n".into(),
            image: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            client_msg_id: Some("c1".into()),
            edited_at: None,
            deleted: false,
            reply_to: None,
        };
        let json = serde_json::to_string(&message).expect("json");
        let frame = ServerEvent::message_frame(&json);
        assert_eq!(frame, ServerEvent::Message { message: message.clone() }.to_json());
        assert_eq!(
            serde_json::from_str::<ServerEvent>(&frame).expect("parses"),
            ServerEvent::Message { message: message.clone() }
        );
        let ack = ServerEvent::ack_frame("c\"1", &json);
        assert_eq!(ack, ServerEvent::Ack { client_msg_id: "c\"1".into(), message: message.clone() }.to_json());
    }

    #[test]
    fn error_codes_a_client_does_not_know_still_parse() {
        let frame = r#"{"type":"error","code":"some_future_code","message":"m","retry_after":3}"#;
        assert_eq!(
            serde_json::from_str::<ServerEvent>(frame).expect("parses"),
            ServerEvent::Error {
                code: ErrorCode::Unknown,
                message: "m".into(),
                client_msg_id: None,
                retry_after: Some(3)
            }
        );
        let refused = ServerEvent::Error {
            code: ErrorCode::TooManyConnections,
            message: "m".into(),
            client_msg_id: None,
            retry_after: None,
        };
        assert_eq!(refused.to_json(), r#"{"type":"error","code":"too_many_connections","message":"m"}"#);
    }

    #[test]
    fn a_send_names_either_a_user_or_a_group() {
        let dm = r#"{"type":"send","client_msg_id":"c","to":"u2","text":"hi"}"#;
        let Ok(ClientEvent::Send { to, conversation_id, .. }) = serde_json::from_str::<ClientEvent>(dm) else {
            panic!("a direct send parses")
        };
        assert_eq!((to.as_str(), conversation_id), ("u2", None));
        let group = r#"{"type":"send","client_msg_id":"c","conversation_id":"grp:x","text":"hi"}"#;
        let Ok(ClientEvent::Send { to, conversation_id, .. }) = serde_json::from_str::<ClientEvent>(group) else {
            panic!("a group send parses")
        };
        assert_eq!((to.as_str(), conversation_id.as_deref()), ("", Some("grp:x")));
        let event = ClientEvent::Send {
            client_msg_id: "c".into(),
            to: "u2".into(),
            conversation_id: None,
            text: "hi".into(),
            image: None,
            reply_to: None,
        };
        let json = serde_json::to_string(&event).expect("json");
        assert!(!json.contains("conversation_id"), "a direct send's frame is what it was: {json}");
    }

    /// The client's lean parser agrees with serde's derive on every variant,
    /// on the tag's position, on unknown fields and on bad frames.
    #[test]
    fn from_json_agrees_with_the_derived_deserializer() {
        let message = ChatMessage {
            id: "01J00000000000000000000000".into(),
            conversation_id: "dm:a:b".into(),
            sender_id: "a".into(),
            recipient_id: "b".into(),
            text: "hé \u{1F600}".into(),
            image: Some("/api/media/x".into()),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            client_msg_id: None,
            edited_at: None,
            deleted: false,
            reply_to: None,
        };
        let user = User {
            id: "u1".into(),
            email: "ada@example.com".into(),
            full_name: "Ada".into(),
            profile_picture: String::new(),
            bio: "first \"programmer\"".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        let contact = Contact {
            id: "u2".into(),
            full_name: "Bob".into(),
            profile_picture: "/api/media/b".into(),
            bio: String::new(),
            online: false,
        };
        let group = Group {
            id: "grp:01J00000000000000000000000".into(),
            name: "Team \"core\"".into(),
            creator_id: "u1".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            members: vec![
                GroupMember { contact: contact.clone(), role: GroupRole::Admin },
                GroupMember { contact: Contact { id: "u3".into(), ..contact.clone() }, role: GroupRole::Member },
            ],
        };
        let events = [
            ServerEvent::Hello { protocol_version: PROTOCOL_VERSION, user },
            ServerEvent::Ack { client_msg_id: "c1".into(), message: message.clone() },
            ServerEvent::Message { message: message.clone() },
            ServerEvent::Presence { user_id: "u2".into(), online: true },
            ServerEvent::PresenceBatch { online: vec!["u3".into()], offline: vec![] },
            ServerEvent::Contact { contact },
            ServerEvent::Group { group },
            ServerEvent::GroupRemoved { conversation_id: "grp:01J00000000000000000000000".into() },
            ServerEvent::Message {
                message: ChatMessage {
                    conversation_id: "grp:01J00000000000000000000000".into(),
                    recipient_id: "grp:01J00000000000000000000000".into(),
                    ..message.clone()
                },
            },
            ServerEvent::Error {
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
                client_msg_id: None,
                retry_after: Some(12),
            },
            ServerEvent::Error {
                code: ErrorCode::Invalid,
                message: "no".into(),
                client_msg_id: Some("c2".into()),
                retry_after: None,
            },
            ServerEvent::Error {
                code: ErrorCode::TooManyConnections,
                message: "close a tab".into(),
                client_msg_id: None,
                retry_after: None,
            },
            ServerEvent::Pong { nonce: 7 },
            ServerEvent::Read { conversation_id: "dm:a:b".into(), user_id: "a".into(), message_id: "m".into() },
            ServerEvent::Typing { conversation_id: "dm:a:b".into(), user_id: "b".into() },
            ServerEvent::Updated {
                message: ChatMessage { edited_at: Some("2026-01-01T00:00:01.000Z".into()), ..message.clone() },
                client_msg_id: Some("c9".into()),
            },
            ServerEvent::Updated { message: ChatMessage { deleted: true, ..message.clone() }, client_msg_id: None },
            ServerEvent::Reaction {
                conversation_id: "dm:a:b".into(),
                message_id: "m".into(),
                user_id: "a".into(),
                emoji: "🎉".into(),
                on: true,
            },
        ];
        for event in events {
            let json = event.to_json();
            assert_eq!(ServerEvent::from_json(&json).expect("parses"), event, "{json}");
        }
        for frame in [
            r#"{"online":true,"user_id":"u","type":"presence","extra":[1,{"a":2}]}"#,
            r#"{"type":"pong","nonce":1}"#,
            r#"{"type":"error","code":"some_future_code","message":"m","retry_after":3}"#,
        ] {
            assert_eq!(
                ServerEvent::from_json(frame).expect("parses"),
                serde_json::from_str::<ServerEvent>(frame).expect("derive parses"),
            );
        }
        for bad in [r#"{"type":"nope"}"#, r#"{"nonce":1}"#, r#"{"type":"pong"}"#, "[]", "not json", r#"{"type":7}"#] {
            assert!(ServerEvent::from_json(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<ServerEvent>(bad).is_err(), "{bad}");
        }
    }
}

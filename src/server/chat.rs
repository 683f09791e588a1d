//! The message pipeline, shared by the WebSocket, the REST routes and the
//! server functions:
//!
//! 1. validate (sender is always the authenticated user);
//! 2. submit to the log, idempotently per `(sender, client_msg_id)` so a
//!    retry gets the same message ([`ChatService::submit`]);
//! 3. once the log has it durably, acknowledge the sender and publish it on
//!    the bus to the conversation's members ([`ChatService::complete`]);
//! 4. the worker (see `worker`) stores what the log holds as history.
//!
//! No store call is on this path for a direct conversation already seen:
//! the recipient's existence is cached (users are never deleted) and the
//! worker records conversations as it stores their messages. So direct
//! sends keep working, acked and live, while MongoDB is down. A group send
//! reads the group's members from the store twice: to check that the
//! sender is a member, and again to deliver to the members as they are
//! then, so a removal takes effect on every instance at once (no cache to
//! invalidate; see "Groups" in the README).

use std::sync::{Arc, Mutex};

use dashmap::DashSet;

use super::{
    bus::SessionRef,
    bus::{Audience, Bus},
    clock,
    log::{Appended, Durable, Log, SendRecord},
    media::ImageForm,
    metrics,
    presence::Presence,
    quota::Quotas,
    ratelimit::{self, RateLimiter},
    store::{
        GroupMemberRecord, GroupRecord, MAX_SEARCH_TERMS, MediaInfo, MediaRecord, ReadState, Store, UserCursor,
        UserRecord, media_url, search_words,
    },
};
use crate::{
    api::{
        AppError,
        dto::{
            ChatMessage, Contact, ContactPage, ConversationPage, ConversationSummary, DEFAULT_LIST_PAGE, DEFAULT_PAGE,
            DEFAULT_SEARCH_PAGE, GROUP_PREFIX, Group, GroupMember, GroupRole, GroupSummary, MAX_GROUP_MEMBERS,
            MAX_LIST_PAGE, MAX_PAGE, MAX_QUERY_CHARS, MAX_SEARCH_PAGE, MessagePage, MessageSearchHit,
            MessageSearchPage, ReadMarker, User, direct_conversation_id, is_group_id,
        },
        error::wait_phrase,
        rules,
    },
    app::chat::rich_text,
    protocol::{ServerEvent, TYPING_EVERY_MS},
};

/// A message as a client asks to send it.
#[derive(Clone, Debug)]
pub struct SendRequest {
    /// Idempotency key; generated when a REST client gives none.
    pub client_msg_id: Option<String>,
    /// A user id (the direct chat with them) or a group id (`grp:…`).
    pub to: String,
    pub text: String,
    pub image: Option<String>,
    /// The message this one answers (an id of the same conversation).
    pub reply_to: Option<String>,
}

pub struct ChatService {
    store: Arc<dyn Store>,
    log: Arc<dyn Log>,
    bus: Arc<dyn Bus>,
    presence: Arc<dyn Presence>,
    limiter: Arc<dyn RateLimiter>,
    /// Messages per user per minute.
    send_rate_per_minute: u32,
    /// Upload quotas (shared with avatars).
    quotas: Arc<Quotas>,
    /// Monotonic within this process even inside one millisecond, so ids
    /// from one instance sort in send order.
    ids: Mutex<ulid::Generator>,
    /// Users known to exist (users are never deleted), so a send to a
    /// known recipient reads nothing from the store.
    known_users: DashSet<String>,
}

/// What a sender may do to one of their messages after sending it.
#[derive(Clone, Debug)]
pub enum MessageChange {
    /// Replace its text (an image stays).
    Edit { text: String },
    /// Leave a tombstone: no text, no image.
    Delete,
}

/// A send the log has queued but may not have made durable yet.
pub struct PendingSend {
    candidate: ChatMessage,
    /// `candidate` as JSON (the log record, unless a retry finds the first attempt).
    candidate_json: String,
    durable: Durable,
}

/// A durable message: what the sender is acknowledged with.
pub struct SentMessage {
    pub message: ChatMessage,
    /// `message` as JSON, as the log holds it.
    pub json: String,
}

/// True when `id` has the shape of a Charcha id (a ULID).
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 26 && ulid::Ulid::from_string(id).is_ok()
}

/// The canonical (upper-case) form of an id, or `None` if it is not one.
/// ULIDs parse case-insensitively, but stores compare ids as text, so a
/// lower-case cursor would match the wrong rows (duplicates across pages).
pub fn canonical_id(id: &str) -> Option<String> {
    if id.len() != 26 {
        return None;
    }
    ulid::Ulid::from_string(id).ok().map(|u| u.to_string())
}

/// Searches one user may run per minute (the search box asks as they type).
pub const SEARCH_RATE_PER_MINUTE: u32 = 120;

/// Read markers one user may move per minute, all conversations together
/// (a client marks as messages arrive in the open conversation).
pub const READ_RATE_PER_MINUTE: u32 = 600;

/// `typing` frames forwarded per user and conversation per minute: the
/// client repeats one every [`TYPING_EVERY_MS`], with room for a second tab.
pub const TYPING_RATE_PER_MINUTE: u32 = (2 * 60_000 / TYPING_EVERY_MS) as u32;

/// Reactions one user may add or remove per minute.
pub const REACT_RATE_PER_MINUTE: u32 = 120;

/// Group creations and changes (rename, add, remove, leave) one user may
/// make per minute, all groups together: each one reads and writes the
/// store and announces the group to every member.
pub const GROUP_RATE_PER_MINUTE: u32 = 30;

/// How far in the future (by its ULID time) a read marker may point: a
/// marker past every message would hide the unread count of later ones.
const READ_MARKER_SLACK_MS: u64 = 5_000;

impl ChatService {
    pub fn new(
        store: Arc<dyn Store>,
        log: Arc<dyn Log>,
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        limiter: Arc<dyn RateLimiter>,
        send_rate_per_minute: u32,
        quotas: Arc<Quotas>,
    ) -> Self {
        Self {
            store,
            log,
            bus,
            presence,
            limiter,
            send_rate_per_minute,
            quotas,
            ids: Mutex::new(ulid::Generator::new()),
            known_users: DashSet::new(),
        }
    }

    /// Counts one hit of `key` against `limit` a minute (shared across
    /// instances in the scaled mode); over it, a 429 that says what was done
    /// `too_fast` and when to retry.
    async fn per_minute(&self, key: String, limit: u32, too_fast: &str) -> Result<(), AppError> {
        ratelimit::check(self.limiter.as_ref(), &key, limit, std::time::Duration::from_secs(60)).await.map_err(
            |retry_after| AppError {
                message: format!("{too_fast}; try again {}", wait_phrase(retry_after)),
                ..AppError::rate_limited(retry_after)
            },
        )
    }

    /// The `client_msg_id` a send or change goes by: the client's, checked,
    /// or a new one.
    fn client_msg_id(&self, chosen: Option<String>) -> Result<String, AppError> {
        match chosen {
            Some(id) => match rules::client_msg_id(&id) {
                Some(problem) => Err(AppError::field("client_msg_id", problem)),
                None => Ok(id),
            },
            None => Ok(self.next_id()),
        }
    }

    fn next_id(&self) -> String {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        // Overflow needs 2^80 ids in one millisecond; fall back to a fresh one.
        ids.generate().unwrap_or_else(|_| ulid::Ulid::new()).to_string()
    }

    /// Which of `ids` are online; everyone offline (and a warning) while
    /// presence is unavailable: lists still load.
    async fn online_among(&self, ids: &[String]) -> std::collections::HashSet<String> {
        self.presence.online_among(ids).await.unwrap_or_else(|e| {
            tracing::warn!("presence unavailable, showing users offline: {e}");
            Default::default()
        })
    }

    /// One page of the people whose name has a word starting with `query`
    /// or whose email starts with it (everyone for an empty query), `me`
    /// excluded, alphabetical. Rate limited per user: the search box asks
    /// as the user types.
    pub async fn search_contacts(
        &self,
        me: &str,
        query: &str,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ContactPage, AppError> {
        self.per_minute(format!("search:{me}"), SEARCH_RATE_PER_MINUTE, "Searching too fast").await?;
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(AppError::field("q", format!("Searches are limited to {MAX_QUERY_CHARS} characters")));
        }
        let after = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => Some(UserCursor::decode(c).ok_or_else(|| AppError::bad_request("Invalid `cursor`"))?),
            None => None,
        };
        let limit = limit.unwrap_or(DEFAULT_LIST_PAGE).clamp(1, MAX_LIST_PAGE);
        let mut users = self.store.search_users(query, me, after.as_ref(), limit + 1).await?;
        let next_cursor = (users.len() > limit).then(|| UserCursor::after(&users[limit - 1]).encode());
        users.truncate(limit);
        let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
        let online = self.online_among(&ids).await;
        Ok(ContactPage { contacts: users.iter().map(|u| u.to_contact(online.contains(&u.id))).collect(), next_cursor })
    }

    /// One page of the messages of `me`'s conversations whose text has
    /// every word of `query` (the last one as a prefix; case and diacritics
    /// ignored), newest first, each with the other member. `cursor` is the
    /// previous page's `next_cursor` (a message id). Rate limited with
    /// [`Self::search_contacts`] (one budget for both search boxes).
    pub async fn search_messages(
        &self,
        me: &str,
        query: &str,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<MessageSearchPage, AppError> {
        self.per_minute(format!("search:{me}"), SEARCH_RATE_PER_MINUTE, "Searching too fast").await?;
        let chars = query.trim().chars().count();
        if chars == 0 || chars > MAX_QUERY_CHARS {
            return Err(AppError::field("q", format!("Search for 1 to {MAX_QUERY_CHARS} characters")));
        }
        let before = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => Some(canonical_id(c).ok_or_else(|| AppError::bad_request("Invalid `cursor`"))?),
            None => None,
        };
        let limit = limit.unwrap_or(DEFAULT_SEARCH_PAGE).clamp(1, MAX_SEARCH_PAGE);
        let mut terms = search_words(query);
        terms.truncate(MAX_SEARCH_TERMS);
        // Only punctuation: no word to find.
        if terms.is_empty() {
            return Ok(MessageSearchPage { results: Vec::new(), next_cursor: None });
        }
        let my_groups = self.store.groups_of(me).await?;
        let mut found = self.store.search_messages(me, &my_groups, &terms, before.as_deref(), limit + 1).await?;
        let next_cursor = (found.len() > limit).then(|| found[limit - 1].id.clone());
        found.truncate(limit);
        let peer_of = |m: &ChatMessage| if m.sender_id == me { m.recipient_id.clone() } else { m.sender_id.clone() };
        let mut peer_ids: Vec<String> =
            found.iter().filter(|m| !is_group_id(&m.conversation_id)).map(peer_of).collect();
        peer_ids.sort();
        peer_ids.dedup();
        let peers: std::collections::HashMap<String, UserRecord> =
            self.store.users_by_ids(&peer_ids).await?.into_iter().map(|u| (u.id.clone(), u)).collect();
        let online = self.online_among(&peer_ids).await;
        let mut group_ids: Vec<String> =
            found.iter().filter(|m| is_group_id(&m.conversation_id)).map(|m| m.conversation_id.clone()).collect();
        group_ids.sort();
        group_ids.dedup();
        let groups = self.group_summaries(me, &group_ids).await?;
        let results = found
            .into_iter()
            .filter_map(|m| {
                if is_group_id(&m.conversation_id) {
                    // Only groups `me` is a member of now.
                    let group = groups.get(&m.conversation_id)?.clone();
                    return Some(MessageSearchHit { message: m, peer: None, group: Some(group) });
                }
                // A store answer about someone else's conversation is never shown.
                if m.sender_id != me && m.recipient_id != me {
                    return None;
                }
                let peer_id = peer_of(&m);
                let peer = peers.get(&peer_id)?.to_contact(online.contains(&peer_id));
                Some(MessageSearchHit { message: m, peer: Some(peer), group: None })
            })
            .collect();
        Ok(MessageSearchPage { results, next_cursor })
    }

    /// One user as a contact (opening a chat with someone not listed yet).
    pub async fn contact(&self, me: &str, id: &str) -> Result<Contact, AppError> {
        self.peer_conversation(me, id).await?;
        let user = self.store.user_by_id(id).await?.ok_or_else(|| AppError::not_found("No such user"))?;
        let online = self.online_among(std::slice::from_ref(&user.id)).await;
        Ok(user.to_contact(online.contains(&user.id)))
    }

    /// One page of `me`'s conversations, most recently active first, each
    /// with the peer and the newest message. `cursor` is the `next_cursor`
    /// of the previous page (a message id).
    pub async fn conversations(
        &self,
        user: &User,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ConversationPage, AppError> {
        let me = user.id.as_str();
        let before = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => Some(canonical_id(c).ok_or_else(|| AppError::bad_request("Invalid `cursor`"))?),
            None => None,
        };
        let limit = limit.unwrap_or(DEFAULT_LIST_PAGE).clamp(1, MAX_LIST_PAGE);
        let mut entries = self.store.inbox(me, before.as_deref(), limit + 1).await?;
        let next_cursor = (entries.len() > limit).then(|| entries[limit - 1].last.id.clone());
        entries.truncate(limit);
        let (group_entries, direct): (Vec<_>, Vec<_>) = entries.iter().partition(|e| is_group_id(&e.conversation_id));
        let peer_ids: Vec<String> = direct.iter().map(|e| e.peer_id.clone()).collect();
        let peers: std::collections::HashMap<String, UserRecord> =
            self.store.users_by_ids(&peer_ids).await?.into_iter().map(|u| (u.id.clone(), u)).collect();
        let online = self.online_among(&peer_ids).await;
        let group_ids: Vec<String> = group_entries.iter().map(|e| e.conversation_id.clone()).collect();
        let groups: std::collections::HashMap<String, GroupRecord> =
            self.store.groups_by_ids(&group_ids).await?.into_iter().map(|g| (g.id.clone(), g)).collect();
        let pairs: Vec<(String, String)> =
            entries.iter().map(|e| (e.conversation_id.clone(), e.peer_id.clone())).collect();
        let reads = self.store.read_states(me, &pairs).await?;
        let mut conversations = Vec::with_capacity(entries.len());
        for (e, ReadState { unread, peer_read }) in entries.into_iter().zip(reads) {
            let (peer, group, peer_read, seen_by) = if is_group_id(&e.conversation_id) {
                // A group `me` was removed from (or left) keeps its old
                // entry in the store; it is not shown.
                let Some(group) = groups.get(&e.conversation_id).filter(|g| g.member(me).is_some()) else {
                    continue;
                };
                (None, Some(group_summary(group)), None, Some(self.seen_by(me, group, &e.last.id).await?))
            } else {
                // Users are never deleted; an entry without its user is a
                // store inconsistency, left out rather than shown broken.
                let Some(peer) = peers.get(&e.peer_id).map(|p| p.to_contact(online.contains(&e.peer_id))) else {
                    continue;
                };
                (Some(peer), None, peer_read, None)
            };
            // A history read, so only for what is shown and has unread messages.
            let mentioned = unread > 0 && self.unread_mentions(me, &user.full_name, &e.conversation_id, unread).await?;
            conversations.push(ConversationSummary {
                conversation_id: e.conversation_id,
                peer,
                group,
                last_message: e.last,
                unread,
                peer_read,
                seen_by,
                mentioned,
            });
        }
        let new_groups = if before.is_none() { self.groups_without_messages(me).await? } else { Vec::new() };
        Ok(ConversationPage { conversations, next_cursor, new_groups })
    }

    /// `me`'s groups that nobody has written in yet: the conversation list
    /// (built from messages) has no entry for them. One history read per
    /// group, on the list's first page only.
    async fn groups_without_messages(&self, me: &str) -> Result<Vec<Group>, AppError> {
        let mut ids = self.store.groups_of(me).await?;
        // The newest groups first (ids are ULIDs); a page's worth at most.
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.truncate(MAX_LIST_PAGE);
        let mut empty = Vec::new();
        for id in ids {
            if self.store.messages_before(&id, None, 1).await?.is_empty() {
                empty.push(id);
            }
        }
        let mut groups = Vec::with_capacity(empty.len());
        for group in self.store.groups_by_ids(&empty).await? {
            if group.member(me).is_some() {
                groups.push(self.group_view(&group).await?);
            }
        }
        groups.sort_unstable_by(|a, b| b.id.cmp(&a.id));
        Ok(groups)
    }

    /// Whether one of a conversation's `unread` messages (the newest ones
    /// from others) mentions `my_name`, by the rule the client highlights
    /// mentions with. Looks at most one page back: the user's own messages
    /// in between count against it, which only matters past a page of them.
    async fn unread_mentions(
        &self,
        me: &str,
        my_name: &str,
        conversation_id: &str,
        unread: u32,
    ) -> Result<bool, AppError> {
        let newest = self.store.messages_before(conversation_id, None, MAX_PAGE).await?;
        Ok(newest
            .iter()
            .filter(|m| m.sender_id != me)
            .take(unread as usize)
            .any(|m| !m.deleted && rich_text::mentions(&m.text, my_name)))
    }

    /// The read markers of `group`'s current members but `me`.
    async fn group_read_markers(&self, me: &str, group: &GroupRecord) -> Result<Vec<ReadMarker>, AppError> {
        let markers = self.store.read_markers(&group.id).await?;
        Ok(markers
            .into_iter()
            .filter(|(user, _)| user != me && group.member(user).is_some())
            .map(|(user_id, message_id)| ReadMarker { user_id, message_id })
            .collect())
    }

    /// "Seen by N": how many of `group`'s current members but `me` have
    /// read up to `message_id`.
    async fn seen_by(&self, me: &str, group: &GroupRecord, message_id: &str) -> Result<u32, AppError> {
        let markers = self.group_read_markers(me, group).await?;
        Ok(markers.iter().filter(|m| m.message_id.as_str() >= message_id).count() as u32)
    }

    /// Summaries of those of `ids` that `me` is a member of, by id.
    async fn group_summaries(
        &self,
        me: &str,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, GroupSummary>, AppError> {
        Ok(self
            .store
            .groups_by_ids(ids)
            .await?
            .iter()
            .filter(|g| g.member(me).is_some())
            .map(|g| (g.id.clone(), group_summary(g)))
            .collect())
    }

    async fn peer_conversation(&self, me: &str, peer: &str) -> Result<String, AppError> {
        if !is_valid_id(peer) {
            return Err(AppError::bad_request("Malformed user id"));
        }
        if peer == me {
            return Err(AppError::bad_request("You cannot chat with yourself"));
        }
        if !self.known_users.contains(peer) {
            if self.store.user_by_id(peer).await?.is_none() {
                return Err(AppError::not_found("No such user"));
            }
            self.known_users.insert(peer.to_string());
        }
        Ok(direct_conversation_id(me, peer))
    }

    /// Records that `user_id` exists (it just signed up or authenticated),
    /// so sends to it need no store read.
    pub fn remember_user(&self, user_id: &str) {
        if !self.known_users.contains(user_id) {
            self.known_users.insert(user_id.to_string());
        }
    }

    async fn ensure_conversation(&self, conversation_id: &str, members: [&str; 2]) -> Result<(), AppError> {
        let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        self.store.ensure_conversation(conversation_id, &members).await?;
        Ok(())
    }

    /// A page of the conversation between `me` and `peer`, oldest to newest.
    pub async fn history(
        &self,
        me: &str,
        peer: &str,
        before: Option<&str>,
        limit: Option<usize>,
    ) -> Result<MessagePage, AppError> {
        let group = if is_group_id(peer) { Some(self.group_for(me, peer).await?) } else { None };
        let conversation_id = match &group {
            Some(g) => g.id.clone(),
            None => self.peer_conversation(me, peer).await?,
        };
        let before = match before {
            Some(b) => Some(canonical_id(b).ok_or_else(|| AppError::bad_request("`before` must be a message id"))?),
            None => None,
        };
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let mut messages = self.store.messages_before(&conversation_id, before.as_deref(), limit + 1).await?;
        let has_more = messages.len() > limit;
        messages.truncate(limit);
        messages.reverse();
        let (peer_read, read_markers) = match &group {
            Some(g) => (None, self.group_read_markers(me, g).await?),
            None => {
                let pairs = [(conversation_id, peer.to_string())];
                (self.store.read_states(me, &pairs).await?.pop().and_then(|r| r.peer_read), Vec::new())
            }
        };
        let ids: Vec<String> = messages.iter().filter(|m| !m.deleted).map(|m| m.id.clone()).collect();
        let reactions = self.store.reactions_for(&ids).await?;
        Ok(MessagePage { messages, has_more, peer_read, reactions, read_markers })
    }

    /// The members of `conversation_id` when `me` is one of them; "not
    /// found" otherwise, whether it exists or not (an outsider learns
    /// nothing). A direct chat is `dm:<a>:<b>`, whose members are in its id
    /// and need no store read; a group (`grp:<ulid>`) has its current
    /// members read from the store.
    pub async fn members_for(&self, me: &str, conversation_id: &str) -> Result<Vec<String>, AppError> {
        if is_group_id(conversation_id) {
            return Ok(self.group_for(me, conversation_id).await?.member_ids());
        }
        let not_found = || AppError::not_found("No such conversation");
        let (a, b) = conversation_id.strip_prefix("dm:").and_then(|pair| pair.split_once(':')).ok_or_else(not_found)?;
        let peer = match me {
            m if m == a => b,
            m if m == b => a,
            _ => return Err(not_found()),
        };
        // Canonical ids only: the same pair under another spelling is not
        // the same conversation.
        if self.peer_conversation(me, peer).await.map_err(|_| not_found())? != conversation_id {
            return Err(not_found());
        }
        Ok(vec![me.to_string(), peer.to_string()])
    }

    /// Moves `me`'s read marker in a conversation to `message_id` and tells
    /// every member's sessions (`origin` excepted) when it moved.
    pub async fn mark_read(
        &self,
        me: &str,
        conversation_id: &str,
        message_id: &str,
        origin: Option<SessionRef>,
    ) -> Result<(), AppError> {
        self.per_minute(format!("read:{me}"), READ_RATE_PER_MINUTE, "Marking read too fast").await?;
        let members = self.members_for(me, conversation_id).await?;
        let message_id = canonical_id(message_id)
            .filter(|id| {
                ulid::Ulid::from_string(id)
                    .is_ok_and(|u| u.timestamp_ms() <= (clock::now_ms() as u64).saturating_add(READ_MARKER_SLACK_MS))
            })
            .ok_or_else(|| AppError::field("message_id", "Must be the id of a message"))?;
        if !self.store.mark_read(me, conversation_id, &message_id).await? {
            return Ok(());
        }
        let event =
            ServerEvent::Read { conversation_id: conversation_id.to_string(), user_id: me.to_string(), message_id };
        if let Err(e) =
            self.bus.publish(Audience::Members { users: members, except: origin }, event.to_json().into()).await
        {
            // Stored: the other tabs and the peer see it on their next load.
            tracing::warn!("read marker broadcast failed: {e}");
        }
        Ok(())
    }

    /// Tells the other members of a conversation that `me` is typing.
    /// Through the bus only, never stored or logged; repeats beyond
    /// [`TYPING_RATE_PER_MINUTE`] are dropped without an error (the
    /// indicator is already showing).
    pub async fn typing(&self, me: &str, conversation_id: &str) -> Result<(), AppError> {
        let mut members = self.members_for(me, conversation_id).await?;
        let key = format!("typing:{me}:{conversation_id}");
        if ratelimit::check(self.limiter.as_ref(), &key, TYPING_RATE_PER_MINUTE, std::time::Duration::from_secs(60))
            .await
            .is_err()
        {
            return Ok(());
        }
        members.retain(|m| m != me);
        let event = ServerEvent::Typing { conversation_id: conversation_id.to_string(), user_id: me.to_string() };
        if let Err(e) =
            self.bus.publish(Audience::Members { users: members, except: None }, event.to_json().into()).await
        {
            tracing::debug!("typing broadcast failed: {e}");
        }
        Ok(())
    }

    /// Sends a message: returns it once the log holds it durably, after
    /// publishing it live to every session of both members.
    pub async fn send(&self, sender: &str, req: SendRequest) -> Result<SentMessage, AppError> {
        let pending = self.submit(sender, req).await?;
        let sent = self.durable(pending).await?;
        self.deliver(&sent, None).await;
        Ok(sent)
    }

    /// Validates a send and queues it in the log; returns once it is queued.
    /// Sends one caller submits one after another keep that order, so a
    /// connection can have several in flight: wait for each with
    /// [`Self::durable`], then [`Self::deliver`] them in the same order.
    pub async fn submit(&self, sender: &str, req: SendRequest) -> Result<PendingSend, AppError> {
        // Per user, across sessions and instances (the limiter is shared in
        // the scaled mode).
        self.per_minute(format!("send:{sender}"), self.send_rate_per_minute, "You are sending too fast").await?;
        let text = req.text;
        if let Some(problem) = rules::message_text(&text) {
            return Err(AppError::field("text", problem));
        }
        let image = req.image.filter(|i| !i.trim().is_empty());
        if text.trim().is_empty() && image.is_none() {
            return Err(AppError::field("text", "A message needs text or an image"));
        }
        let client_msg_id = self.client_msg_id(req.client_msg_id)?;
        let conversation_id = self.conversation_for(sender, &req.to).await?;
        if let Some(url) = &image {
            self.check_image_reference(sender, &conversation_id, url).await?;
        }
        // Checked for shape only: history is not read on the send path. A
        // client shows the quote from the conversation it holds, so an id
        // from elsewhere shows nothing and reveals nothing.
        let reply_to = match req.reply_to.filter(|r| !r.is_empty()) {
            Some(r) => Some(canonical_id(&r).ok_or_else(|| AppError::field("reply_to", "Must be a message id"))?),
            None => None,
        };
        let id = self.next_id();
        if reply_to.as_ref().is_some_and(|r| *r >= id) {
            return Err(AppError::field("reply_to", "A reply answers an earlier message"));
        }

        let candidate = ChatMessage {
            id,
            conversation_id,
            sender_id: sender.to_string(),
            // A group message's recipient is the group (its id): members
            // come and go, and a message is the group's, not a member's.
            recipient_id: req.to,
            text,
            image,
            created_at: clock::rfc3339(clock::now_ms()),
            client_msg_id: Some(client_msg_id.clone()),
            edited_at: None,
            deleted: false,
            reply_to,
        };
        // Serialised once: this text is the log record, the live frame and the ack.
        let candidate_json = serde_json::to_string(&candidate).map_err(|_| AppError::internal())?;
        let record = SendRecord {
            key: candidate.conversation_id.clone(),
            sender_id: candidate.sender_id.clone(),
            client_msg_id,
            payload: candidate_json.clone(),
        };
        let durable = self.log.submit(record).await.map_err(log_unavailable)?;
        Ok(PendingSend { candidate, candidate_json, durable })
    }

    /// Waits until `pending` is durable; the message to acknowledge (the
    /// first attempt's, for a retry).
    pub async fn durable(&self, pending: PendingSend) -> Result<SentMessage, AppError> {
        let PendingSend { candidate, candidate_json, durable } = pending;
        let sent = match durable.await.map_err(log_unavailable)? {
            Appended::New => SentMessage { message: candidate, json: candidate_json },
            // A retry: the first attempt's message, which is durable too.
            Appended::Duplicate(json) => {
                let message = serde_json::from_str(&json).map_err(|e| {
                    tracing::error!("undecodable first attempt in the log: {e}");
                    AppError::internal()
                })?;
                SentMessage { message, json }
            }
        };
        metrics::inc(&metrics::METRICS.messages_sent);
        Ok(sent)
    }

    /// Publishes a durable message live to every session of the
    /// conversation's members but `origin` (the sending session, which is
    /// answered with an ack instead). Call in send order: live delivery
    /// keeps the order of the calls.
    pub async fn deliver(&self, sent: &SentMessage, origin: Option<SessionRef>) {
        // Live delivery is best effort: anyone who misses it gets the
        // message from history. The frame wraps the record's JSON, so the
        // message is not serialised again.
        self.publish_to_members(&sent.message, ServerEvent::message_frame(&sent.json), origin).await;
    }

    /// Publishes `frame` about `message` to its conversation's members'
    /// sessions but `origin`. Best effort: history has what is missed. A
    /// group's members are read as they are now, so a member removed a
    /// moment ago gets nothing more.
    async fn publish_to_members(&self, message: &ChatMessage, frame: String, origin: Option<SessionRef>) {
        let users = if is_group_id(&message.conversation_id) {
            match self.store.groups_by_ids(std::slice::from_ref(&message.conversation_id)).await {
                Ok(mut found) => found.pop().map(|g| g.member_ids()).unwrap_or_default(),
                Err(e) => {
                    tracing::warn!("group members unavailable, live delivery skipped (history will have it): {e}");
                    return;
                }
            }
        } else {
            vec![message.sender_id.clone(), message.recipient_id.clone()]
        };
        self.publish(users, origin, frame).await;
    }

    /// Publishes `frame` to every session of `users` but `origin`; best
    /// effort (a failure is logged: what it carried is stored).
    async fn publish(&self, users: Vec<String>, origin: Option<SessionRef>, frame: String) {
        if let Err(e) = self.bus.publish(Audience::Members { users, except: origin }, frame.into()).await {
            tracing::warn!("live delivery failed (history will have it): {e}");
        }
    }

    /// The stored message `message_id` when `me` is a member of its
    /// conversation (and it is `conversation_id`'s, when given); "not
    /// found" otherwise, so an outsider learns nothing.
    async fn member_message(
        &self,
        me: &str,
        message_id: &str,
        conversation_id: Option<&str>,
    ) -> Result<ChatMessage, AppError> {
        let not_found = || AppError::not_found("No such message");
        let id = canonical_id(message_id).ok_or_else(not_found)?;
        let message = self.store.message_by_id(&id).await?.ok_or_else(not_found)?;
        if conversation_id.is_some_and(|c| c != message.conversation_id) {
            return Err(not_found());
        }
        let member = if is_group_id(&message.conversation_id) {
            // Members as they are now: a former member may no longer touch it.
            self.is_member(me, &message.conversation_id).await?
        } else {
            message.sender_id == me || message.recipient_id == me
        };
        if !member {
            return Err(not_found());
        }
        Ok(message)
    }

    /// Edits or deletes one of `sender`'s messages: the new version goes
    /// through the log like a send (so it is ordered with the
    /// conversation's messages and stored by the worker), and is returned
    /// once durable. `conversation_id`, when given (the REST route names
    /// it), must be the message's. Anyone but the conversation's members
    /// gets "not found"; a member who did not send it, 403.
    ///
    /// The checks read history, which trails the log by the worker's lag
    /// (milliseconds): a change racing a delete that is not stored yet is
    /// accepted here, but clients and the store both ignore anything after
    /// a tombstone, so the two never disagree.
    pub async fn change(
        &self,
        sender: &str,
        message_id: &str,
        conversation_id: Option<&str>,
        change: MessageChange,
        client_msg_id: Option<String>,
    ) -> Result<SentMessage, AppError> {
        self.per_minute(format!("send:{sender}"), self.send_rate_per_minute, "You are sending too fast").await?;
        let client_msg_id = self.client_msg_id(client_msg_id)?;
        let stored = self.member_message(sender, message_id, conversation_id).await?;
        if stored.sender_id != sender {
            return Err(AppError::forbidden("You can only change your own messages"));
        }
        if stored.deleted {
            return Err(AppError::conflict("This message was deleted"));
        }
        // The version: now, or just after the stored one if a clock is behind.
        let now = clock::now_ms();
        let after = stored.edited_at.as_deref().and_then(clock::parse_ms).map_or(now, |prev| prev + 1);
        let edited_at = Some(clock::stamp(now.max(after)));
        let updated = match change {
            MessageChange::Edit { text } => {
                if let Some(problem) = rules::message_text(&text) {
                    return Err(AppError::field("text", problem));
                }
                if text.trim().is_empty() && stored.image.is_none() {
                    return Err(AppError::field("text", "A message needs text or an image; delete it instead"));
                }
                ChatMessage { text, edited_at, ..stored }
            }
            MessageChange::Delete => {
                ChatMessage { text: String::new(), image: None, edited_at, deleted: true, ..stored }
            }
        };
        let json = serde_json::to_string(&updated).map_err(|_| AppError::internal())?;
        let record = SendRecord {
            key: updated.conversation_id.clone(),
            sender_id: sender.to_string(),
            client_msg_id,
            payload: json.clone(),
        };
        let durable = self.log.submit(record).await.map_err(log_unavailable)?;
        self.durable(PendingSend { candidate: updated, candidate_json: json, durable }).await
    }

    /// Adds (`on`) or removes `me`'s `emoji` under a message of one of
    /// `me`'s conversations (`conversation_id`, when given, must be its
    /// conversation), and tells the members' sessions but `origin`.
    pub async fn react(
        &self,
        me: &str,
        message_id: &str,
        conversation_id: Option<&str>,
        emoji: &str,
        on: bool,
        origin: Option<SessionRef>,
    ) -> Result<(), AppError> {
        self.per_minute(format!("react:{me}"), REACT_RATE_PER_MINUTE, "Reacting too fast").await?;
        if !crate::api::dto::REACTION_EMOJI.contains(&emoji) {
            return Err(AppError::field("emoji", format!("One of {}", crate::api::dto::REACTION_EMOJI.join(" "))));
        }
        let message = self.member_message(me, message_id, conversation_id).await?;
        if message.deleted {
            return Err(AppError::conflict("This message was deleted"));
        }
        if !self.store.set_reaction(&message.id, me, emoji, on).await? {
            return Ok(());
        }
        let event = ServerEvent::Reaction {
            conversation_id: message.conversation_id.clone(),
            message_id: message.id.clone(),
            user_id: me.to_string(),
            emoji: emoji.to_string(),
            on,
        };
        self.publish_to_members(&message, event.to_json(), origin).await;
        Ok(())
    }

    /// Publishes a durable edit or delete live to the members' sessions but
    /// `origin` (answered with the same event and its `client_msg_id`).
    pub async fn deliver_change(&self, sent: &SentMessage, origin: Option<SessionRef>) {
        self.publish_to_members(&sent.message, ServerEvent::updated_frame(&sent.json), origin).await;
    }

    /// A message image must be the sender's upload for this conversation.
    async fn check_image_reference(&self, sender: &str, conversation_id: &str, url: &str) -> Result<(), AppError> {
        let invalid = || AppError::field("image", "Unknown image; upload it first");
        let id = url.strip_prefix("/api/media/").ok_or_else(invalid)?;
        if !is_valid_id(id) {
            return Err(invalid());
        }
        match self.store.media_info(id).await? {
            Some(m) if m.owner_id == sender && m.conversation_id.as_deref() == Some(conversation_id) => Ok(()),
            _ => Err(invalid()),
        }
    }

    /// Stores an image for a message to `form.to`; returns its URL.
    pub async fn upload_image(&self, sender: &str, form: ImageForm) -> Result<String, AppError> {
        let conversation_id = self.conversation_for(sender, &form.to).await?;
        self.quotas.upload(sender, form.image.data.len()).await?;
        if !is_group_id(&conversation_id) {
            self.ensure_conversation(&conversation_id, [sender, &form.to]).await?;
        }
        let media = MediaRecord {
            id: self.next_id(),
            owner_id: sender.to_string(),
            conversation_id: Some(conversation_id),
            content_type: form.image.content_type.to_string(),
            data: form.image.data,
            created_at_ms: clock::now_ms(),
        };
        self.store.put_media(&media).await?;
        Ok(media_url(&media.id))
    }

    /// What media `id` is, if the viewer may see it: avatars are public,
    /// message images are visible to their conversation's members only
    /// (anyone else gets 404, so ids cannot be probed). `viewer` (the
    /// viewer's user id, if authenticated) is only called for private
    /// media, so serving an avatar never authenticates. Reads no image data.
    pub async fn media_access<F, Fut>(&self, id: &str, viewer: F) -> Result<MediaInfo, AppError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<String>>,
    {
        let not_found = || AppError::not_found("No such media");
        if !is_valid_id(id) {
            return Err(not_found());
        }
        let info = self.store.media_info(id).await?.ok_or_else(not_found)?;
        if let Some(conversation_id) = &info.conversation_id {
            let viewer = viewer().await.ok_or_else(not_found)?;
            let member = if is_group_id(conversation_id) {
                self.is_member(&viewer, conversation_id).await?
            } else {
                self.store.conversation_members(conversation_id).await?.contains(&viewer)
            };
            if !member {
                return Err(not_found());
            }
        }
        Ok(info)
    }

    /// The bytes of media `id`; call [`Self::media_access`] first.
    pub async fn media_data(&self, id: &str) -> Result<bytes::Bytes, AppError> {
        // Gone when deleted in between (a replaced avatar).
        let media = self.store.get_media(id).await?.ok_or_else(|| AppError::not_found("No such media"))?;
        Ok(media.data)
    }
}

/// Group conversations: creation, membership and roles. Authorization is
/// checked here on every call against the store's current state: a
/// non-member gets "not found" (an outsider learns nothing, as for direct
/// chats), a member who is not an admin 403. Every change is announced
/// live: [`ServerEvent::Group`] (the new state) to the members, and
/// [`ServerEvent::GroupRemoved`] to a member removed or leaving.
impl ChatService {
    /// The group `id` when `me` is a member of it now. 400 for an id that
    /// is not `grp:<ulid>`; 404 ("No such group") when it does not exist or
    /// `me` is not a member.
    async fn group_for(&self, me: &str, id: &str) -> Result<GroupRecord, AppError> {
        let malformed = || AppError::bad_request("Malformed group id");
        let ulid = id.strip_prefix(GROUP_PREFIX).ok_or_else(malformed)?;
        if canonical_id(ulid).as_deref() != Some(ulid) {
            return Err(malformed());
        }
        let not_found = || AppError::not_found("No such group");
        let group = self.store.groups_by_ids(&[id.to_string()]).await?.pop().ok_or_else(not_found)?;
        if group.member(me).is_none() {
            return Err(not_found());
        }
        Ok(group)
    }

    /// Whether `me` is a member of group `id` now (false for a malformed
    /// or unknown id; an unavailable store is an error, not a "no").
    async fn is_member(&self, me: &str, id: &str) -> Result<bool, AppError> {
        match self.group_for(me, id).await {
            Ok(_) => Ok(true),
            Err(e) if e.status == 400 || e.status == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The conversation `me` names by `target`: a user id (their direct
    /// chat, which needs no store read once the user is known) or a group
    /// id `me` is a member of.
    async fn conversation_for(&self, me: &str, target: &str) -> Result<String, AppError> {
        if is_group_id(target) {
            return Ok(self.group_for(me, target).await?.id);
        }
        self.peer_conversation(me, target).await
    }

    /// The group `me` may administer: a member who is not an admin gets 403.
    async fn admin_group(&self, me: &str, id: &str, what: &str) -> Result<GroupRecord, AppError> {
        let group = self.group_for(me, id).await?;
        match group.member(me) {
            Some(m) if m.role == GroupRole::Admin => Ok(group),
            _ => Err(AppError::forbidden(format!("Only the group's admins can {what}"))),
        }
    }

    /// A group's details: its name and members with their roles (as
    /// contacts, with presence), for members only.
    pub async fn group(&self, me: &str, id: &str) -> Result<Group, AppError> {
        let group = self.group_for(me, id).await?;
        self.group_view(&group).await
    }

    /// Creates a group named `name` (trimmed, 1 to 80 characters) with
    /// `me` (its creator and first admin) and `member_ids` (existing users;
    /// at most [`MAX_GROUP_MEMBERS`] members in all) and tells them all.
    pub async fn create_group(&self, me: &str, name: &str, member_ids: &[String]) -> Result<Group, AppError> {
        self.group_rate(me).await?;
        let name = group_name(name)?;
        let mut others = self.new_members(member_ids, 1).await?;
        others.retain(|id| id != me);
        let now = clock::now_ms();
        // The creator first (joined a millisecond earlier): "oldest member"
        // then means the creator, and the others in id order.
        let mut members =
            vec![GroupMemberRecord { user_id: me.to_string(), role: GroupRole::Admin, joined_at_ms: now }];
        members.extend(others.into_iter().map(|user_id| GroupMemberRecord {
            user_id,
            role: GroupRole::Member,
            joined_at_ms: now + 1,
        }));
        let group = GroupRecord {
            id: format!("{GROUP_PREFIX}{}", self.next_id()),
            name,
            creator_id: me.to_string(),
            created_at_ms: now,
            members,
        };
        self.store.create_group(&group).await?;
        self.announce(&group, None).await
    }

    /// Renames a group (admins only).
    pub async fn rename_group(&self, me: &str, id: &str, name: &str) -> Result<Group, AppError> {
        self.group_rate(me).await?;
        let name = group_name(name)?;
        let group = self.admin_group(me, id, "rename it").await?;
        if !self.store.rename_group(&group.id, &name).await? {
            return Err(AppError::not_found("No such group"));
        }
        self.announce_current(&group.id, None).await
    }

    /// Adds existing users to a group (admins only; members already in it
    /// are left as they are), up to [`MAX_GROUP_MEMBERS`] in all.
    pub async fn add_members(&self, me: &str, id: &str, user_ids: &[String]) -> Result<Group, AppError> {
        self.group_rate(me).await?;
        let group = self.admin_group(me, id, "add members").await?;
        let mut new = self.new_members(user_ids, 0).await?;
        new.retain(|u| group.member(u).is_none());
        if group.members.len() + new.len() > MAX_GROUP_MEMBERS {
            return Err(AppError::field("user_ids", format!("A group has at most {MAX_GROUP_MEMBERS} members")));
        }
        let now = clock::now_ms();
        let records: Vec<GroupMemberRecord> = new
            .into_iter()
            .map(|user_id| GroupMemberRecord { user_id, role: GroupRole::Member, joined_at_ms: now })
            .collect();
        self.store.add_group_members(&group.id, &records).await?;
        self.announce_current(&group.id, None).await
    }

    /// Removes `user_id` (not `me`: that is [`Self::leave_group`]) from a
    /// group: its admins may remove anyone but the creator. The removed
    /// member's sessions are told at once and get nothing more of the group.
    pub async fn remove_member(&self, me: &str, id: &str, user_id: &str) -> Result<Group, AppError> {
        self.group_rate(me).await?;
        if user_id == me {
            return Err(AppError::bad_request("To leave a group, leave it"));
        }
        if !is_valid_id(user_id) {
            return Err(AppError::bad_request("Malformed user id"));
        }
        let group = self.admin_group(me, id, "remove members").await?;
        if group.member(user_id).is_none() {
            return Err(AppError::not_found("Not a member of this group"));
        }
        if user_id == group.creator_id {
            return Err(AppError::forbidden("The group's creator cannot be removed"));
        }
        self.store.remove_group_member(&group.id, user_id).await?;
        self.tell_removed(&group.id, user_id).await;
        self.announce_current(&group.id, None).await
    }

    /// `me` leaves a group. When no admin is left, the oldest remaining
    /// member (earliest joined) becomes one, so a group never ends up with
    /// members and nobody to manage it. The last member leaving leaves an
    /// empty group that nobody can see.
    pub async fn leave_group(&self, me: &str, id: &str) -> Result<(), AppError> {
        self.group_rate(me).await?;
        let group = self.group_for(me, id).await?;
        self.store.remove_group_member(&group.id, me).await?;
        let rest: Vec<&GroupMemberRecord> = group.members.iter().filter(|m| m.user_id != me).collect();
        if !rest.iter().any(|m| m.role == GroupRole::Admin)
            && let Some(oldest) = rest.first()
        {
            self.store.set_group_role(&group.id, &oldest.user_id, GroupRole::Admin).await?;
        }
        self.tell_removed(&group.id, me).await;
        if !rest.is_empty() {
            self.announce_current(&group.id, None).await?;
        }
        Ok(())
    }

    async fn group_rate(&self, me: &str) -> Result<(), AppError> {
        self.per_minute(format!("group:{me}"), GROUP_RATE_PER_MINUTE, "Changing groups too fast").await
    }

    /// `ids` checked (well-formed, existing users, within the member cap
    /// with `extra` more), deduplicated, in order.
    async fn new_members(&self, ids: &[String], extra: usize) -> Result<Vec<String>, AppError> {
        let field = if extra > 0 { "member_ids" } else { "user_ids" };
        if ids.len() + extra > MAX_GROUP_MEMBERS {
            return Err(AppError::field(field, format!("A group has at most {MAX_GROUP_MEMBERS} members")));
        }
        let mut unique: Vec<String> = Vec::with_capacity(ids.len());
        for id in ids {
            let id = canonical_id(id)
                .ok_or_else(|| AppError::field(field, format!("Malformed user id: {:?}", truncate(id, 40))))?;
            if !unique.contains(&id) {
                unique.push(id);
            }
        }
        let found: std::collections::HashSet<String> =
            self.store.users_by_ids(&unique).await?.into_iter().map(|u| u.id).collect();
        if let Some(unknown) = unique.iter().find(|id| !found.contains(*id)) {
            return Err(AppError::field(field, format!("No such user: {unknown}")));
        }
        Ok(unique)
    }

    /// Tells every session of `user_id` that they are no longer in `group_id`.
    async fn tell_removed(&self, group_id: &str, user_id: &str) {
        let event = ServerEvent::GroupRemoved { conversation_id: group_id.to_string() };
        self.publish(vec![user_id.to_string()], None, event.to_json()).await;
    }

    /// Reads `id` again (after a change) and announces it.
    async fn announce_current(&self, id: &str, origin: Option<SessionRef>) -> Result<Group, AppError> {
        let group = self
            .store
            .groups_by_ids(&[id.to_string()])
            .await?
            .pop()
            .ok_or_else(|| AppError::not_found("No such group"))?;
        self.announce(&group, origin).await
    }

    /// Sends `group`'s state to its members' sessions; returns it.
    async fn announce(&self, group: &GroupRecord, origin: Option<SessionRef>) -> Result<Group, AppError> {
        let view = self.group_view(group).await?;
        let event = ServerEvent::Group { group: view.clone() };
        self.publish(group.member_ids(), origin, event.to_json()).await;
        Ok(view)
    }

    /// `group` as its members see it: members as contacts, with presence.
    async fn group_view(&self, group: &GroupRecord) -> Result<Group, AppError> {
        let ids = group.member_ids();
        let users: std::collections::HashMap<String, UserRecord> =
            self.store.users_by_ids(&ids).await?.into_iter().map(|u| (u.id.clone(), u)).collect();
        let online = self.online_among(&ids).await;
        let members = group
            .members
            .iter()
            .filter_map(|m| {
                let contact = users.get(&m.user_id)?.to_contact(online.contains(&m.user_id));
                Some(GroupMember { contact, role: m.role })
            })
            .collect();
        Ok(Group {
            id: group.id.clone(),
            name: group.name.clone(),
            creator_id: group.creator_id.clone(),
            created_at: clock::rfc3339(group.created_at_ms),
            members,
        })
    }
}

/// What the conversation list and search results show of a group.
fn group_summary(group: &GroupRecord) -> GroupSummary {
    GroupSummary { id: group.id.clone(), name: group.name.clone(), member_count: group.members.len() as u32 }
}

/// A group name as stored: trimmed, and as [`rules::group_name`] allows.
fn group_name(name: &str) -> Result<String, AppError> {
    match rules::group_name(name) {
        Some(problem) => Err(AppError::field("name", problem)),
        None => Ok(name.trim().to_string()),
    }
}

/// At most `max` characters of `text`, for error messages.
fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

fn log_unavailable(e: crate::server::log::LogError) -> AppError {
    metrics::inc(&metrics::METRICS.send_failures);
    static OUTAGE: crate::server::outage::Outage = crate::server::outage::Outage::new("log append failed");
    OUTAGE.warn(&e);
    AppError::unavailable("Message not sent: the message log is unavailable. Please retry.")
}

//! Pure chat state: one conversation's timeline, the conversation list and
//! the people the page knows, with
//! every merge rule in one place so it can be unit-tested without a browser.
//!
//! Messages reach a conversation by four roads — a history page, a live
//! `Message` frame, an `Ack` for our own send, and a resync after a reconnect
//! — in any order and possibly more than once. The rules here make the result
//! independent of that order: confirmed messages are keyed by their server id
//! (a ULID, so sorting by id sorts by time), and an own message that is still
//! on its way is keyed by its `client_msg_id` until a confirmed copy carrying
//! the same `client_msg_id` replaces it. A message therefore never appears
//! twice and never disappears.

use std::collections::HashMap;

use crate::api::dto::{
    ChatMessage, Contact, GROUP_PREFIX, Group, GroupMember, GroupRole, GroupSummary, UNREAD_COUNT_CAP, is_group_id,
};

/// Where one of our own, not yet confirmed, messages stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Written (or about to be written) to the server; waiting for its ack.
    Pending,
    /// No ack in time, the socket was down, or the server refused it; the
    /// user can retry with the same `client_msg_id`.
    Failed,
}

/// One of our own messages that the server has not acknowledged yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Chosen by the client once; every retry reuses it so the server can
    /// deduplicate.
    pub client_msg_id: String,
    pub text: String,
    /// Server URL of the image once uploaded.
    pub image: Option<String>,
    /// Local `blob:` URL of an image that is not uploaded yet, shown meanwhile.
    pub preview: Option<String>,
    /// RFC 3339 time the user pressed Send (for the bubble's clock).
    pub created_at: String,
    pub delivery: Delivery,
    /// Why it failed, when the server said so.
    pub error: Option<String>,
    /// Bumped by every (re)send, so a stale ack timer can tell it is stale.
    pub attempt: u32,
    /// The message this one answers.
    pub reply_to: Option<String>,
}

impl Outgoing {
    /// A fresh pending message.
    pub fn new(client_msg_id: String, text: String, preview: Option<String>, created_at: String) -> Self {
        Self {
            client_msg_id,
            text,
            image: None,
            preview,
            created_at,
            delivery: Delivery::Pending,
            error: None,
            attempt: 0,
            reply_to: None,
        }
    }

    /// Whether an image still has to be uploaded before the frame can go.
    pub fn needs_upload(&self) -> bool {
        self.preview.is_some() && self.image.is_none()
    }

    /// The image to show: the uploaded one, else the local preview.
    pub fn shown_image(&self) -> Option<String> {
        self.image.clone().or_else(|| self.preview.clone())
    }
}

/// One row of the rendered conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Confirmed(ChatMessage),
    Outgoing(Outgoing),
}

impl Item {
    /// Key for keyed rendering: changes whenever the row must be redrawn
    /// (a pending row becoming sent or failed), stable otherwise.
    pub fn render_key(&self) -> String {
        match self {
            // An edit or a delete is a new version: the row renders again.
            Item::Confirmed(m) => format!("m:{}:{}:{}", m.id, m.edited_at.as_deref().unwrap_or(""), m.deleted),
            Item::Outgoing(o) => format!(
                "c:{}:{}:{}",
                o.client_msg_id,
                match o.delivery {
                    Delivery::Pending => "p",
                    Delivery::Failed => "f",
                },
                o.attempt
            ),
        }
    }
}

/// What [`Timeline::insert`] (or [`Timeline::ack`]) did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// A message the timeline did not have (a pending own copy of it, if
    /// there was one, is gone too).
    New,
    /// Already there (same id), but a pending own copy of it was still held
    /// and is gone now: the rows changed although no message was added.
    DroppedPending,
    /// Already there (same id), and this is a later version of it (an edit
    /// or a delete), which replaced it.
    Updated,
    /// Already there (same id); nothing changed.
    Duplicate,
}

impl Inserted {
    /// Whether the timeline changed, i.e. whoever shows it must be told.
    pub fn changed(self) -> bool {
        self != Inserted::Duplicate
    }
}

/// The messages of one conversation as this client knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    /// The conversation target: the other participant of a direct chat,
    /// or the group's id.
    pub peer_id: String,
    /// Confirmed messages, sorted by id, unique by id.
    messages: Vec<ChatMessage>,
    /// Own messages not confirmed yet, in the order they were sent.
    outgoing: Vec<Outgoing>,
    /// Older messages exist on the server before the first one here.
    pub has_more: bool,
    /// At least one page has been loaded (until then the view shows a skeleton).
    pub loaded: bool,
    /// Why the last history load failed, shown with a retry button.
    pub load_error: Option<String>,
}

impl Timeline {
    pub fn new(peer_id: impl Into<String>) -> Self {
        Self { peer_id: peer_id.into(), ..Self::default() }
    }

    /// Whether `m` may be one of ours: in a direct chat, any message not
    /// from the peer; in a group any message may be (the timeline does not
    /// know who we are, and a `client_msg_id` carries 74 random bits, so a match
    /// with a pending one of ours is ours).
    fn may_be_own(&self, m: &ChatMessage) -> bool {
        is_group_id(&self.peer_id) || m.sender_id != self.peer_id
    }

    /// The confirmed message `id`, if held (a reply's quote).
    pub fn get(&self, id: &str) -> Option<&ChatMessage> {
        self.messages.binary_search_by(|m| m.id.as_str().cmp(id)).ok().map(|at| &self.messages[at])
    }

    /// Drops the pending own message `client_msg_id`; returns whether there
    /// was one.
    fn drop_outgoing(&mut self, client_msg_id: &str) -> bool {
        let before = self.outgoing.len();
        self.outgoing.retain(|o| o.client_msg_id != client_msg_id);
        self.outgoing.len() != before
    }

    /// Adds a confirmed message unless one with the same id is there; a
    /// pending own message with the same `client_msg_id` is replaced by it.
    pub fn insert(&mut self, message: ChatMessage) -> Inserted {
        let dropped = match message.client_msg_id.as_deref() {
            Some(cid) if self.may_be_own(&message) => self.drop_outgoing(cid),
            _ => false,
        };
        match self.messages.binary_search_by(|m| m.id.as_str().cmp(message.id.as_str())) {
            Ok(at) if message.supersedes(&self.messages[at]) => {
                self.messages[at] = message;
                Inserted::Updated
            }
            Ok(_) if dropped => Inserted::DroppedPending,
            Ok(_) => Inserted::Duplicate,
            Err(at) => {
                self.messages.insert(at, message);
                Inserted::New
            }
        }
    }

    /// The server confirmed `client_msg_id` as `message`: the pending copy
    /// goes, the confirmed one takes its place (once, even if the same message
    /// already came in as a live `Message`). `Duplicate` only if neither
    /// happened: the timeline did not change.
    pub fn ack(&mut self, client_msg_id: &str, message: ChatMessage) -> Inserted {
        let dropped = self.drop_outgoing(client_msg_id);
        match self.insert(message) {
            Inserted::Duplicate if dropped => Inserted::DroppedPending,
            inserted => inserted,
        }
    }

    /// Merges the newest page (first load, reopening, or resync after a
    /// reconnect). If the page is full and starts after everything we hold,
    /// messages were missed in between: the old ones are dropped rather than
    /// leaving a silent gap, and older history is paged in again on scroll.
    /// Returns whether anything changed.
    pub fn merge_latest(&mut self, page: Vec<ChatMessage>, has_more: bool) -> bool {
        let gap = match (self.messages.last(), page.first()) {
            (Some(newest_held), Some(oldest_page)) => has_more && oldest_page.id > newest_held.id,
            _ => false,
        };
        // A gap implies messages were held, so clearing them is a change.
        let mut changed = gap;
        if gap {
            self.messages.clear();
        }
        if !self.loaded || gap || self.messages.is_empty() {
            changed |= self.has_more != has_more;
            self.has_more = has_more;
        }
        changed |= !self.loaded || self.load_error.is_some();
        self.loaded = true;
        self.load_error = None;
        for m in page {
            // `|=` does not short-circuit: every message is inserted.
            changed |= self.insert(m).changed();
        }
        changed
    }

    /// Merges an older page fetched with `before = oldest_id()`. Returns
    /// whether anything changed.
    pub fn prepend_older(&mut self, page: Vec<ChatMessage>, has_more: bool) -> bool {
        let mut changed = self.has_more != has_more || !self.loaded;
        self.has_more = has_more;
        self.loaded = true;
        for m in page {
            changed |= self.insert(m).changed();
        }
        changed
    }

    /// Id of the oldest confirmed message, the `before` cursor of the next
    /// older page.
    pub fn oldest_id(&self) -> Option<&str> {
        self.messages.first().map(|m| m.id.as_str())
    }

    /// The conversation this timeline holds, as its messages say (`None`
    /// while it holds none).
    pub fn conversation_id(&self) -> Option<&str> {
        self.messages.last().map(|m| m.conversation_id.as_str())
    }

    /// Id of the newest confirmed message.
    pub fn newest_id(&self) -> Option<&str> {
        self.messages.last().map(|m| m.id.as_str())
    }

    /// Id of the newest confirmed message from someone other than `me`.
    pub fn newest_incoming_id(&self, me: &str) -> Option<&str> {
        self.messages.iter().rev().find(|m| m.sender_id != me).map(|m| m.id.as_str())
    }

    /// Id of the newest confirmed message `me` sent.
    pub fn newest_own_id(&self, me: &str) -> Option<&str> {
        self.messages.iter().rev().find(|m| m.sender_id == me).map(|m| m.id.as_str())
    }

    /// Whether a confirmed message with this id is held.
    #[cfg(test)]
    pub fn contains(&self, id: &str) -> bool {
        self.messages.binary_search_by(|m| m.id.as_str().cmp(id)).is_ok()
    }

    pub fn add_outgoing(&mut self, message: Outgoing) {
        if !self.outgoing.iter().any(|o| o.client_msg_id == message.client_msg_id) {
            self.outgoing.push(message);
        }
    }

    pub fn outgoing(&self, client_msg_id: &str) -> Option<&Outgoing> {
        self.outgoing.iter().find(|o| o.client_msg_id == client_msg_id)
    }

    /// Own messages still waiting for an ack (resent after a reconnect).
    pub fn pending(&self) -> Vec<Outgoing> {
        self.outgoing.iter().filter(|o| o.delivery == Delivery::Pending).cloned().collect()
    }

    /// Marks a pending message failed, but only if `attempt` (when given) is
    /// still its current attempt: a timer of an earlier try must not fail a
    /// retry that is in flight. Returns whether it changed.
    pub fn fail(&mut self, client_msg_id: &str, attempt: Option<u32>, error: Option<String>) -> bool {
        match self.outgoing.iter_mut().find(|o| o.client_msg_id == client_msg_id) {
            Some(o) if o.delivery == Delivery::Pending && attempt.is_none_or(|a| a == o.attempt) => {
                o.delivery = Delivery::Failed;
                o.error = error;
                true
            }
            _ => false,
        }
    }

    /// Starts a new attempt for a message (retry, or resend after a
    /// reconnect): pending again, attempt bumped. Returns the updated copy.
    pub fn begin_attempt(&mut self, client_msg_id: &str) -> Option<Outgoing> {
        let o = self.outgoing.iter_mut().find(|o| o.client_msg_id == client_msg_id)?;
        o.delivery = Delivery::Pending;
        o.error = None;
        o.attempt = o.attempt.wrapping_add(1);
        Some(o.clone())
    }

    /// Records the server URL of an uploaded image.
    ///
    /// Returns the local preview it no longer needs, for the caller to revoke.
    pub fn set_uploaded(&mut self, client_msg_id: &str, url: String) -> Option<String> {
        let o = self.outgoing.iter_mut().find(|o| o.client_msg_id == client_msg_id)?;
        o.image = Some(url);
        o.preview.take()
    }

    /// Rows in display order: confirmed messages by id, then our own
    /// unconfirmed ones in the order they were sent.
    pub fn items(&self) -> Vec<Item> {
        self.messages
            .iter()
            .cloned()
            .map(Item::Confirmed)
            .chain(self.outgoing.iter().cloned().map(Item::Outgoing))
            .collect()
    }
}

/// The timeline of the conversation with `peer`, created empty if there is
/// none yet.
pub fn timeline_mut<'a>(timelines: &'a mut HashMap<String, Timeline>, peer: &str) -> &'a mut Timeline {
    timelines.entry(peer.to_string()).or_insert_with(|| Timeline::new(peer))
}

/// Creates an empty timeline for `peer` if there is none yet. Returns
/// whether it did.
pub fn ensure_timeline(timelines: &mut HashMap<String, Timeline>, peer: &str) -> bool {
    if timelines.contains_key(peer) {
        return false;
    }
    timelines.insert(peer.to_string(), Timeline::new(peer));
    true
}

/// The conversation a message belongs to, seen from `me`: the other side
/// of a direct chat, or the group (a group message's recipient).
pub fn peer_of<'a>(message: &'a ChatMessage, me: &str) -> &'a str {
    if message.sender_id == me || is_group_id(&message.recipient_id) {
        &message.recipient_id
    } else {
        &message.sender_id
    }
}

/// Whether a message from `sender` in the conversation with `target` is
/// the user's own: in a direct chat anything not from the peer is (known
/// before the socket says who the user is); in a group, only the user's.
pub fn is_own(target: &str, me: Option<&str>, sender: &str) -> bool {
    if is_group_id(target) { me == Some(sender) } else { sender != target }
}

/// The conversation id of a target: a group's id is its conversation id;
/// a direct chat's is made of both members' ids.
pub fn conversation_of(me: &str, target: &str) -> String {
    if is_group_id(target) { target.to_string() } else { crate::api::dto::direct_conversation_id(me, target) }
}

/// What the page knows of one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub member_count: u32,
    /// Members with their roles, once fetched or heard in a `group` event
    /// (the conversation list only gives the count).
    pub members: Option<Vec<GroupMember>>,
    /// Who made it (empty until the members are known): it cannot be removed.
    pub creator_id: String,
    /// The user is no longer a member (removed, or left): the group leaves
    /// the list, and its open view cannot send.
    pub removed: bool,
}

impl GroupInfo {
    /// Whether `user_id` is an admin (false while the members are unknown).
    pub fn is_admin(&self, user_id: &str) -> bool {
        self.members.iter().flatten().any(|m| m.contact.id == user_id && m.role == GroupRole::Admin)
    }
}

/// Groups by id.
pub type Groups = HashMap<String, GroupInfo>;

/// A group's full state (a `group` event, or a fetch): it replaces what was
/// known, and the user is a member again. Returns whether anything changed.
pub fn apply_group(groups: &mut Groups, group: Group) -> bool {
    let info = GroupInfo {
        name: group.name,
        member_count: u32::try_from(group.members.len()).unwrap_or(u32::MAX),
        members: Some(group.members),
        creator_id: group.creator_id,
        removed: false,
    };
    if groups.get(&group.id) == Some(&info) {
        return false;
    }
    groups.insert(group.id, info);
    true
}

/// A group as the conversation list or a search result names it: name and
/// member count. Members known from before stay unless the count shows
/// they are out of date. Returns whether anything changed.
pub fn apply_group_summary(groups: &mut Groups, summary: &GroupSummary) -> bool {
    let info = groups.entry(summary.id.clone()).or_default();
    let stale = info.members.as_ref().is_some_and(|m| m.len() != summary.member_count as usize);
    if info.name == summary.name && info.member_count == summary.member_count && !stale {
        return false;
    }
    info.name.clone_from(&summary.name);
    info.member_count = summary.member_count;
    if stale {
        info.members = None;
    }
    true
}

/// The user is no longer a member of `group_id`. Returns whether that is news.
pub fn group_removed(groups: &mut Groups, group_id: &str) -> bool {
    let info = groups.entry(group_id.to_string()).or_default();
    !std::mem::replace(&mut info.removed, true)
}

/// Drops the conversation with `peer_id` from the list. Returns whether it
/// was listed.
pub fn remove_conversation(list: &mut Vec<ConversationEntry>, peer_id: &str) -> bool {
    let before = list.len();
    list.retain(|e| e.peer_id != peer_id);
    list.len() != before
}

/// When a conversation was last active, as a ULID-ordered key: its newest
/// message's id, or for a group without messages the ULID in its id (its
/// creation).
pub fn recency<'a>(peer_id: &'a str, last: Option<&'a ChatMessage>) -> &'a str {
    match last {
        Some(m) => &m.id,
        None => peer_id.strip_prefix(GROUP_PREFIX).unwrap_or(""),
    }
}

/// One row of the conversation list: the other member and the newest
/// message (its text may be cut to a preview).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationEntry {
    pub peer_id: String,
    pub last: ChatMessage,
}

/// Puts `last` as the newest message of the conversation with `peer_id`
/// (adding the conversation if it is not listed) unless the list already
/// has a newer one, and keeps the list newest first. Returns whether the
/// list changed.
pub fn bump_conversation(list: &mut Vec<ConversationEntry>, peer_id: &str, last: ChatMessage) -> bool {
    if let Some(at) = list.iter().position(|e| e.peer_id == peer_id) {
        // A later version of the entry's newest message (edited, deleted)
        // replaces its preview in place.
        if last.supersedes(&list[at].last) {
            list[at].last = last;
            return true;
        }
        if list[at].last.id >= last.id {
            return false;
        }
        list.remove(at);
    }
    let at = list.iter().position(|e| e.last.id < last.id).unwrap_or(list.len());
    list.insert(at, ConversationEntry { peer_id: peer_id.to_string(), last });
    true
}

/// Merges a page from the server (the first one, or an older one) into
/// the list: newer messages win, order stays newest first. Returns whether
/// the list changed.
pub fn merge_conversations(list: &mut Vec<ConversationEntry>, page: Vec<ConversationEntry>) -> bool {
    let mut changed = false;
    for e in page {
        changed |= bump_conversation(list, &e.peer_id, e.last);
    }
    changed
}

/// What a conversation row shows under the name: the newest message's text
/// (a photo placeholder for an image without text), "You: " first when it
/// is our own.
pub fn preview(last: &ChatMessage, me: Option<&str>, sender: Option<&str>) -> String {
    if last.deleted {
        return "Message deleted".to_string();
    }
    let body = match (last.text.trim(), &last.image) {
        ("", Some(_)) => "📷 Photo".to_string(),
        (text, _) => super::rich_text::plain_text(text).split_whitespace().collect::<Vec<_>>().join(" "),
    };
    match sender {
        _ if me == Some(last.sender_id.as_str()) => format!("You: {body}"),
        Some(name) => format!("{}: {body}", first_name(name)),
        None => body,
    }
}

/// Reactions under the messages this page holds, by message id.
pub type ReactionMap = HashMap<String, Vec<crate::api::dto::ReactionCount>>;

/// Takes a history page's reactions: each message of the page gets what the
/// server says (none if it is not listed). Returns whether anything changed.
pub fn merge_reactions(map: &mut ReactionMap, page_ids: &[String], reactions: Vec<crate::api::dto::Reactions>) -> bool {
    let mut changed = false;
    let mut listed: HashMap<String, Vec<crate::api::dto::ReactionCount>> =
        reactions.into_iter().map(|r| (r.message_id, r.emoji)).collect();
    for id in page_ids {
        match listed.remove(id) {
            Some(emoji) => {
                if map.get(id) != Some(&emoji) {
                    map.insert(id.clone(), emoji);
                    changed = true;
                }
            }
            None => changed |= map.remove(id).is_some(),
        }
    }
    changed
}

/// One user's emoji added (`on`) or removed under a message. Returns
/// whether anything changed (a repeat does not).
pub fn apply_reaction(map: &mut ReactionMap, message_id: &str, user_id: &str, emoji: &str, on: bool) -> bool {
    let list = map.entry(message_id.to_string()).or_default();
    let at = list.iter().position(|c| c.emoji == emoji);
    let changed = match (at, on) {
        (Some(i), true) if list[i].user_ids.iter().any(|u| u == user_id) => false,
        (Some(i), true) => {
            list[i].user_ids.push(user_id.to_string());
            true
        }
        (None, true) => {
            // Chips stay in the picker's order (others after them, oldest first).
            let rank = |e: &str| crate::api::dto::REACTION_EMOJI.iter().position(|x| *x == e).unwrap_or(usize::MAX);
            let at = list.partition_point(|c| rank(&c.emoji) <= rank(emoji));
            list.insert(
                at,
                crate::api::dto::ReactionCount { emoji: emoji.to_string(), user_ids: vec![user_id.to_string()] },
            );
            true
        }
        (Some(i), false) => {
            let before = list[i].user_ids.len();
            list[i].user_ids.retain(|u| u != user_id);
            let changed = list[i].user_ids.len() != before;
            if list[i].user_ids.is_empty() {
                list.remove(i);
            }
            changed
        }
        (None, false) => false,
    };
    if list.is_empty() {
        map.remove(message_id);
    }
    changed
}

/// The first `max` characters of a message's text on one line (a reply's
/// quote), or what it is when it has none.
pub fn snippet(message: &ChatMessage, max: usize) -> String {
    if message.deleted {
        return "Message deleted".to_string();
    }
    let flat = message.text.split_whitespace().collect::<Vec<_>>().join(" ");
    match (flat.is_empty(), &message.image) {
        (true, Some(_)) => "📷 Photo".to_string(),
        _ if flat.chars().count() > max => format!("{}…", flat.chars().take(max).collect::<String>()),
        _ => flat,
    }
}

/// Sets one person's presence. Returns whether it changed (false for
/// someone not known here, or already so).
pub fn apply_presence(people: &mut HashMap<String, Contact>, user_id: &str, online: bool) -> bool {
    match people.get_mut(user_id) {
        Some(c) if c.online != online => {
            c.online = online;
            true
        }
        _ => false,
    }
}

/// Adds or updates what we know of a person. With `keep_presence`, a
/// known person keeps the presence we have (a profile change says nothing
/// about it). Returns whether anything changed.
pub fn upsert_person(people: &mut HashMap<String, Contact>, mut contact: Contact, keep_presence: bool) -> bool {
    if let Some(old) = people.get(&contact.id) {
        if keep_presence {
            contact.online = old.online;
        }
        if *old == contact {
            return false;
        }
    }
    people.insert(contact.id.clone(), contact);
    true
}

/// The users this page shows, as the server's watch set: the open
/// conversation's peer, then the conversation list, then search results;
/// at most `max`, sorted (so an unchanged set compares equal).
pub fn watch_set<'a>(
    open: Option<&'a str>,
    conversations: impl IntoIterator<Item = &'a str>,
    search: impl IntoIterator<Item = &'a str>,
    max: usize,
) -> Vec<String> {
    // Kept sorted as it is built (a binary search finds repeats), so no
    // sort or hash set is linked into the client for it.
    let mut ids: Vec<String> = Vec::new();
    for id in open.into_iter().chain(conversations).chain(search) {
        if ids.len() == max {
            break;
        }
        if let Err(at) = ids.binary_search_by(|x| x.as_str().cmp(id)) {
            ids.insert(at, id.to_string());
        }
    }
    ids
}

/// What this client knows about reading in one conversation.
///
/// Message ids are ULIDs, so comparing them as strings compares them in
/// time; every marker here only moves forward.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadState {
    /// Messages from others this user has not read: the server's count from
    /// the conversation list, plus live ones since.
    pub unread: u32,
    /// The newest message known here, from anyone (a list page, history, a
    /// live message or an ack).
    pub newest: Option<String>,
    /// How far this user has read, as far as this client knows: markers it
    /// sent, markers its other tabs sent, and what a list page's zero implies.
    /// Kept so the same marker is never sent twice.
    pub mine: Option<String>,
    /// How far the other member has read: "Seen" under own messages up to
    /// it. In a group, how far any other member has.
    pub peer: Option<String>,
    /// Groups: how far each other member has read, by user id ("Seen by N").
    pub members: HashMap<String, String>,
    /// An unread message mentions this user: the row shows "@" until the
    /// count clears. Set by live messages and by the server's list (which
    /// checks the unread messages), so it is back after a reload.
    pub mentioned: bool,
}

/// Read state per conversation id.
pub type Reads = HashMap<String, ReadState>;

/// Raises `marker` to `id` if that is further. Returns whether it moved.
fn advance(marker: &mut Option<String>, id: &str) -> bool {
    if marker.as_deref().is_some_and(|m| m >= id) {
        return false;
    }
    *marker = Some(id.to_string());
    true
}

/// The state of `conversation_id`, created empty if there is none yet.
fn read_state<'a>(reads: &'a mut Reads, conversation_id: &str) -> &'a mut ReadState {
    reads.entry(conversation_id.to_string()).or_default()
}

/// A conversation-list entry: its unread count, whether one of those
/// messages mentions the user, and the peer's marker.
/// `shown`: the conversation is open in a visible tab, so nothing in it is
/// unread. The count is taken only from a page at least as new as what the
/// client knows (a live message counted since an older page was fetched
/// must not be lost), and not when this client already read past the
/// page's newest message (its marker may have reached the server after the
/// page was made). Returns whether anything changed.
pub fn apply_summary(
    reads: &mut Reads,
    conversation_id: &str,
    last_id: &str,
    unread: u32,
    mentioned: bool,
    peer_read: Option<&str>,
    shown: bool,
) -> bool {
    let r = read_state(reads, conversation_id);
    let current = r.newest.as_deref().is_none_or(|n| last_id >= n);
    let mut changed = advance(&mut r.newest, last_id);
    if let Some(p) = peer_read {
        changed |= advance(&mut r.peer, p);
    }
    // Nothing from others after the server's marker: everything up to the
    // page's newest message counts as read here (own messages after the
    // marker have nothing to mark). True of an older page too.
    if unread == 0 {
        changed |= advance(&mut r.mine, last_id);
    }
    if current {
        let already_read = r.mine.as_deref().is_some_and(|m| m >= last_id);
        let count = if shown || already_read { 0 } else { unread.min(UNREAD_COUNT_CAP) };
        if r.unread != count {
            r.unread = count;
            changed = true;
        }
        let mentioned = count > 0 && mentioned;
        if r.mentioned != mentioned {
            r.mentioned = mentioned;
            changed = true;
        }
    }
    changed
}

/// A message now known in `conversation_id` (history, an ack, a page).
/// Returns whether it was newer than any known there.
pub fn note_message(reads: &mut Reads, conversation_id: &str, id: &str) -> bool {
    advance(&mut read_state(reads, conversation_id).newest, id)
}

/// A live message: counted as unread if it is from someone else, new to
/// this client (`new`), not shown to the user right now (`shown`: its
/// conversation is open in a visible tab), and not already covered by this
/// user's read marker; if it counts and `mentions_me`, the conversation
/// shows the mention badge too. Returns whether anything changed.
pub fn live_message(
    reads: &mut Reads,
    conversation_id: &str,
    id: &str,
    incoming: bool,
    new: bool,
    shown: bool,
    mentions_me: bool,
) -> bool {
    let r = read_state(reads, conversation_id);
    let changed = advance(&mut r.newest, id);
    let read = r.mine.as_deref().is_some_and(|m| m >= id);
    if incoming && new && !shown && !read {
        r.unread = (r.unread + 1).min(UNREAD_COUNT_CAP);
        r.mentioned |= mentions_me;
        return true;
    }
    changed
}

/// A `read` event. From this user (another tab): its marker, and the
/// unread count cleared once the marker covers the newest message known
/// here. From another member: that member's marker. Returns whether
/// anything changed.
pub fn apply_read(reads: &mut Reads, conversation_id: &str, user_id: &str, message_id: &str, me: &str) -> bool {
    if user_id != me {
        return peer_read(reads, conversation_id, user_id, message_id);
    }
    let r = read_state(reads, conversation_id);
    let mut changed = advance(&mut r.mine, message_id);
    if (r.unread > 0 || r.mentioned) && r.newest.as_deref().is_none_or(|n| message_id >= n) {
        r.unread = 0;
        r.mentioned = false;
        changed = true;
    }
    changed
}

/// Another member (`user_id`, empty when a direct chat's page does not say
/// who: the peer) has read `conversation_id` up to `message_id` (a history
/// page says so, or a live `read`). Returns whether that is further than
/// known.
pub fn peer_read(reads: &mut Reads, conversation_id: &str, user_id: &str, message_id: &str) -> bool {
    let r = read_state(reads, conversation_id);
    let mut changed = advance(&mut r.peer, message_id);
    if !user_id.is_empty() {
        let marker = r.members.entry(user_id.to_string()).or_default();
        if marker.as_str() < message_id {
            *marker = message_id.to_string();
            changed = true;
        }
    }
    changed
}

/// How many of `members` (other than the user) have read
/// `conversation_id` up to `message_id`: a group's "Seen by N". While the
/// members are not known (`None`), every member whose marker this page
/// holds counts.
pub fn seen_by<'a>(
    reads: &Reads,
    conversation_id: &str,
    message_id: &str,
    members: Option<impl Iterator<Item = &'a str>>,
) -> usize {
    let Some(r) = reads.get(conversation_id) else { return 0 };
    let reached = |at: &String| at.as_str() >= message_id;
    match members {
        Some(members) => members.filter(|m| r.members.get(*m).is_some_and(reached)).count(),
        None => r.members.values().filter(|at| reached(at)).count(),
    }
}

/// The marker to send for a conversation the user is looking at, whose
/// newest message is `newest` and newest message from others
/// `newest_incoming`: `newest`, when a message from others is newer than
/// this user's known marker. `None` for empty or own-only conversations,
/// and when that marker was sent already.
pub fn read_to_send(
    reads: &Reads,
    conversation_id: &str,
    newest: &str,
    newest_incoming: Option<&str>,
) -> Option<String> {
    let incoming = newest_incoming?;
    let mine = reads.get(conversation_id).and_then(|r| r.mine.as_deref());
    mine.is_none_or(|m| m < incoming).then(|| newest.to_string())
}

/// This user read `conversation_id` up to `message_id` here (the marker
/// went out): nothing in it is unread any more. Returns whether anything
/// changed.
pub fn mark_read(reads: &mut Reads, conversation_id: &str, message_id: &str) -> bool {
    let r = read_state(reads, conversation_id);
    let changed = advance(&mut r.mine, message_id);
    clear_unread(reads, conversation_id) || changed
}

/// The user is looking at `conversation_id`: its badges go (the unread
/// count and the mention). Returns whether it had one.
pub fn clear_unread(reads: &mut Reads, conversation_id: &str) -> bool {
    match reads.get_mut(conversation_id) {
        Some(r) if r.unread > 0 || r.mentioned => {
            r.unread = 0;
            r.mentioned = false;
            true
        }
        _ => false,
    }
}

/// Unread messages of one conversation.
pub fn unread_in(reads: &Reads, conversation_id: &str) -> u32 {
    reads.get(conversation_id).map_or(0, |r| r.unread)
}

/// Whether an unread message of `conversation_id` mentions this user.
pub fn mentioned_in(reads: &Reads, conversation_id: &str) -> bool {
    reads.get(conversation_id).is_some_and(|r| r.mentioned)
}

/// Unread messages over all conversations (the tab title's number).
pub fn unread_total(reads: &Reads) -> u32 {
    reads.values().fold(0u32, |sum, r| sum.saturating_add(r.unread))
}

/// A badge's text: the count, "99+" beyond 99.
pub fn unread_badge(n: u32) -> String {
    if n > 99 { "99+".to_string() } else { n.to_string() }
}

/// A badge's text for screen readers.
pub fn unread_label(n: u32) -> String {
    match n {
        1 => "1 unread message".to_string(),
        n => format!("{} unread messages", unread_badge(n)),
    }
}

/// The chat page's title (before the app's " · Charcha"): the unread count
/// first when there is any, so it shows in a narrow tab.
pub fn page_title(unread_total: u32) -> String {
    match unread_total {
        0 => "Chat".to_string(),
        n => format!("({}) Chat", unread_badge(n)),
    }
}

/// The own message to show "Seen" under: the newest own one, once the
/// other member's marker has reached it.
pub fn seen_message<'a>(newest_own: Option<&'a str>, peer_read: Option<&str>) -> Option<&'a str> {
    newest_own.filter(|own| peer_read.is_some_and(|p| p >= *own))
}

/// Who is typing where: for each conversation id, each typing user's
/// expiry (`Date.now()` milliseconds). An entry lasts
/// [`crate::protocol::TYPING_SHOWN_MS`] after the user's last `typing`
/// frame, or until a message from them arrives there.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Typing {
    until: HashMap<String, Vec<(String, f64)>>,
}

impl Typing {
    /// `user_id` typed in `conversation_id` at `now`; shown until
    /// `now + shown_ms`. Returns whether they were not shown as typing
    /// before (only then does the view change).
    pub fn typed(&mut self, conversation_id: &str, user_id: &str, now: f64, shown_ms: f64) -> bool {
        let typers = self.until.entry(conversation_id.to_string()).or_default();
        match typers.iter_mut().find(|(u, _)| u == user_id) {
            Some((_, until)) => {
                *until = until.max(now + shown_ms);
                false
            }
            None => {
                typers.push((user_id.to_string(), now + shown_ms));
                true
            }
        }
    }

    /// `user_id` sent a message in `conversation_id`: no longer typing.
    /// Returns whether they were shown as typing.
    pub fn stopped(&mut self, conversation_id: &str, user_id: &str) -> bool {
        let Some(typers) = self.until.get_mut(conversation_id) else { return false };
        let before = typers.len();
        typers.retain(|(u, _)| u != user_id);
        let changed = typers.len() != before;
        if typers.is_empty() {
            self.until.remove(conversation_id);
        }
        changed
    }

    /// Drops everyone whose time ran out by `now`. Returns whether anyone
    /// went.
    pub fn expire(&mut self, now: f64) -> bool {
        let mut changed = false;
        self.until.retain(|_, typers| {
            let before = typers.len();
            typers.retain(|(_, until)| *until > now);
            changed |= typers.len() != before;
            !typers.is_empty()
        });
        changed
    }

    /// The users typing in `conversation_id`, in the order they started.
    pub fn typers(&self, conversation_id: &str) -> Vec<String> {
        self.until.get(conversation_id).map(|t| t.iter().map(|(u, _)| u.clone()).collect()).unwrap_or_default()
    }
}

/// The line shown while others type, from their names (a first name is
/// enough; a name without one stays whole). `None` while nobody types.
pub fn typing_text(names: &[String]) -> Option<String> {
    match names {
        [] => None,
        [one] => Some(format!("{} is typing…", first_name(one))),
        [a, b] => Some(format!("{} and {} are typing…", first_name(a), first_name(b))),
        _ => Some(format!("{} people are typing…", names.len())),
    }
}

/// A person's first name, as short lines name them ("Someone" for a blank one).
pub fn first_name(name: &str) -> &str {
    name.split_whitespace().next().unwrap_or("Someone")
}

/// When this client last told the server the user is typing, per
/// conversation id: a `typing` frame goes out at most every
/// [`crate::protocol::TYPING_EVERY_MS`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypingPace {
    last_sent: HashMap<String, f64>,
}

impl TypingPace {
    /// Whether a `typing` frame for `conversation_id` may go out at `now`.
    pub fn due(&self, conversation_id: &str, now: f64, every_ms: f64) -> bool {
        self.last_sent.get(conversation_id).is_none_or(|last| now - last >= every_ms)
    }

    /// A `typing` frame went out at `now`.
    pub fn sent(&mut self, conversation_id: &str, now: f64) {
        self.last_sent.insert(conversation_id.to_string(), now);
    }

    /// The user sent their message: the peer's indicator went with it, so
    /// the next keystroke may say "typing" again at once.
    pub fn reset(&mut self, conversation_id: &str) {
        self.last_sent.remove(conversation_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "me";
    const PEER: &str = "peer";

    fn msg(id: &str, from: &str, text: &str, cid: Option<&str>) -> ChatMessage {
        let to = if from == ME { PEER } else { ME };
        ChatMessage {
            id: id.into(),
            conversation_id: crate::api::dto::direct_conversation_id(ME, PEER),
            sender_id: from.into(),
            recipient_id: to.into(),
            text: text.into(),
            image: None,
            created_at: "2024-01-01T10:00:00.000Z".into(),
            client_msg_id: cid.map(Into::into),
            ..ChatMessage::default()
        }
    }

    fn out(cid: &str, text: &str) -> Outgoing {
        Outgoing::new(cid.into(), text.into(), None, "2024-01-01T10:00:00.000Z".into())
    }

    fn keys(t: &Timeline) -> Vec<String> {
        t.items()
            .iter()
            .map(|i| match i {
                Item::Confirmed(m) => m.id.clone(),
                Item::Outgoing(o) => format!("pending:{}", o.client_msg_id),
            })
            .collect()
    }

    #[test]
    fn merge_by_id_ignores_duplicates() {
        let mut t = Timeline::new(PEER);
        assert_eq!(t.insert(msg("01A", PEER, "hi", None)), Inserted::New);
        assert_eq!(t.insert(msg("01A", PEER, "hi", None)), Inserted::Duplicate);
        t.merge_latest(vec![msg("01A", PEER, "hi", None), msg("01B", ME, "yo", Some("c1"))], false);
        assert_eq!(keys(&t), ["01A", "01B"]);
        assert!(t.contains("01B"));
    }

    #[test]
    fn ack_replaces_pending() {
        let mut t = Timeline::new(PEER);
        t.add_outgoing(out("c1", "hello"));
        assert_eq!(keys(&t), ["pending:c1"]);
        assert_eq!(t.pending().len(), 1);
        t.ack("c1", msg("01A", ME, "hello", Some("c1")));
        assert_eq!(keys(&t), ["01A"]);
        assert!(t.pending().is_empty());
    }

    #[test]
    fn ack_without_client_id_in_message_still_replaces_pending() {
        let mut t = Timeline::new(PEER);
        t.add_outgoing(out("c1", "hello"));
        t.ack("c1", msg("01A", ME, "hello", None));
        assert_eq!(keys(&t), ["01A"]);
    }

    #[test]
    fn live_message_then_ack_appears_once() {
        let mut t = Timeline::new(PEER);
        t.add_outgoing(out("c1", "hello"));
        // The bus delivers our own message before the ack…
        assert_eq!(t.insert(msg("01A", ME, "hello", Some("c1"))), Inserted::New);
        assert_eq!(keys(&t), ["01A"]);
        // …and the ack changes nothing.
        assert_eq!(t.ack("c1", msg("01A", ME, "hello", Some("c1"))), Inserted::Duplicate);
        assert_eq!(keys(&t), ["01A"]);
    }

    #[test]
    fn ack_then_live_message_appears_once() {
        let mut t = Timeline::new(PEER);
        t.add_outgoing(out("c1", "hello"));
        t.ack("c1", msg("01A", ME, "hello", Some("c1")));
        assert_eq!(t.insert(msg("01A", ME, "hello", Some("c1"))), Inserted::Duplicate);
        assert_eq!(keys(&t), ["01A"]);
    }

    #[test]
    fn peer_message_with_same_client_id_does_not_replace_ours() {
        let mut t = Timeline::new(PEER);
        t.add_outgoing(out("c1", "mine"));
        t.insert(msg("01A", PEER, "theirs", Some("c1")));
        assert_eq!(keys(&t), ["01A", "pending:c1"]);
    }

    #[test]
    fn keeps_sorted_by_id_whatever_the_arrival_order() {
        let mut t = Timeline::new(PEER);
        for id in ["01C", "01A", "01E", "01B", "01D"] {
            t.insert(msg(id, PEER, id, None));
        }
        assert_eq!(keys(&t), ["01A", "01B", "01C", "01D", "01E"]);
        t.add_outgoing(out("c1", "x"));
        t.insert(msg("01F", PEER, "late", None));
        // Pending rows stay after every confirmed message.
        assert_eq!(keys(&t), ["01A", "01B", "01C", "01D", "01E", "01F", "pending:c1"]);
    }

    #[test]
    fn older_page_prepends_and_sets_has_more() {
        let mut t = Timeline::new(PEER);
        t.merge_latest(vec![msg("01D", PEER, "d", None), msg("01E", ME, "e", None)], true);
        assert!(t.has_more);
        assert_eq!(t.oldest_id(), Some("01D"));
        // Overlapping older page: the shared message is not doubled.
        t.prepend_older(
            vec![msg("01B", PEER, "b", None), msg("01C", ME, "c", None), msg("01D", PEER, "d", None)],
            false,
        );
        assert_eq!(keys(&t), ["01B", "01C", "01D", "01E"]);
        assert!(!t.has_more);
        assert_eq!(t.oldest_id(), Some("01B"));
    }

    #[test]
    fn resync_keeps_has_more_and_merges() {
        let mut t = Timeline::new(PEER);
        t.merge_latest(vec![msg("01B", PEER, "b", None), msg("01C", PEER, "c", None)], true);
        t.prepend_older(vec![msg("01A", PEER, "a", None)], false);
        // Reconnect: newest page overlaps what we hold and adds one.
        t.merge_latest(
            vec![msg("01B", PEER, "b", None), msg("01C", PEER, "c", None), msg("01D", PEER, "d", None)],
            true,
        );
        assert_eq!(keys(&t), ["01A", "01B", "01C", "01D"]);
        assert!(!t.has_more, "history before 01A is still known to be exhausted");
    }

    #[test]
    fn resync_confirms_pending_whose_ack_was_lost() {
        let mut t = Timeline::new(PEER);
        t.merge_latest(vec![msg("01A", PEER, "a", None)], false);
        t.add_outgoing(out("c1", "lost ack"));
        t.add_outgoing(out("c2", "never arrived"));
        t.merge_latest(vec![msg("01A", PEER, "a", None), msg("01B", ME, "lost ack", Some("c1"))], false);
        assert_eq!(keys(&t), ["01A", "01B", "pending:c2"]);
        assert_eq!(t.pending().iter().map(|o| o.client_msg_id.as_str()).collect::<Vec<_>>(), ["c2"]);
    }

    #[test]
    fn resync_with_a_gap_drops_stale_messages() {
        let mut t = Timeline::new(PEER);
        t.merge_latest(vec![msg("01A", PEER, "a", None)], false);
        // A full page that starts after everything held: messages were missed.
        t.merge_latest(vec![msg("01X", PEER, "x", None), msg("01Y", PEER, "y", None)], true);
        assert_eq!(keys(&t), ["01X", "01Y"]);
        assert!(t.has_more);
    }

    #[test]
    fn fail_and_retry_keep_the_client_id() {
        let mut t = Timeline::new(PEER);
        t.add_outgoing(out("c1", "hello"));
        assert!(t.fail("c1", Some(0), Some("down".into())));
        assert_eq!(t.outgoing("c1").map(|o| o.delivery), Some(Delivery::Failed));
        assert!(t.pending().is_empty(), "failed messages are not auto-resent");
        let retry = t.begin_attempt("c1").expect("known message");
        assert_eq!(retry.client_msg_id, "c1");
        assert_eq!(retry.attempt, 1);
        assert_eq!(retry.delivery, Delivery::Pending);
        // The timer of the first attempt must not fail the retry.
        assert!(!t.fail("c1", Some(0), None));
        assert_eq!(t.outgoing("c1").map(|o| o.delivery), Some(Delivery::Pending));
        t.ack("c1", msg("01A", ME, "hello", Some("c1")));
        assert_eq!(keys(&t), ["01A"]);
        assert!(!t.fail("c1", None, None), "nothing left to fail");
    }

    #[test]
    fn reactions_toggle_count_and_merge() {
        let mut map = ReactionMap::new();
        assert!(apply_reaction(&mut map, "m1", "a", "🎉", true));
        assert!(!apply_reaction(&mut map, "m1", "a", "🎉", true), "a repeat changes nothing");
        assert!(apply_reaction(&mut map, "m1", "b", "🎉", true));
        assert!(apply_reaction(&mut map, "m1", "b", "👍", true));
        let emoji: Vec<(&str, usize)> = map["m1"].iter().map(|c| (c.emoji.as_str(), c.user_ids.len())).collect();
        assert_eq!(emoji, [("👍", 1), ("🎉", 2)], "in the set's order");
        assert!(apply_reaction(&mut map, "m1", "b", "👍", false));
        assert!(!apply_reaction(&mut map, "m1", "b", "👍", false));
        assert!(apply_reaction(&mut map, "m1", "a", "🎉", false));
        assert!(apply_reaction(&mut map, "m1", "b", "🎉", false));
        assert!(map.is_empty(), "no empty entries are kept");
        // A page replaces what it lists and clears what it does not.
        apply_reaction(&mut map, "m2", "a", "😂", true);
        let page = vec![crate::api::dto::Reactions {
            message_id: "m1".into(),
            emoji: vec![crate::api::dto::ReactionCount { emoji: "❤️".into(), user_ids: vec!["c".into()] }],
        }];
        assert!(merge_reactions(&mut map, &["m1".into(), "m2".into()], page.clone()));
        assert!(!map.contains_key("m2"));
        assert!(!merge_reactions(&mut map, &["m1".into(), "m2".into()], page));
    }

    #[test]
    fn snippets_are_short_and_flat() {
        let m = msg("01A", PEER, "a  long\nline of text", None);
        assert_eq!(snippet(&m, 6), "a long…");
        assert_eq!(snippet(&m, 100), "a long line of text");
        let photo = ChatMessage { text: String::new(), image: Some("/x".into()), ..m.clone() };
        assert_eq!(snippet(&photo, 10), "📷 Photo");
        assert_eq!(snippet(&ChatMessage { deleted: true, ..m }, 10), "Message deleted");
    }

    #[test]
    fn a_later_version_replaces_the_message_and_its_row() {
        let mut t = Timeline::new(PEER);
        let original = msg("01A", ME, "helo", Some("c1"));
        assert_eq!(t.insert(original.clone()), Inserted::New);
        let key = t.items()[0].render_key();
        let edited = ChatMessage {
            text: "hello".into(),
            edited_at: Some("2026-01-01T00:00:01.000Z".into()),
            ..original.clone()
        };
        assert_eq!(t.insert(edited.clone()), Inserted::Updated);
        assert_ne!(t.items()[0].render_key(), key, "the row renders again");
        // An older version (a history page loaded before the edit) changes nothing.
        assert_eq!(t.insert(original.clone()), Inserted::Duplicate);
        let deleted = ChatMessage {
            text: String::new(),
            deleted: true,
            edited_at: Some("2026-01-01T00:00:02.000Z".into()),
            ..original.clone()
        };
        assert_eq!(t.insert(deleted.clone()), Inserted::Updated);
        // Nothing comes after a delete.
        let late = ChatMessage { edited_at: Some("2026-01-01T00:00:03.000Z".into()), ..edited };
        assert_eq!(t.insert(late), Inserted::Duplicate);
        assert!(matches!(&t.items()[0], Item::Confirmed(m) if m.deleted));
    }

    #[test]
    fn an_edited_last_message_updates_the_preview_in_place() {
        let mut list = vec![entry("b", "02"), entry("c", "01")];
        let edited = ChatMessage {
            text: "fixed".into(),
            edited_at: Some("2026-01-01T00:00:01.000Z".into()),
            ..list[1].last.clone()
        };
        assert!(bump_conversation(&mut list, "c", edited));
        assert_eq!(peers(&list), ["b", "c"], "an edit does not reorder");
        assert_eq!(list[1].last.text, "fixed");
        let gone = ChatMessage {
            deleted: true,
            text: String::new(),
            edited_at: Some("2026-01-01T00:00:02.000Z".into()),
            ..list[1].last.clone()
        };
        assert!(bump_conversation(&mut list, "c", gone.clone()));
        assert_eq!(preview(&gone, None, None), "Message deleted");
    }

    #[test]
    fn render_key_changes_with_delivery() {
        let mut t = Timeline::new(PEER);
        t.add_outgoing(out("c1", "hello"));
        let k1 = t.items()[0].render_key();
        t.fail("c1", None, None);
        let k2 = t.items()[0].render_key();
        assert_ne!(k1, k2);
    }

    #[test]
    fn upload_url_replaces_preview() {
        let mut o = out("c1", "");
        o.preview = Some("blob:x".into());
        let mut t = Timeline::new(PEER);
        t.add_outgoing(o);
        assert_eq!(t.outgoing("c1").and_then(Outgoing::shown_image).as_deref(), Some("blob:x"));
        assert!(t.outgoing("c1").is_some_and(Outgoing::needs_upload));
        assert_eq!(t.set_uploaded("c1", "/media/a.png".into()).as_deref(), Some("blob:x"));
        let o = t.outgoing("c1").expect("still pending");
        assert!(!o.needs_upload());
        assert_eq!(o.shown_image().as_deref(), Some("/media/a.png"));
    }

    fn contact(id: &str, name: &str, online: bool) -> Contact {
        Contact { id: id.into(), full_name: name.into(), profile_picture: String::new(), bio: String::new(), online }
    }

    #[test]
    fn timeline_mut_creates_once() {
        let mut m = HashMap::new();
        timeline_mut(&mut m, PEER).add_outgoing(out("c1", "hello"));
        assert_eq!(timeline_mut(&mut m, PEER).peer_id, PEER);
        assert_eq!(keys(&m[PEER]), ["pending:c1"], "the existing timeline is kept");
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn insert_reports_whether_it_changed() {
        let mut t = Timeline::new(PEER);
        assert!(t.insert(msg("01A", PEER, "hi", None)).changed());
        assert!(!t.insert(msg("01A", PEER, "hi", None)).changed());
        // A live copy of our own message confirms its pending row.
        t.add_outgoing(out("c1", "hello"));
        assert_eq!(t.insert(msg("01B", ME, "hello", Some("c1"))), Inserted::New);
        // The echo of a message already confirmed changes nothing.
        assert_eq!(t.insert(msg("01B", ME, "hello", Some("c1"))), Inserted::Duplicate);
        assert_eq!(keys(&t), ["01A", "01B"]);
    }

    #[test]
    fn held_message_still_drops_its_pending_copy() {
        let mut t = Timeline::new(PEER);
        t.add_outgoing(out("c1", "hello"));
        // Held already, e.g. from a page whose copy lacks the client id…
        t.insert(msg("01A", ME, "hello", None));
        assert_eq!(keys(&t), ["01A", "pending:c1"]);
        // …so the live copy with the client id only drops the pending row.
        let inserted = t.insert(msg("01A", ME, "hello", Some("c1")));
        assert_eq!(inserted, Inserted::DroppedPending);
        assert!(inserted.changed());
        assert_eq!(keys(&t), ["01A"]);
    }

    #[test]
    fn ack_of_a_held_message_still_changes_when_it_drops_the_pending_row() {
        let mut t = Timeline::new(PEER);
        t.add_outgoing(out("c1", "hello"));
        t.insert(msg("01A", ME, "hello", None));
        let acked = t.ack("c1", msg("01A", ME, "hello", None));
        assert_eq!(acked, Inserted::DroppedPending);
        assert!(acked.changed());
        assert_eq!(keys(&t), ["01A"]);
        // Acked again (HTTP and socket both answered): nothing left to change.
        let again = t.ack("c1", msg("01A", ME, "hello", Some("c1")));
        assert_eq!(again, Inserted::Duplicate);
        assert!(!again.changed());
    }

    #[test]
    fn ack_of_a_new_message_changes() {
        let mut t = Timeline::new(PEER);
        t.add_outgoing(out("c1", "hello"));
        let acked = t.ack("c1", msg("01A", ME, "hello", Some("c1")));
        assert_eq!(acked, Inserted::New);
        assert!(acked.changed());
        // An ack for a message this timeline never had pending still adds it.
        let mut t = Timeline::new(PEER);
        assert_eq!(t.ack("c9", msg("01A", ME, "hello", Some("c9"))), Inserted::New);
        assert_eq!(keys(&t), ["01A"]);
    }

    #[test]
    fn fail_reports_no_change_when_already_failed_or_gone() {
        let mut t = Timeline::new(PEER);
        t.add_outgoing(out("c1", "hello"));
        assert!(t.fail("c1", None, Some("refused".into())));
        // The ack timer of that attempt fires later: nothing to do.
        assert!(!t.fail("c1", Some(0), None));
        assert_eq!(t.outgoing("c1").and_then(|o| o.error.clone()).as_deref(), Some("refused"));
        assert!(!t.fail("zz", None, None));
    }

    #[test]
    fn merge_latest_reports_whether_it_changed() {
        let mut t = Timeline::new(PEER);
        // First load of an empty conversation: `loaded` flips.
        assert!(t.merge_latest(vec![], false));
        assert!(!t.merge_latest(vec![], false));
        assert!(t.merge_latest(vec![msg("01A", PEER, "a", None)], false));
        // Reopening with the same page changes nothing.
        assert!(!t.merge_latest(vec![msg("01A", PEER, "a", None)], false));
        // A new message, a cleared load error, a changed `has_more` do.
        assert!(t.merge_latest(vec![msg("01A", PEER, "a", None), msg("01B", PEER, "b", None)], false));
        t.load_error = Some("down".into());
        assert!(t.merge_latest(vec![msg("01A", PEER, "a", None), msg("01B", PEER, "b", None)], false));
        assert_eq!(t.load_error, None);
        let mut fresh = Timeline::new(PEER);
        fresh.loaded = true;
        assert!(fresh.merge_latest(vec![], true));
        assert!(fresh.has_more);
        // A confirmed pending row is a change.
        t.add_outgoing(out("c1", "mine"));
        assert!(t.merge_latest(vec![msg("01B", PEER, "b", None), msg("01C", ME, "mine", Some("c1"))], false));
        assert_eq!(keys(&t), ["01A", "01B", "01C"]);
        // A gap drops what was held.
        assert!(t.merge_latest(vec![msg("01X", PEER, "x", None)], true));
        assert_eq!(keys(&t), ["01X"]);
        assert!(!t.merge_latest(vec![msg("01X", PEER, "x", None)], true));
    }

    #[test]
    fn prepend_older_reports_whether_it_changed() {
        let mut t = Timeline::new(PEER);
        t.merge_latest(vec![msg("01C", PEER, "c", None)], true);
        assert!(t.prepend_older(vec![msg("01B", PEER, "b", None)], true));
        assert!(!t.prepend_older(vec![msg("01B", PEER, "b", None)], true));
        assert!(t.prepend_older(vec![msg("01B", PEER, "b", None)], false));
        assert_eq!(keys(&t), ["01B", "01C"]);
    }

    fn entry(peer: &str, id: &str) -> ConversationEntry {
        ConversationEntry { peer_id: peer.into(), last: msg(id, peer, "t", None) }
    }

    fn peers(list: &[ConversationEntry]) -> Vec<&str> {
        list.iter().map(|e| e.peer_id.as_str()).collect()
    }

    #[test]
    fn conversations_stay_newest_first_and_never_go_back() {
        let mut list = Vec::new();
        assert!(merge_conversations(&mut list, vec![entry("b", "01B"), entry("a", "01A")]));
        assert_eq!(peers(&list), ["b", "a"]);
        // A live message moves its conversation to the top.
        assert!(bump_conversation(&mut list, "a", msg("01C", "a", "new", None)));
        assert_eq!(peers(&list), ["a", "b"]);
        // An older copy (a page loaded before the live message) changes nothing.
        assert!(!merge_conversations(&mut list, vec![entry("a", "01A")]));
        assert_eq!(list[0].last.id, "01C");
        // An older page appends below; a new peer slots in by recency.
        assert!(merge_conversations(&mut list, vec![entry("z", "019")]));
        assert!(bump_conversation(&mut list, "m", msg("01BB", "m", "x", None)));
        assert_eq!(peers(&list), ["a", "m", "b", "z"]);
    }

    #[test]
    fn preview_marks_own_messages_and_photos() {
        let mut m = msg("01A", ME, "  hi\n there ", None);
        assert_eq!(preview(&m, Some(ME), None), "You: hi there");
        assert_eq!(preview(&m, Some(PEER), None), "hi there");
        m.text = "**bold** and `code`\n- item".into();
        assert_eq!(preview(&m, Some(PEER), None), "bold and code item");
        m.text = String::new();
        m.image = Some("/api/media/x".into());
        assert_eq!(preview(&m, None, None), "📷 Photo");
        // A group's preview names the sender by first name.
        m.text = "hi".into();
        assert_eq!(preview(&m, Some(PEER), Some("Asha Rao")), "Asha: hi");
        assert_eq!(preview(&m, Some(ME), Some("Me Myself")), "You: hi");
    }

    #[test]
    fn people_presence_and_profile_updates_report_changes() {
        let mut people = HashMap::new();
        assert!(upsert_person(&mut people, contact("a", "Alice", false), false));
        assert!(!apply_presence(&mut people, "a", false), "already offline");
        assert!(apply_presence(&mut people, "a", true));
        assert!(!apply_presence(&mut people, "zz", true), "unknown");
        // A profile change keeps the presence we know.
        assert!(upsert_person(&mut people, contact("a", "Alice B", false), true));
        assert!(people["a"].online);
        assert!(!upsert_person(&mut people, contact("a", "Alice B", false), true));
        assert!(upsert_person(&mut people, contact("a", "Alice B", false), false), "a list's presence is newer");
        assert!(!people["a"].online);
    }

    #[test]
    fn watch_set_puts_the_open_peer_first_and_caps() {
        assert_eq!(watch_set(Some("o"), ["b", "o", "a"], ["c", "a"], 10), ["a", "b", "c", "o"]);
        assert_eq!(watch_set(Some("o"), ["b", "a"], ["c"], 2), ["b", "o"]);
        assert!(watch_set(None, [], [], 5).is_empty());
    }

    #[test]
    fn ensure_timeline_creates_once() {
        let mut m = HashMap::new();
        assert!(ensure_timeline(&mut m, PEER));
        timeline_mut(&mut m, PEER).add_outgoing(out("c1", "hello"));
        assert!(!ensure_timeline(&mut m, PEER));
        assert_eq!(keys(&m[PEER]), ["pending:c1"], "the existing timeline is kept");
    }

    #[test]
    fn groups_are_their_own_conversation_and_learn_state() {
        const G: &str = "grp:01GROUP";
        let mut m = msg("01A", PEER, "x", None);
        m.recipient_id = G.into();
        m.conversation_id = G.into();
        assert_eq!(peer_of(&m, ME), G);
        m.sender_id = ME.into();
        assert_eq!(peer_of(&m, ME), G);
        assert_eq!(conversation_of(ME, G), G);
        assert_eq!(conversation_of(ME, PEER), crate::api::dto::direct_conversation_id(ME, PEER));
        // A group timeline takes any sender's confirmed copy of a pending id.
        let mut t = Timeline::new(G);
        t.add_outgoing(out("c1", "hi"));
        let mut mine = msg("01B", ME, "hi", Some("c1"));
        mine.recipient_id = G.into();
        assert_eq!(t.insert(mine), Inserted::New);
        assert!(t.pending().is_empty());

        let member = |id: &str, role| GroupMember { contact: contact(id, id, false), role };
        let group = Group {
            id: G.into(),
            name: "Team".into(),
            creator_id: ME.into(),
            created_at: String::new(),
            members: vec![member(ME, GroupRole::Admin), member(PEER, GroupRole::Member)],
        };
        let mut groups = Groups::new();
        assert!(apply_group(&mut groups, group.clone()));
        assert!(!apply_group(&mut groups, group.clone()));
        assert!(groups[G].is_admin(ME) && !groups[G].is_admin(PEER));
        // A summary with the same count keeps the members; another count drops them.
        let summary = GroupSummary { id: G.into(), name: "Team 2".into(), member_count: 2 };
        assert!(apply_group_summary(&mut groups, &summary));
        assert!(groups[G].members.is_some());
        assert!(apply_group_summary(&mut groups, &GroupSummary { member_count: 3, ..summary }));
        assert_eq!((groups[G].members.as_ref(), groups[G].name.as_str()), (None, "Team 2"));
        assert!(group_removed(&mut groups, G));
        assert!(!group_removed(&mut groups, G));
        assert!(apply_group(&mut groups, group), "added again");
        assert!(!groups[G].removed);

        let mut list = vec![ConversationEntry { peer_id: G.into(), last: msg("01C", PEER, "x", None) }];
        assert!(remove_conversation(&mut list, G));
        assert!(!remove_conversation(&mut list, G));
        assert_eq!(recency(G, None), "01GROUP");
        assert_eq!(recency(G, Some(&m)), "01A");
    }

    #[test]
    fn seen_by_counts_members_who_reached_the_message() {
        const G: &str = "grp:01G";
        let mut reads = Reads::new();
        assert_eq!(seen_by(&reads, G, "01B", Some(["a", "b"].into_iter())), 0);
        assert!(apply_read(&mut reads, G, "a", "01B", ME));
        assert!(apply_read(&mut reads, G, "b", "01A", ME));
        assert!(!apply_read(&mut reads, G, "a", "01A", ME), "markers never go back");
        assert_eq!(seen_by(&reads, G, "01B", Some(["a", "b"].into_iter())), 1);
        assert!(peer_read(&mut reads, G, "b", "01C"));
        assert_eq!(seen_by(&reads, G, "01B", Some(["a", "b"].into_iter())), 2);
        // Only current members count.
        assert_eq!(seen_by(&reads, G, "01B", Some(["a"].into_iter())), 1);
        // Members not known yet: every marker held counts.
        assert_eq!(seen_by(&reads, G, "01B", None::<std::iter::Empty<&str>>), 2);
    }

    #[test]
    fn peer_of_is_the_other_side() {
        let m = msg("01A", ME, "x", None);
        assert_eq!(peer_of(&m, ME), PEER);
        assert_eq!(peer_of(&m, PEER), ME);
    }

    const CONV: &str = "dm:me:peer";

    #[test]
    fn a_list_page_sets_the_count_unless_it_is_older_than_what_is_known() {
        let mut reads = Reads::new();
        assert!(apply_summary(&mut reads, CONV, "01B", 2, false, None, false));
        assert_eq!(unread_in(&reads, CONV), 2);
        // The same page again changes nothing.
        assert!(!apply_summary(&mut reads, CONV, "01B", 2, false, None, false));
        // A live message after it counts on top…
        assert!(live_message(&mut reads, CONV, "01C", true, true, false, false));
        assert_eq!(unread_in(&reads, CONV), 3);
        // …and a page fetched before it arrived does not undo that.
        assert!(!apply_summary(&mut reads, CONV, "01B", 2, false, None, false));
        assert_eq!(unread_in(&reads, CONV), 3);
        // A page that knows that message is the server's word (a refresh
        // after a reconnect, say).
        assert!(apply_summary(&mut reads, CONV, "01C", 1, false, None, false));
        assert_eq!(unread_in(&reads, CONV), 1);
        // The server caps its count; so does the client.
        apply_summary(&mut reads, CONV, "01D", 500, false, None, false);
        assert_eq!(unread_in(&reads, CONV), UNREAD_COUNT_CAP);
    }

    #[test]
    fn a_list_page_of_a_conversation_on_screen_or_already_read_shows_nothing_unread() {
        let mut reads = Reads::new();
        assert!(apply_summary(&mut reads, CONV, "01B", 2, false, Some("01A"), true));
        assert_eq!(unread_in(&reads, CONV), 0);
        assert_eq!(reads[CONV].peer.as_deref(), Some("01A"));
        // This tab marked 01C read; a page made before the server stored it
        // still counts 01C.
        assert!(mark_read(&mut reads, CONV, "01C"));
        apply_summary(&mut reads, CONV, "01C", 1, false, None, false);
        assert_eq!(unread_in(&reads, CONV), 0);
        // A page with nothing unread says everything up to its newest
        // message is read: that marker is never sent.
        let mut reads = Reads::new();
        apply_summary(&mut reads, CONV, "01E", 0, false, None, false);
        assert_eq!(read_to_send(&reads, CONV, "01E", Some("01E")), None);
        assert_eq!(read_to_send(&reads, CONV, "01F", Some("01F")).as_deref(), Some("01F"));
        // The peer's marker only moves forward.
        apply_summary(&mut reads, CONV, "01E", 0, false, Some("01D"), false);
        assert!(!apply_summary(&mut reads, CONV, "01E", 0, false, Some("01B"), false));
        assert_eq!(reads[CONV].peer.as_deref(), Some("01D"));
    }

    #[test]
    fn live_messages_count_only_when_new_from_others_and_not_on_screen() {
        let mut reads = Reads::new();
        assert!(live_message(&mut reads, CONV, "01A", true, true, false, false));
        assert_eq!(unread_in(&reads, CONV), 1);
        // Own messages (another tab), repeats, and messages on screen do not count.
        live_message(&mut reads, CONV, "01B", false, true, false, false);
        live_message(&mut reads, CONV, "01A", true, false, false, false);
        live_message(&mut reads, CONV, "01C", true, true, true, false);
        assert_eq!(unread_in(&reads, CONV), 1);
        assert_eq!(reads[CONV].newest.as_deref(), Some("01C"));
        // Nor does one this user has already read (in another tab).
        apply_read(&mut reads, CONV, ME, "01E", ME);
        assert_eq!(unread_in(&reads, CONV), 0);
        live_message(&mut reads, CONV, "01D", true, true, false, false);
        assert_eq!(unread_in(&reads, CONV), 0);
        // Other conversations keep their own counts; the title adds them up.
        live_message(&mut reads, CONV, "01F", true, true, false, false);
        live_message(&mut reads, "dm:me:zed", "01G", true, true, false, false);
        live_message(&mut reads, "dm:me:zed", "01H", true, true, false, false);
        assert_eq!(unread_in(&reads, "dm:me:zed"), 2);
        assert_eq!(unread_total(&reads), 3);
        assert_eq!(unread_in(&reads, "dm:me:nobody"), 0);
    }

    #[test]
    fn a_mention_comes_back_from_the_list_after_a_reload() {
        // A reloaded page knows only what the server's list says.
        let mut reads = Reads::new();
        assert!(apply_summary(&mut reads, CONV, "01C", 3, true, None, false));
        assert!(mentioned_in(&reads, CONV));
        // Not while the conversation is on screen (nothing there is unread).
        let mut shown = Reads::new();
        apply_summary(&mut shown, CONV, "01C", 3, true, None, true);
        assert!(!mentioned_in(&shown, CONV));
        // An older page does not overrule what is known since.
        assert!(!apply_summary(&mut reads, CONV, "01B", 2, false, None, false));
        assert!(mentioned_in(&reads, CONV));
        // A current page whose unread messages mention nobody clears it.
        assert!(apply_summary(&mut reads, CONV, "01C", 3, false, None, false));
        assert!(!mentioned_in(&reads, CONV));
    }

    #[test]
    fn a_mention_shows_until_the_unread_count_clears() {
        let mut reads = Reads::new();
        // Mentions in messages that do not count as unread show nothing.
        live_message(&mut reads, CONV, "01A", true, true, true, true);
        live_message(&mut reads, CONV, "01B", false, true, false, true);
        assert!(!mentioned_in(&reads, CONV));
        live_message(&mut reads, CONV, "01C", true, true, false, false);
        assert!(!mentioned_in(&reads, CONV));
        assert!(live_message(&mut reads, CONV, "01D", true, true, false, true));
        assert!(mentioned_in(&reads, CONV));
        // A later message without one keeps it; so does a list page still
        // counting unread messages and saying one mentions the user.
        live_message(&mut reads, CONV, "01E", true, true, false, false);
        apply_summary(&mut reads, CONV, "01E", 2, true, None, false);
        assert!(mentioned_in(&reads, CONV));
        assert!(!mentioned_in(&reads, "dm:me:zed"));
        // Looking at the conversation clears both badges at once.
        assert!(clear_unread(&mut reads, CONV));
        assert_eq!((unread_in(&reads, CONV), mentioned_in(&reads, CONV)), (0, false));
        // So does a read from another tab, and a list page with nothing unread.
        live_message(&mut reads, CONV, "01F", true, true, false, true);
        assert!(apply_read(&mut reads, CONV, ME, "01F", ME));
        assert!(!mentioned_in(&reads, CONV));
        live_message(&mut reads, CONV, "01G", true, true, false, true);
        assert!(apply_summary(&mut reads, CONV, "01G", 0, false, None, false));
        assert!(!mentioned_in(&reads, CONV));
        // A message already read elsewhere mentions nobody here.
        live_message(&mut reads, CONV, "01G", true, true, false, true);
        assert!(!mentioned_in(&reads, CONV));
    }

    #[test]
    fn a_read_from_another_tab_clears_the_count_once_it_covers_the_newest_message() {
        let mut reads = Reads::new();
        live_message(&mut reads, CONV, "01A", true, true, false, false);
        live_message(&mut reads, CONV, "01B", true, true, false, false);
        // Read up to 01A only: 01B is still unread.
        assert!(apply_read(&mut reads, CONV, ME, "01A", ME));
        assert_eq!(unread_in(&reads, CONV), 2);
        assert!(apply_read(&mut reads, CONV, ME, "01B", ME));
        assert_eq!(unread_in(&reads, CONV), 0);
        assert_eq!(reads[CONV].mine.as_deref(), Some("01B"));
        assert!(!apply_read(&mut reads, CONV, ME, "01A", ME), "markers never go back");
        // The peer's read is the "Seen" marker, and leaves the count alone.
        live_message(&mut reads, CONV, "01C", true, true, false, false);
        assert!(apply_read(&mut reads, CONV, PEER, "01C", ME));
        assert_eq!(reads[CONV].peer.as_deref(), Some("01C"));
        assert_eq!(unread_in(&reads, CONV), 1);
        assert!(!apply_read(&mut reads, CONV, PEER, "01B", ME));
        assert_eq!(reads[CONV].peer.as_deref(), Some("01C"));
    }

    #[test]
    fn read_markers_go_out_for_new_messages_from_others_once() {
        let mut reads = Reads::new();
        // Empty and own-only conversations: nothing to mark.
        assert_eq!(read_to_send(&reads, CONV, "01A", None), None);
        // The marker is the newest message, even when it is our own.
        assert_eq!(read_to_send(&reads, CONV, "01C", Some("01B")).as_deref(), Some("01C"));
        live_message(&mut reads, CONV, "01B", true, true, false, false);
        assert!(mark_read(&mut reads, CONV, "01C"));
        assert_eq!(unread_in(&reads, CONV), 0);
        assert_eq!(read_to_send(&reads, CONV, "01C", Some("01B")), None, "sent already");
        assert_eq!(read_to_send(&reads, CONV, "01D", Some("01B")), None, "only an own message is newer");
        assert_eq!(read_to_send(&reads, CONV, "01E", Some("01E")).as_deref(), Some("01E"));
        // A marker from another tab counts as sent.
        apply_read(&mut reads, CONV, ME, "01E", ME);
        assert_eq!(read_to_send(&reads, CONV, "01E", Some("01E")), None);
        assert!(!mark_read(&mut reads, CONV, "01E"));
        assert!(!clear_unread(&mut reads, CONV));
        assert!(!clear_unread(&mut reads, "dm:me:nobody"));
    }

    #[test]
    fn badges_labels_and_title() {
        assert_eq!(unread_badge(3), "3");
        assert_eq!(unread_badge(99), "99");
        assert_eq!(unread_badge(100), "99+");
        assert_eq!(unread_label(1), "1 unread message");
        assert_eq!(unread_label(3), "3 unread messages");
        assert_eq!(unread_label(100), "99+ unread messages");
        assert_eq!(page_title(0), "Chat");
        assert_eq!(page_title(2), "(2) Chat");
        assert_eq!(page_title(250), "(99+) Chat");
    }

    #[test]
    fn seen_is_under_the_newest_own_message_the_peer_reached() {
        assert_eq!(seen_message(Some("01B"), Some("01B")), Some("01B"));
        assert_eq!(seen_message(Some("01B"), Some("01C")), Some("01B"));
        assert_eq!(seen_message(Some("01B"), Some("01A")), None);
        assert_eq!(seen_message(Some("01B"), None), None);
        assert_eq!(seen_message(None, Some("01C")), None);

        let mut t = Timeline::new(PEER);
        assert_eq!(
            (t.newest_id(), t.newest_incoming_id(ME), t.newest_own_id(ME), t.conversation_id()),
            (None, None, None, None)
        );
        t.merge_latest(
            vec![msg("01A", PEER, "a", None), msg("01B", ME, "b", None), msg("01C", PEER, "c", None)],
            false,
        );
        t.add_outgoing(out("c1", "pending"));
        assert_eq!(t.newest_id(), Some("01C"));
        assert_eq!(t.newest_incoming_id(ME), Some("01C"));
        assert_eq!(t.newest_own_id(ME), Some("01B"));
        assert_eq!(t.conversation_id(), Some(CONV));
    }

    #[test]
    fn typing_shows_until_it_expires_or_a_message_arrives() {
        let mut t = Typing::default();
        assert!(t.typed(CONV, PEER, 1_000.0, 6_000.0));
        assert_eq!(t.typers(CONV), [PEER]);
        // A repeat extends the time without changing what is shown.
        assert!(!t.typed(CONV, PEER, 4_000.0, 6_000.0));
        assert!(!t.expire(7_000.0), "the repeat keeps it until 10 s");
        assert!(t.expire(10_000.0));
        assert!(t.typers(CONV).is_empty());
        assert!(!t.expire(20_000.0));
        // A message from the typer ends it at once; others keep theirs.
        t.typed(CONV, PEER, 0.0, 6_000.0);
        t.typed(CONV, "zed", 0.0, 6_000.0);
        t.typed("dm:me:zed", "zed", 0.0, 6_000.0);
        assert!(t.stopped(CONV, PEER));
        assert!(!t.stopped(CONV, PEER));
        assert!(!t.stopped("dm:none", PEER));
        assert_eq!(t.typers(CONV), ["zed"]);
        assert_eq!(t.typers("dm:me:zed"), ["zed"]);
        assert_eq!(t, {
            let mut u = Typing::default();
            u.typed(CONV, "zed", 0.0, 6_000.0);
            u.typed("dm:me:zed", "zed", 0.0, 6_000.0);
            u
        });
        // An old timer firing late does not cut a newer repeat short.
        let mut t = Typing::default();
        t.typed(CONV, PEER, 0.0, 6_000.0);
        t.typed(CONV, PEER, 3_000.0, 6_000.0);
        assert!(!t.expire(6_000.0));
        assert!(t.expire(9_000.0));
    }

    #[test]
    fn typing_text_names_first_names() {
        assert_eq!(typing_text(&[]), None);
        assert_eq!(typing_text(&["Ada Lovelace".into()]).as_deref(), Some("Ada is typing…"));
        assert_eq!(typing_text(&["  ".into()]).as_deref(), Some("Someone is typing…"));
        assert_eq!(typing_text(&["Ada L".into(), "Bob".into()]).as_deref(), Some("Ada and Bob are typing…"));
        assert_eq!(typing_text(&["a".into(), "b".into(), "c".into()]).as_deref(), Some("3 people are typing…"));
    }

    #[test]
    fn typing_frames_are_paced_per_conversation() {
        let mut p = TypingPace::default();
        assert!(p.due(CONV, 0.0, 3_000.0));
        p.sent(CONV, 0.0);
        assert!(!p.due(CONV, 2_999.0, 3_000.0));
        assert!(p.due("dm:me:zed", 10.0, 3_000.0));
        assert!(p.due(CONV, 3_000.0, 3_000.0));
        p.sent(CONV, 3_000.0);
        p.reset(CONV);
        assert!(p.due(CONV, 3_001.0, 3_000.0), "a sent message starts over");
    }
}

//! The chat page: conversations (or people search results) on the left,
//! the open conversation on the right (`/chat` has none open,
//! `/chat/:peer_id` opens one). A conversation is keyed by its "target":
//! the other member's user id for a direct chat, or the group's id
//! (`grp:…`) for a group, so `/chat/grp:…` opens a group and every map
//! below holds both kinds.
//!
//! State lives in one `Copy` handle, [`Chat`], provided as context: the
//! conversation list (paged, most recent first), the people the page knows
//! (with presence), a [`Timeline`] per visited conversation (so switching
//! back is instant and pending messages of a conversation survive leaving
//! it), read state (unread counts, mentions, read markers) and who is typing, by
//! conversation id, and the socket. The page tells the server whom it
//! shows (`watch`) and hears presence and profile changes for those only.
//! It tells the server how far the user has read the conversation they
//! look at (`read`) and that they type (`typing`), and hears the same of
//! the others.
//! The pure merge rules are in [`state`]; this module wires them to the
//! server functions, the socket and timers.
//!
//! Everything is loaded on the client after hydration: the server renders
//! the skeleton the client starts from, so hydration always matches, and the
//! live state (socket, pending sends) exists only in the browser anyway.

mod composer;
mod conversation;
mod groups;
mod message;
pub mod rich_text;
mod search;
mod sidebar;
pub mod socket;
pub mod state;

use std::{collections::HashMap, time::Duration};

use leptos::{prelude::*, task::spawn_local};
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

pub use socket::{ChatSocket, SocketStatus};
use state::{ConversationEntry, Inserted, Outgoing, Reads, Timeline, Typing, TypingPace};

use crate::{
    api::{
        AppError,
        chat::{conversation, get_contact, get_group, list_conversations, search_users, send_message},
        dto::{ChatMessage, Contact, ConversationPage, Group, is_group_id},
    },
    app::Toasts,
    protocol::{ClientEvent, ErrorCode, MAX_WATCHED, ServerEvent, TYPING_EVERY_MS, TYPING_SHOWN_MS},
};

/// Messages per history page.
pub const PAGE_SIZE: u32 = 50;
/// A sent frame without an ack after this long is shown as failed.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(8);
/// At most one `watch` frame per this long: changes in between (a list
/// page, search results, opening a conversation) go out together, as the
/// latest set, so a user stays far below the server's rate (240 a minute
/// by default, all tabs together).
pub const WATCH_PACE: Duration = Duration::from_millis(500);
/// Search boxes (people, messages, a group's people picker) search this
/// long after the last keystroke.
pub const SEARCH_DEBOUNCE: Duration = Duration::from_millis(250);
/// When a `watch` was rate limited without saying for how long.
const WATCH_RETRY_DEFAULT_SECS: u64 = 10;

/// An image picked in the composer. Only the browser has files; on the
/// server the type exists so signatures are the same, but is never built.
#[cfg(feature = "hydrate")]
pub type ImageFile = web_sys::File;
#[cfg(not(feature = "hydrate"))]
pub type ImageFile = ();

/// Arena storage for values that may hold browser objects (not `Send`):
/// thread-local in the browser. On the server such values are never
/// created, and a thread-local value there would panic when a request's
/// owner is dropped on another worker thread, so it is plain sync storage.
#[cfg(feature = "hydrate")]
pub type BrowserStorage = LocalStorage;
#[cfg(not(feature = "hydrate"))]
pub type BrowserStorage = SyncStorage;

/// The chat page's state and actions. `Copy`: every field is an arena handle.
#[derive(Clone, Copy)]
pub struct Chat {
    /// The open conversation's target (peer or group id), from the route.
    pub peer: Memo<Option<String>>,
    /// The conversation list, newest first; `None` until the first page.
    pub conversations: RwSignal<Option<Vec<ConversationEntry>>>,
    /// Where the next (older) page of conversations starts; `None` when
    /// every conversation is loaded.
    pub conversations_cursor: RwSignal<Option<String>>,
    pub conversations_error: RwSignal<Option<String>>,
    /// Everyone the page knows about (conversation peers, search results,
    /// the open conversation's peer), with presence, by id.
    pub people: RwSignal<HashMap<String, Contact>>,
    /// Peers the server said do not exist (a stale or mistyped URL).
    pub unknown_people: RwSignal<Vec<String>>,
    /// The groups the page knows of (names, members, whether the user is
    /// still in them), by id.
    pub groups: RwSignal<state::Groups>,
    /// The search box's results; `None` while the box is empty.
    pub search: RwSignal<Option<SearchResults>>,
    /// A message to show once its conversation is open (a message search
    /// result was picked): (peer id, message id). The conversation view
    /// pages history back until it has the message, scrolls to it and
    /// highlights it, then clears this.
    pub jump: RwSignal<Option<(String, String)>>,
    pub timelines: RwSignal<HashMap<String, Timeline>>,
    /// Unread counts and read markers, by conversation id.
    pub reads: RwSignal<Reads>,
    /// Who is typing where, by conversation id.
    pub typing: RwSignal<Typing>,
    /// When the user's own `typing` frames last went out.
    typing_pace: StoredValue<TypingPace>,
    /// Whether the tab is visible (`document.visibilityState`): messages
    /// that arrive while it is hidden are unread even in the open
    /// conversation, and nothing is marked read until the user looks.
    pub visible: RwSignal<bool>,
    /// The signed-in user's id, from the socket's `Hello`.
    pub me: RwSignal<Option<String>>,
    /// The signed-in user's full name, from the same `Hello`: what
    /// `@mentions` of them match.
    pub me_name: RwSignal<Option<String>>,
    /// Reactions under the messages held, by message id.
    pub reactions: RwSignal<state::ReactionMap>,
    /// The message the composer's next send answers ("Reply"), if any.
    pub replying: RwSignal<Option<String>>,
    pub socket: ChatSocket,
    /// Images of messages not uploaded yet, by `client_msg_id`, kept for
    /// retries.
    files: StoredValue<HashMap<String, ImageFile>, BrowserStorage>,
    /// Unsent composer text per peer, so switching conversations keeps it.
    pub drafts: StoredValue<HashMap<String, String>>,
    /// `Hello`s received; every one after the first is a reconnect. A
    /// signal: the watch set is sent again after each. A refused
    /// connection counts as one too: the tab was not live meanwhile.
    hellos: RwSignal<u32>,
    /// Whom the page shows: what the server should be watching.
    watched: Memo<Vec<String>>,
    /// The watch set last sent on the current connection.
    watch_sent: StoredValue<Option<Vec<String>>>,
    watch_pace: StoredValue<WatchPace>,
    /// The app's toasts (absent only if the shell does not provide them).
    toasts: Option<Toasts>,
}

/// When the next `watch` frame may go out (`Date.now()` milliseconds).
#[derive(Clone, Copy, Debug, Default)]
struct WatchPace {
    last_sent: f64,
    /// After a rate-limit error: not before this.
    not_before: f64,
    /// A flush is scheduled; it sends whatever the set is by then.
    scheduled: bool,
}

impl WatchPace {
    fn next_at(&self) -> f64 {
        (self.last_sent + WATCH_PACE.as_millis() as f64).max(self.not_before)
    }
}

/// People matching the search box, a page at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchResults {
    pub query: String,
    /// Ids in the server's (alphabetical) order; details are in `people`.
    pub ids: Vec<String>,
    pub next_cursor: Option<String>,
    pub loading: bool,
    pub error: Option<String>,
}

/// The chat state of the current page.
pub fn use_chat() -> Chat {
    expect_context::<Chat>()
}

#[component]
pub fn ChatPage() -> impl IntoView {
    let params = use_params_map();
    let peer = Memo::new(move |_| params.with(|p| p.get("peer_id")).filter(|id| !id.is_empty()));

    // The socket's callback needs the `Chat` that contains the socket: it is
    // handed the handle through this slot once both exist.
    let slot: StoredValue<Option<Chat>> = StoredValue::new(None);
    let socket = ChatSocket::connect(move |event| {
        if let Some(chat) = slot.try_get_value().flatten() {
            chat.on_server_event(event);
        }
    });
    // Tell the server whom the page shows, after every `Hello` and whenever
    // that changes; it answers with their presence and keeps it current.
    let conversations: RwSignal<Option<Vec<ConversationEntry>>> = RwSignal::new(None);
    let search: RwSignal<Option<SearchResults>> = RwSignal::new(None);
    let watched = Memo::new(move |_| {
        let open = peer.get();
        conversations.with(|cs| {
            search.with(|s| {
                // Presence is about people: group targets are left out.
                let listed = cs.iter().flatten().map(|e| e.peer_id.as_str()).filter(|id| !is_group_id(id));
                let found = s.iter().flat_map(|s| s.ids.iter().map(String::as_str));
                let open = open.as_deref().filter(|id| !is_group_id(id));
                state::watch_set(open, listed, found, MAX_WATCHED)
            })
        })
    });
    let chat = Chat {
        peer,
        conversations,
        conversations_cursor: RwSignal::new(None),
        conversations_error: RwSignal::new(None),
        people: RwSignal::new(HashMap::new()),
        unknown_people: RwSignal::new(Vec::new()),
        groups: RwSignal::new(HashMap::new()),
        search,
        jump: RwSignal::new(None),
        timelines: RwSignal::new(HashMap::new()),
        reads: RwSignal::new(HashMap::new()),
        typing: RwSignal::new(Typing::default()),
        typing_pace: StoredValue::new(TypingPace::default()),
        visible: RwSignal::new(true),
        me: RwSignal::new(None),
        me_name: RwSignal::new(None),
        reactions: RwSignal::new(HashMap::new()),
        replying: RwSignal::new(None),
        socket,
        files: StoredValue::new_with_storage(HashMap::new()),
        drafts: StoredValue::new(HashMap::new()),
        hellos: RwSignal::new(0),
        watched,
        watch_sent: StoredValue::new(None),
        watch_pace: StoredValue::new(WatchPace::default()),
        toasts: use_context::<Toasts>(),
    };
    slot.set_value(Some(chat));
    provide_context(chat);

    // Effects run only in the browser, after hydration.
    Effect::new(move |_| chat.load_conversations(None));
    Effect::new(move |_| {
        if let Some(p) = peer.get() {
            // A reply belongs to the conversation it was started in.
            chat.replying.set(None);
            chat.ensure_person(&p);
            // Usually a no-op (a conversation opened before): only a real
            // change notifies.
            chat.timelines.maybe_update(|m| state::ensure_timeline(m, &p));
            chat.load_latest(p, false);
        }
    });
    track_visibility(chat.visible);

    // The open conversation's newest messages, once its history is in:
    // (conversation id, newest message, newest message from the peer).
    let open_newest = Memo::new(move |_| {
        let p = peer.get()?;
        let me = chat.me.get()?;
        chat.timelines.with(|m| {
            let t = m.get(&p).filter(|t| t.loaded)?;
            Some((
                t.conversation_id()?.to_string(),
                t.newest_id()?.to_string(),
                t.newest_incoming_id(&me).map(str::to_string),
            ))
        })
    });
    // While the user looks at a conversation (open, tab visible): no badge,
    // and the server hears how far they have read whenever a message from
    // the peer is newer than the last marker. Runs again on every new
    // message there, on the tab coming back, and after a reconnect (a
    // marker that could not go out then goes now).
    Effect::new(move |_| {
        chat.hellos.track();
        if !chat.visible.get() {
            return;
        }
        let open = peer.get().and_then(|p| chat.conversation_with(&p));
        if let Some(conversation_id) = open {
            chat.reads.maybe_update(|r| state::clear_unread(r, &conversation_id));
        }
        if let Some((conversation_id, newest, newest_incoming)) = open_newest.get() {
            chat.mark_read(conversation_id, &newest, newest_incoming.as_deref());
        }
    });
    let title = Memo::new(move |_| state::page_title(chat.reads.with(state::unread_total)));

    Effect::new(move |_| {
        watched.track();
        chat.hellos.track();
        chat.flush_watch();
    });

    let pane = move || match peer.get() {
        Some(p) => view! { <conversation::Conversation peer=p /> }.into_any(),
        None => view! { <NoChatSelected /> }.into_any(),
    };

    view! {
        <Title text=move || title.get() />
        // Fills the viewport below the navbar (a DaisyUI `navbar`: 4rem + its
        // 1px border); the panes scroll inside, the page itself does not.
        <div
            class="flex h-[calc(100dvh-4rem-1px)] min-h-0 w-full flex-col"
            data-testid="chat-page"
            data-socket=move || match socket.status().get() {
                SocketStatus::Connecting => "connecting",
                SocketStatus::Open => "open",
                SocketStatus::Reconnecting => "reconnecting",
                SocketStatus::Refused => "refused",
            }
        >
            <ConnectionBanners />
            <div class="flex min-h-0 flex-1">
                <sidebar::Sidebar />
                <section
                    class=move || {
                        if peer.with(Option::is_some) {
                            "flex min-h-0 min-w-0 flex-1 flex-col"
                        } else {
                            "hidden min-h-0 min-w-0 flex-1 flex-col md:flex"
                        }
                    }
                    aria-label="Conversation"
                >
                    {pane}
                </section>
            </div>
        </div>
    }
}

/// The placeholder of `/chat`.
#[component]
fn NoChatSelected() -> impl IntoView {
    view! {
        <div class="flex flex-1 flex-col items-center justify-center gap-2 p-8 text-center text-base-content/70">
            <svg xmlns="http://www.w3.org/2000/svg" class="size-12" fill="none" viewBox="0 0 24 24" stroke="currentColor" stroke-width="1.5" aria-hidden="true">
                <path stroke-linecap="round" stroke-linejoin="round" d="M8 10h.01M12 10h.01M16 10h.01M21 12c0 4.418-4.03 8-9 8a9.77 9.77 0 0 1-4-.8L3 20l1.3-3.9A7.6 7.6 0 0 1 3 12c0-4.418 4.03-8 9-8s9 3.582 9 8Z" />
            </svg>
            <h2 class="text-lg font-semibold">"No chat selected"</h2>
            <p class="text-sm">"Pick a contact to start chatting."</p>
        </div>
    }
}

/// "Reconnecting…" while the socket is down, and "new version — reload"
/// when the server speaks a newer protocol.
#[component]
fn ConnectionBanners() -> impl IntoView {
    let chat = use_chat();
    let status = chat.socket.status();
    let outdated = chat.socket.outdated();
    view! {
        <div role="status" aria-live="polite" data-testid="connection-status">
            <Show when=move || status.get() == SocketStatus::Reconnecting>
                <div class="alert alert-warning rounded-none py-1 text-sm" data-testid="reconnecting-banner">
                    <span class="loading loading-spinner loading-xs" aria-hidden="true"></span>
                    <span>"Reconnecting…"</span>
                </div>
            </Show>
        </div>
        <Show when=move || status.get() == SocketStatus::Refused>
            <div role="alert" class="alert alert-error rounded-none py-1 text-sm" data-testid="too-many-tabs-banner">
                <span>
                    "Charcha is open in too many tabs or windows, so this one is not connected. "
                    "Close one of the others, then retry."
                </span>
                <button type="button" class="btn btn-sm" on:click=move |_| chat.socket.retry()>
                    "Retry"
                </button>
            </div>
        </Show>
        <Show when=move || outdated.get()>
            <div role="alert" class="alert alert-info rounded-none py-1 text-sm" data-testid="outdated-banner">
                <span>"A new version of Charcha is available — reload to keep chatting."</span>
                <button type="button" class="btn btn-sm" on:click=move |_| reload_page()>
                    "Reload"
                </button>
            </div>
        </Show>
    }
}

fn reload_page() {
    #[cfg(feature = "hydrate")]
    {
        let _ = window().location().reload();
    }
}

/// Keeps `visible` equal to whether the tab is visible, from hydration on
/// (the server renders as if visible) until the page goes.
fn track_visibility(visible: RwSignal<bool>) {
    #[cfg(feature = "hydrate")]
    {
        let hidden = || document().hidden();
        Effect::new(move |_| visible.set(!hidden()));
        // `visibilitychange` is fired at the document and bubbles to the window.
        let listener = window_event_listener_untyped("visibilitychange", move |_| {
            visible.try_set(!hidden());
        });
        on_cleanup(move || listener.remove());
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = visible;
    }
}

impl Chat {
    /// Shows an error to the user (toast) and logs it.
    pub fn notify_error(self, message: impl Into<String>) {
        let message = message.into();
        leptos::logging::warn!("chat: {message}");
        if let Some(toasts) = self.toasts {
            toasts.error(message);
        }
    }

    /// Sends the current watch set if the server does not have it yet, at
    /// most once per [`WATCH_PACE`] (and not before a rate limit's wait is
    /// over): a change within that time schedules one flush, which sends
    /// the set as it is by then. Also called by that flush's timer, after
    /// the page may be gone (hence the `try_`s).
    fn flush_watch(self) {
        if self.hellos.try_get_untracked().unwrap_or(0) == 0 {
            return;
        }
        let Some(ids) = self.watched.try_get_untracked() else { return };
        if self.watch_sent.try_with_value(|w| w.as_ref() == Some(&ids)).unwrap_or(true) {
            return;
        }
        let Some(pace) = self.watch_pace.try_get_value() else { return };
        if pace.scheduled {
            return;
        }
        let now = now_ms();
        let wait = pace.next_at() - now;
        if wait > 0.0 {
            self.watch_pace.update_value(|p| p.scheduled = true);
            set_timeout(
                move || {
                    if self.watch_pace.try_update_value(|p| p.scheduled = false).is_some() {
                        self.flush_watch();
                    }
                },
                Duration::from_millis(wait.ceil() as u64),
            );
            return;
        }
        if self.socket.send(&ClientEvent::Watch { user_ids: ids.clone() }) {
            self.watch_sent.set_value(Some(ids));
            self.watch_pace.update_value(|p| p.last_sent = now);
        }
    }

    /// The server ignored a `watch` (over its rate): send the latest set
    /// again once `secs` have passed. Quietly: presence just lags a little.
    fn retry_watch_after(self, secs: u64) {
        // Whatever the server holds now, it is not what we last sent.
        self.watch_sent.set_value(None);
        let not_before = now_ms() + secs.max(1) as f64 * 1000.0;
        self.watch_pace.update_value(|p| p.not_before = p.not_before.max(not_before));
        self.flush_watch();
    }

    /// The id of the conversation with `peer` (reactive; `None` until the
    /// socket's `Hello` says who we are).
    pub fn conversation_with(self, peer: &str) -> Option<String> {
        self.me.with(|me| me.as_deref().map(|me| state::conversation_of(me, peer)))
    }

    /// [`Chat::conversation_with`], read once.
    fn conversation_with_untracked(self, peer: &str) -> Option<String> {
        self.me.try_with_untracked(|me| me.as_deref().map(|me| state::conversation_of(me, peer))).flatten()
    }

    /// Whether the user is looking at `conversation_id` right now: it is
    /// open and the tab is visible. Read once, for frame handlers.
    fn on_screen(self, conversation_id: &str) -> bool {
        let open = self.peer.try_get_untracked().flatten().and_then(|p| self.conversation_with_untracked(&p));
        open.as_deref() == Some(conversation_id) && self.visible.try_get_untracked().unwrap_or(false)
    }

    /// Tells the server the user has read `conversation_id` up to `newest`,
    /// if a message from the peer (`newest_incoming`) is newer than the last
    /// marker; its badge goes with it. A marker the socket could not take
    /// is tried again on the next change (a reconnect included).
    fn mark_read(self, conversation_id: String, newest: &str, newest_incoming: Option<&str>) {
        let Some(Some(message_id)) =
            self.reads.try_with_untracked(|r| state::read_to_send(r, &conversation_id, newest, newest_incoming))
        else {
            return;
        };
        let frame = ClientEvent::Read { conversation_id: conversation_id.clone(), message_id: message_id.clone() };
        if self.socket.send(&frame) {
            self.reads.maybe_update(|r| state::mark_read(r, &conversation_id, &message_id));
        }
    }

    /// The user typed in the composer of the conversation with `peer`:
    /// tells the others, at most every [`TYPING_EVERY_MS`].
    pub fn user_typed(self, peer: &str) {
        let Some(conversation_id) = self.conversation_with_untracked(peer) else { return };
        let now = now_ms();
        if !self.typing_pace.try_with_value(|p| p.due(&conversation_id, now, TYPING_EVERY_MS as f64)).unwrap_or(false) {
            return;
        }
        if self.socket.send(&ClientEvent::Typing { conversation_id: conversation_id.clone() }) {
            self.typing_pace.update_value(|p| p.sent(&conversation_id, now));
        }
    }

    /// `user_id` is typing in `conversation_id`: shown for
    /// [`TYPING_SHOWN_MS`] unless repeated. Each frame schedules one check
    /// for when it runs out, which drops whoever has expired by then (a
    /// repeat meanwhile keeps its typer): no timer outlives the last frame
    /// by more than that.
    fn on_typing(self, conversation_id: &str, user_id: &str) {
        if self.me.try_with_untracked(|me| me.as_deref() == Some(user_id)).unwrap_or(true) {
            return;
        }
        let now = now_ms();
        self.typing.maybe_update(|t| t.typed(conversation_id, user_id, now, TYPING_SHOWN_MS as f64));
        set_timeout(
            move || {
                let now = now_ms();
                self.typing.try_maybe_update(|t| (t.expire(now), ()));
            },
            // A little after the expiry, so it has passed by the clock too.
            Duration::from_millis(TYPING_SHOWN_MS + 50),
        );
    }

    /// A person by id (reactive).
    pub fn contact(self, id: &str) -> Option<Contact> {
        self.people.with(|p| p.get(id).cloned())
    }

    /// A person by id, read once (for values fixed at render time).
    pub fn contact_untracked(self, id: &str) -> Option<Contact> {
        self.people.try_with_untracked(|p| p.get(id).cloned()).flatten()
    }

    fn learn_people(self, contacts: Vec<Contact>, keep_presence: bool) {
        self.people.maybe_update(|p| {
            let mut changed = false;
            for c in contacts {
                changed |= state::upsert_person(p, c, keep_presence);
            }
            changed
        });
    }

    /// Fetches a person the page does not know yet (a conversation opened
    /// by URL, or a message from someone new).
    pub fn ensure_person(self, id: &str) {
        if is_group_id(id) {
            return self.ensure_group(id);
        }
        let known = self.people.try_with_untracked(|p| p.contains_key(id)).unwrap_or(true);
        let unknown = self.unknown_people.try_with_untracked(|u| u.iter().any(|x| x == id)).unwrap_or(false);
        if known || unknown {
            return;
        }
        let id = id.to_string();
        spawn_local(async move {
            match get_contact(id.clone()).await {
                Ok(c) => self.learn_people(vec![c], false),
                Err(e) if e.status == 404 || e.status == 400 => self.unknown_people.update(|u| u.push(id)),
                Err(e) => leptos::logging::warn!("chat: could not load user {id}: {}", e.message),
            }
        });
    }

    /// Fetches a group the page knows nothing of yet (opened by URL, or a
    /// message in it before the list said so). Once: a placeholder marks
    /// it asked for. The server answering "no such group" for this user
    /// means they are not (or no longer) a member.
    fn ensure_group(self, id: &str) {
        let asked = self.groups.try_maybe_update(|g| {
            let new = !g.contains_key(id);
            if new {
                g.insert(id.to_string(), state::GroupInfo::default());
            }
            (new, new)
        });
        if asked != Some(true) {
            return;
        }
        let id = id.to_string();
        spawn_local(async move {
            match get_group(id.clone()).await {
                Ok(group) => self.on_group(group),
                Err(e) if matches!(e.status, 400 | 403 | 404) => {
                    self.groups.maybe_update(|g| state::group_removed(g, &id));
                }
                Err(e) => leptos::logging::warn!("chat: could not load group {id}: {}", e.message),
            }
        });
    }

    /// A group's new state (created, renamed, members changed; also what
    /// this page's own change answered): its members become known people,
    /// and a group new to the list shows there at once, before its first
    /// message.
    pub fn on_group(self, group: Group) {
        let contacts = group.members.iter().map(|m| m.contact.clone()).collect();
        self.learn_people(contacts, true);
        self.groups.maybe_update(|g| state::apply_group(g, group));
    }

    /// The user is no longer a member of `group_id` (removed, or left in
    /// any tab): it leaves the list and the badge count; an open view says
    /// so and cannot send. A toast tells the user, once.
    pub fn on_group_removed(self, group_id: &str) {
        let news = self.groups.try_maybe_update(|g| {
            let news = state::group_removed(g, group_id);
            (news, news)
        });
        self.conversations.maybe_update(|list| list.as_mut().is_some_and(|l| state::remove_conversation(l, group_id)));
        self.reads.maybe_update(|r| r.remove(group_id).is_some());
        if news == Some(true) {
            let name = self.groups.with_untracked(|g| g.get(group_id).map(|g| g.name.clone())).unwrap_or_default();
            if let Some(toasts) = self.toasts {
                toasts.info(format!("You are no longer a member of “{name}”."));
            }
        }
    }

    /// Loads a page of the conversation list: the first (`None`), or the
    /// one at `cursor`. The first page also refreshes what is listed
    /// (after a reconnect).
    pub fn load_conversations(self, cursor: Option<String>) {
        let first = cursor.is_none();
        spawn_local(async move {
            match list_conversations(cursor, None).await {
                Ok(page) => self.apply_conversations(page, first),
                Err(e) => self.conversations_error.set(Some(e.message)),
            }
        });
    }

    fn apply_conversations(self, page: ConversationPage, first: bool) {
        let ConversationPage { conversations, next_cursor, new_groups } = page;
        // Groups nobody has written in yet: listed by when they were made.
        for group in new_groups {
            self.on_group(group);
        }
        let mut entries = Vec::with_capacity(conversations.len());
        let mut peers = Vec::with_capacity(conversations.len());
        let mut counts = Vec::with_capacity(conversations.len());
        let mut groups = Vec::new();
        for c in conversations {
            let target = match (c.peer, c.group) {
                (Some(peer), _) => {
                    let id = peer.id.clone();
                    peers.push(peer);
                    id
                }
                (None, Some(group)) => {
                    // A group's preview names the sender of its newest message.
                    self.ensure_person(&c.last_message.sender_id);
                    let id = group.id.clone();
                    groups.push(group);
                    id
                }
                (None, None) => continue,
            };
            let shown = self.on_screen(&c.conversation_id);
            counts.push((c.conversation_id, c.last_message.id.clone(), c.unread, c.mentioned, c.peer_read, shown));
            entries.push(ConversationEntry { peer_id: target, last: c.last_message });
        }
        self.learn_people(peers, false);
        self.groups.maybe_update(|known| groups.iter().fold(false, |ch, g| state::apply_group_summary(known, g) | ch));
        self.reads.maybe_update(|r| {
            let mut changed = false;
            for (conversation_id, last_id, unread, mentioned, peer_read, shown) in &counts {
                changed |= state::apply_summary(
                    r,
                    conversation_id,
                    last_id,
                    *unread,
                    *mentioned,
                    peer_read.as_deref(),
                    *shown,
                );
            }
            changed
        });
        self.conversations.update(|list| {
            let list = list.get_or_insert_with(Vec::new);
            state::merge_conversations(list, entries);
        });
        // A refreshed first page keeps a cursor already further down.
        if !first || self.conversations_cursor.with_untracked(Option::is_none) {
            self.conversations_cursor.set(next_cursor);
        }
        self.conversations_error.set(None);
    }

    /// Runs a people search for `query` (a new one replaces the old), or
    /// loads its next page with `more`.
    pub fn search_people(self, query: String, more: bool) {
        let query = query.trim().to_string();
        if query.is_empty() {
            self.search.set(None);
            return;
        }
        let cursor = if more {
            let next = self
                .search
                .with_untracked(|s| s.as_ref().filter(|s| s.query == query).and_then(|s| s.next_cursor.clone()));
            match next {
                Some(c) => Some(c),
                None => return,
            }
        } else {
            None
        };
        self.search.update(|s| {
            let s = s.get_or_insert_with(SearchResults::default);
            if s.query != query {
                *s = SearchResults { query: query.clone(), ..SearchResults::default() };
            }
            s.loading = true;
        });
        spawn_local(fetch_people(self, query, cursor, more));
    }

    /// Moves the conversation of `message` to the top of the list.
    fn bump(self, peer: &str, message: &ChatMessage) {
        self.conversations.maybe_update(|list| match list {
            Some(list) => state::bump_conversation(list, peer, message.clone()),
            None => false,
        });
        self.ensure_person(peer);
    }

    /// Fetches the newest page of a conversation and merges it; with
    /// `then_resend`, resends every still-pending message afterwards (after
    /// a reconnect, so those whose ack was lost are already confirmed by the
    /// page and are not sent twice).
    pub fn load_latest(self, peer: String, then_resend: bool) {
        spawn_local(async move {
            match conversation(peer.clone(), None, Some(PAGE_SIZE)).await {
                // Reopening a conversation usually brings nothing new.
                Ok(page) => {
                    // An empty conversation has nothing to note, nor to have read.
                    if let Some(newest) = page.messages.last() {
                        let (conversation_id, newest) = (newest.conversation_id.clone(), newest.id.clone());
                        self.reads.maybe_update(|r| {
                            let seen =
                                page.peer_read.as_deref().is_some_and(|p| state::peer_read(r, &conversation_id, "", p));
                            // Groups: every other member's marker ("Seen by N").
                            let members = page.read_markers.iter().fold(false, |ch, m| {
                                state::peer_read(r, &conversation_id, &m.user_id, &m.message_id) | ch
                            });
                            state::note_message(r, &conversation_id, &newest) || seen || members
                        });
                    }
                    let ids: Vec<String> = page.messages.iter().map(|m| m.id.clone()).collect();
                    self.reactions.maybe_update(|r| state::merge_reactions(r, &ids, page.reactions));
                    self.timelines.maybe_update(|m| {
                        let created = state::ensure_timeline(m, &peer);
                        let merged = state::timeline_mut(m, &peer).merge_latest(page.messages, page.has_more);
                        created || merged
                    })
                }
                Err(e) => self.timelines.maybe_update(|m| match m.get_mut(&peer) {
                    Some(t) => {
                        t.load_error = Some(e.message);
                        true
                    }
                    None => false,
                }),
            }
            if then_resend {
                self.resend_pending();
            }
        });
    }

    /// Fetches the page before the oldest message held. The caller applies
    /// it with [`Chat::apply_older`] so it can keep the scroll position.
    pub async fn fetch_older(self, peer: String) -> Result<Option<(Vec<ChatMessage>, bool)>, AppError> {
        let before = self
            .timelines
            .try_with_untracked(|m| m.get(&peer).and_then(|t| t.oldest_id().map(str::to_string)))
            .flatten();
        let Some(before) = before else { return Ok(None) };
        let page = conversation(peer, Some(before), Some(PAGE_SIZE)).await?;
        let ids: Vec<String> = page.messages.iter().map(|m| m.id.clone()).collect();
        self.reactions.maybe_update(|r| state::merge_reactions(r, &ids, page.reactions));
        Ok(Some((page.messages, page.has_more)))
    }

    pub fn apply_older(self, peer: &str, messages: Vec<ChatMessage>, has_more: bool) {
        self.timelines.maybe_update(|m| m.get_mut(peer).is_some_and(|t| t.prepend_older(messages, has_more)));
    }

    /// Sends a new message: shown at once as pending, then delivered.
    pub fn send(self, peer: String, text: String, image: Option<(ImageFile, String)>) {
        let client_msg_id = new_client_msg_id();
        let preview = image.as_ref().map(|(_, url)| url.clone());
        if let Some((file, _)) = image {
            let cid = client_msg_id.clone();
            self.files.update_value(|f| {
                f.insert(cid, file);
            });
        }
        let mut outgoing = Outgoing::new(client_msg_id.clone(), text, preview, now_rfc3339());
        outgoing.reply_to = self.replying.try_get_untracked().flatten();
        self.replying.set(None);
        self.timelines.update(|m| {
            state::timeline_mut(m, &peer).add_outgoing(outgoing);
        });
        // The peer's "typing" goes when the message arrives: the next
        // keystroke may say so again at once.
        if let Some(conversation_id) = self.conversation_with_untracked(&peer) {
            self.typing_pace.update_value(|p| p.reset(&conversation_id));
        }
        self.dispatch(peer, client_msg_id);
    }

    /// Retries a failed message with the same `client_msg_id`.
    pub fn retry(self, peer: String, client_msg_id: String) {
        self.dispatch(peer, client_msg_id);
    }

    /// One delivery attempt: upload the image if needed, write the frame to
    /// the socket, or — when the socket is down — use the HTTP send path.
    /// The ack timer marks the attempt failed if nothing confirms it.
    fn dispatch(self, peer: String, cid: String) {
        let Some(Some(mut out)) = self.timelines.try_maybe_update(|m| {
            let out = m.get_mut(&peer).and_then(|t| t.begin_attempt(&cid));
            (out.is_some(), out)
        }) else {
            return;
        };
        spawn_local(async move {
            if out.needs_upload() {
                match self.upload(&peer, &cid).await {
                    Ok(url) => {
                        let preview = self
                            .timelines
                            .try_update(|m| m.get_mut(&peer).and_then(|t| t.set_uploaded(&cid, url.clone())))
                            .flatten();
                        // The row now shows the uploaded image; the local copy can go.
                        if let Some(preview) = preview {
                            crate::app::blob_url::revoke(&preview);
                        }
                        self.files.update_value(|f| {
                            f.remove(&cid);
                        });
                        out.image = Some(url);
                    }
                    Err(e) => {
                        self.fail(&peer, &cid, Some(out.attempt), Some(e.message.clone()));
                        if !e.is_unreachable() {
                            self.notify_error(format!("Image not sent: {}", e.message));
                        }
                        return;
                    }
                }
            }
            self.start_ack_timer(peer.clone(), cid.clone(), out.attempt);
            // A group is addressed by its conversation id, a person by `to`.
            let (to, conversation_id) =
                if is_group_id(&peer) { (String::new(), Some(peer.clone())) } else { (peer.clone(), None) };
            let frame = ClientEvent::Send {
                client_msg_id: cid.clone(),
                to,
                conversation_id,
                text: out.text.clone(),
                image: out.image.clone(),
                reply_to: out.reply_to.clone(),
            };
            if self.socket.send(&frame) {
                return;
            }
            match send_message(peer.clone(), cid.clone(), out.text, out.image, out.reply_to).await {
                Ok(message) => self.on_ack(&cid, message),
                // Unreachable server: stay pending; a reconnect resends it,
                // or the ack timer fails it. Any answer, a 503 included, is
                // the server's word: fail now and say why.
                Err(e) if e.is_unreachable() => {}
                Err(e) => {
                    self.fail(&peer, &cid, Some(out.attempt), Some(e.message.clone()));
                    self.notify_error(not_sent(&e.message));
                }
            }
        });
    }

    fn start_ack_timer(self, peer: String, cid: String, attempt: u32) {
        set_timeout(move || self.fail(&peer, &cid, Some(attempt), None), ACK_TIMEOUT);
    }

    /// Marks a pending message failed. Notifies only if it was still
    /// pending: the ack timer usually fires after the ack and finds nothing.
    fn fail(self, peer: &str, cid: &str, attempt: Option<u32>, error: Option<String>) {
        self.timelines.maybe_update(|m| m.get_mut(peer).is_some_and(|t| t.fail(cid, attempt, error)));
    }

    /// The peer whose timeline holds the unconfirmed message `cid`.
    fn peer_of_outgoing(self, cid: &str) -> Option<String> {
        self.timelines
            .try_with_untracked(|m| m.iter().find(|(_, t)| t.outgoing(cid).is_some()).map(|(p, _)| p.clone()))
            .flatten()
    }

    fn on_ack(self, cid: &str, message: ChatMessage) {
        // Our own message: its conversation is the recipient's, unless the
        // pending copy says otherwise.
        let peer = self.peer_of_outgoing(cid).unwrap_or_else(|| message.recipient_id.clone());
        self.bump(&peer, &message);
        self.reads.maybe_update(|r| state::note_message(r, &message.conversation_id, &message.id));
        // Notifies unless nothing changed (the live copy came first and
        // already replaced the pending row).
        self.timelines.maybe_update(|m| m.get_mut(&peer).is_some_and(|t| t.ack(cid, message).changed()));
    }

    /// Resends every pending message of every conversation (same ids).
    fn resend_pending(self) {
        let pending: Vec<(String, String)> = self
            .timelines
            .try_with_untracked(|m| {
                m.iter().flat_map(|(p, t)| t.pending().into_iter().map(move |o| (p.clone(), o.client_msg_id))).collect()
            })
            .unwrap_or_default();
        for (peer, cid) in pending {
            self.dispatch(peer, cid);
        }
    }

    /// Applies one frame from the socket.
    fn on_server_event(self, event: ServerEvent) {
        match event {
            ServerEvent::Hello { user, .. } => {
                self.me.set(Some(user.id));
                self.me_name.maybe_update(|n| {
                    let changed = n.as_deref() != Some(user.full_name.as_str());
                    *n = Some(user.full_name);
                    changed
                });
                // A new connection watches nobody until told again.
                self.watch_sent.set_value(None);
                let n = self.hellos.try_update(|n| {
                    *n += 1;
                    *n
                });
                if n.unwrap_or(1) > 1 {
                    // A reconnect: catch up on what the blip may have hidden.
                    self.load_conversations(None);
                    match self.peer.try_get_untracked().flatten() {
                        Some(p) => self.load_latest(p, true),
                        None => self.resend_pending(),
                    }
                } else {
                    self.resend_pending();
                }
            }
            ServerEvent::Ack { client_msg_id, message } => self.on_ack(&client_msg_id, message),
            ServerEvent::Message { message } => self.on_message(message),
            ServerEvent::Presence { user_id, online } => {
                self.people.maybe_update(|p| state::apply_presence(p, &user_id, online));
            }
            ServerEvent::PresenceBatch { online, offline } => {
                self.people.maybe_update(|p| {
                    let mut changed = false;
                    for id in &online {
                        changed |= state::apply_presence(p, id, true);
                    }
                    for id in &offline {
                        changed |= state::apply_presence(p, id, false);
                    }
                    changed
                });
            }
            ServerEvent::Contact { contact } => self.learn_people(vec![contact], true),
            ServerEvent::Error { code, message, client_msg_id, retry_after } => {
                leptos::logging::warn!("chat server error {code:?}: {message}");
                match (client_msg_id, code) {
                    // About a send (rate limits included): fail that message.
                    (Some(cid), _) => {
                        if let Some(peer) = self.peer_of_outgoing(&cid) {
                            self.fail(&peer, &cid, None, Some(message.clone()));
                        }
                        self.notify_error(message);
                    }
                    // Instead of `hello`: the socket stops retrying and the
                    // page shows a banner (see `ConnectionBanners`). The
                    // `hello` after a retry then catches up like a reconnect.
                    (None, ErrorCode::TooManyConnections) => {
                        self.hellos.update(|n| *n = (*n).max(1));
                    }
                    // Only a `watch` is rate limited without a send's id.
                    (None, ErrorCode::RateLimited) => {
                        self.retry_watch_after(retry_after.unwrap_or(WATCH_RETRY_DEFAULT_SECS));
                    }
                    (None, _) => self.notify_error(format!("Chat error: {message}")),
                }
            }
            ServerEvent::Pong { .. } => {}
            ServerEvent::Read { conversation_id, user_id, message_id } => {
                let Some(me) = self.me.try_get_untracked().flatten() else { return };
                self.reads.maybe_update(|r| state::apply_read(r, &conversation_id, &user_id, &message_id, &me));
            }
            ServerEvent::Typing { conversation_id, user_id } => self.on_typing(&conversation_id, &user_id),
            // The answer to our own edit or delete carries its id; live
            // copies to everyone else do not: either way the later version
            // replaces the held one.
            ServerEvent::Updated { message, .. } => self.on_updated(message),
            ServerEvent::Reaction { message_id, user_id, emoji, on, .. } => {
                self.reactions.maybe_update(|r| state::apply_reaction(r, &message_id, &user_id, &emoji, on));
            }
            ServerEvent::Group { group } => self.on_group(group),
            ServerEvent::GroupRemoved { conversation_id } => self.on_group_removed(&conversation_id),
        }
    }

    /// Adds or removes our `emoji` under a message: shown at once, then
    /// sent; the server tells the others.
    pub fn react(self, message_id: String, emoji: String, on: bool) {
        let Some(me) = self.me.try_get_untracked().flatten() else { return };
        if !self.socket.send(&ClientEvent::React { message_id: message_id.clone(), emoji: emoji.clone(), on }) {
            self.notify_error("Not connected: the reaction was not sent. Try again once connected.");
            return;
        }
        self.reactions.maybe_update(|r| state::apply_reaction(r, &message_id, &me, &emoji, on));
    }

    /// An edited or deleted message: replaces the held copy (if this one is
    /// later) and, when it is the newest of its conversation, the preview.
    fn on_updated(self, message: ChatMessage) {
        let Some(me) = self.me.try_get_untracked().flatten() else { return };
        let peer = state::peer_of(&message, &me).to_string();
        self.conversations.maybe_update(|list| match list {
            Some(list) => list.iter().position(|e| e.peer_id == peer).is_some_and(|at| {
                message.id == list[at].last.id && state::bump_conversation(list, &peer, message.clone())
            }),
            None => false,
        });
        self.timelines.maybe_update(|m| m.get_mut(&peer).is_some_and(|t| t.insert(message).changed()));
    }

    /// Asks the server to replace the text of one of our messages; the
    /// `updated` answer (or an error toast) follows. Needs the socket: an
    /// edit made offline would be a surprise when it lands later.
    pub fn edit(self, message_id: String, text: String) {
        let frame = ClientEvent::Edit { client_msg_id: new_client_msg_id(), message_id, text };
        if !self.socket.send(&frame) {
            self.notify_error("Not connected: the message was not edited. Try again once connected.");
        }
    }

    /// Asks the server to delete one of our messages (a tombstone stays).
    pub fn delete(self, message_id: String) {
        let frame = ClientEvent::Delete { client_msg_id: new_client_msg_id(), message_id };
        if !self.socket.send(&frame) {
            self.notify_error("Not connected: the message was not deleted. Try again once connected.");
        }
    }

    /// A live message: merged into its conversation if we hold it; counted
    /// as unread unless the user is looking at that conversation (or it is
    /// our own), with the mention badge if it names the user. Its sender is
    /// no longer typing there.
    fn on_message(self, message: ChatMessage) {
        let Some(me) = self.me.try_get_untracked().flatten() else { return };
        let peer = state::peer_of(&message, &me).to_string();
        // A group message names its sender: they must be known.
        if is_group_id(&peer) {
            self.ensure_person(&message.sender_id);
        }
        let incoming = message.sender_id != me;
        let conversation_id = message.conversation_id.clone();
        let id = message.id.clone();
        let mentions_me = incoming
            && self
                .me_name
                .try_with_untracked(|n| n.as_deref().is_some_and(|n| rich_text::mentions(&message.text, n)))
                .unwrap_or(false);
        self.typing.maybe_update(|t| t.stopped(&conversation_id, &message.sender_id));
        self.bump(&peer, &message);
        let shown = self.on_screen(&conversation_id);
        // Kept for a browser notification (the timeline takes the message);
        // cloned only when one may be raised.
        let notified = {
            use crate::app::notify::{enabled, permission, should_notify};
            should_notify(enabled(), permission(), incoming, shown).then(|| message.clone())
        };
        // Notifies only if the timeline is held and changed: the echo of our
        // own message after its ack, or a repeat, changes nothing.
        let inserted = self
            .timelines
            .try_maybe_update(|m| match m.get_mut(&peer) {
                Some(t) => {
                    let inserted = t.insert(message);
                    (inserted.changed(), Some(inserted))
                }
                None => (false, None),
            })
            .flatten();
        // New unless the message was held already (`None`: the
        // conversation is not held, so it is new to us).
        let new = matches!(inserted, None | Some(Inserted::New));
        self.reads.maybe_update(|r| state::live_message(r, &conversation_id, &id, incoming, new, shown, mentions_me));
        if new && let Some(message) = notified {
            self.notify_message(message);
        }
    }

    /// A browser notification for `message`, titled with its sender's name
    /// (looked up first when this page does not know them).
    fn notify_message(self, message: ChatMessage) {
        let sender_id = message.sender_id.clone();
        let show = move |sender: &str| {
            let (title, body) = crate::app::notify::notification_text(sender, &message);
            crate::app::notify::show(&title, &body, &message.conversation_id);
        };
        match self.contact_untracked(&sender_id) {
            Some(c) => show(&c.full_name),
            None => spawn_local(async move {
                let name = get_contact(sender_id).await.map(|c| c.full_name).unwrap_or_else(|_| "New message".into());
                show(&name);
            }),
        }
    }

    /// Uploads the image kept for `cid`; returns its URL.
    #[cfg(feature = "hydrate")]
    async fn upload(self, peer: &str, cid: &str) -> Result<String, AppError> {
        let file = self.files.try_with_value(|f| f.get(cid).cloned()).flatten();
        let Some(file) = file else {
            return Err(AppError::bad_request("The image is no longer available; attach it again."));
        };
        upload_file(peer.to_string(), file).await
    }

    #[cfg(not(feature = "hydrate"))]
    async fn upload(self, _peer: &str, _cid: &str) -> Result<String, AppError> {
        Err(AppError::internal())
    }
}

/// Posts an image for a message to `peer` (multipart); returns its URL.
/// Behind a split point (feature `split`): the multipart upload code is
/// fetched the first time someone attaches an image.
#[cfg(feature = "hydrate")]
#[cfg_attr(feature = "split", leptos::lazy)]
async fn upload_file(peer: String, file: web_sys::File) -> Result<String, AppError> {
    use leptos::server_fn::codec::MultipartData;

    use crate::api::chat::upload_image;

    let form = web_sys::FormData::new().map_err(|_| AppError::internal())?;
    form.append_with_str("to", &peer).map_err(|_| AppError::internal())?;
    form.append_with_blob_and_filename("image", &file, &file.name()).map_err(|_| AppError::internal())?;
    upload_image(MultipartData::from(form)).await
}

/// Fetches one page of the people search for `query` into `chat.search`.
/// Behind a split point (feature `split`): fetched the first time someone
/// searches for people.
#[cfg_attr(feature = "split", leptos::lazy)]
async fn fetch_people(chat: Chat, query: String, cursor: Option<String>, more: bool) {
    let result = search_users(query.clone(), cursor, None).await;
    // Answers to a query the box no longer holds are dropped.
    if chat.search.with_untracked(|s| s.as_ref().map(|s| s.query != query).unwrap_or(true)) {
        return;
    }
    match result {
        Ok(page) => {
            let ids: Vec<String> = page.contacts.iter().map(|c| c.id.clone()).collect();
            chat.learn_people(page.contacts, false);
            chat.search.update(|s| {
                if let Some(s) = s {
                    if more {
                        s.ids.extend(ids.into_iter().filter(|id| !s.ids.contains(id)).collect::<Vec<_>>());
                    } else {
                        s.ids = ids;
                    }
                    s.next_cursor = page.next_cursor;
                    s.loading = false;
                    s.error = None;
                }
            });
        }
        Err(e) => chat.search.update(|s| {
            if let Some(s) = s {
                s.loading = false;
                s.error = Some(e.message);
            }
        }),
    }
}

/// A search box now holds `text`: `run(text)` once typing pauses for
/// [`SEARCH_DEBOUNCE`] (only if no keystroke came since: `typed` counts
/// them), or `clear()` at once when the box is blank.
pub fn debounce(typed: StoredValue<u64>, text: String, clear: impl FnOnce(), run: impl FnOnce(String) + 'static) {
    let n = typed.try_update_value(|n| {
        *n += 1;
        *n
    });
    if text.trim().is_empty() {
        clear();
        return;
    }
    set_timeout(
        move || {
            if typed.try_get_value() == n {
                run(text);
            }
        },
        SEARCH_DEBOUNCE,
    );
}

/// A button that shows and hides something (`open`), telling assistive
/// technology which (`aria-expanded`).
pub fn toggle_button(open: RwSignal<bool>, class: &'static str, label: &'static str) -> impl IntoView {
    view! {
        <button
            type="button"
            class=class
            aria-expanded=move || if open.get() { "true" } else { "false" }
            on:click=move |_| open.update(|o| *o = !*o)
        >
            {label}
        </button>
    }
}

/// The toast for a send the server refused: its reason, after "Message not
/// sent:" unless the reason already starts so (the 503 of an unavailable
/// message log does).
fn not_sent(reason: &str) -> String {
    const PREFIX: &str = "Message not sent";
    if reason.starts_with(PREFIX) { reason.to_string() } else { format!("{PREFIX}: {reason}") }
}

/// A fresh `client_msg_id`: a version-7 UUID, the send's time in
/// milliseconds followed by random bits (`crypto.getRandomValues`, else
/// `Math.random`). It only has to be unique among this user's sends; it
/// starts with the time so that sends made one after another sort one
/// after another. The embedded store's unique index on sends is keyed by
/// it first, and a batch of history then adds to that index's newest pages
/// instead of one random page per message (`randomUUID()`'s version 4
/// cost ~17 % of load (c)'s throughput: BENCHMARKS.md).
#[cfg(feature = "hydrate")]
pub fn new_client_msg_id() -> String {
    let crypto = window().crypto().ok();
    let mut bytes = [0u8; 16];
    let filled = crypto.as_ref().is_some_and(|c| c.get_random_values_with_u8_array(&mut bytes).is_ok());
    if !filled {
        for b in bytes.iter_mut() {
            *b = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    uuid_v7_from(now_ms() as u64, bytes)
}

#[cfg(not(feature = "hydrate"))]
pub fn new_client_msg_id() -> String {
    uuid_v7_from(0, std::array::from_fn(|i| i as u8))
}

/// Formats a version-7 UUID (RFC 9562): `unix_ms` in its first 48 bits,
/// then the version, the variant and the rest of `random`.
pub fn uuid_v7_from(unix_ms: u64, mut b: [u8; 16]) -> String {
    b[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// `Date.now()`: milliseconds since the epoch (0 on the server, which
/// never runs the timers that use it).
fn now_ms() -> f64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        0.0
    }
}

/// Now, RFC 3339 (UTC), for pending messages' clocks.
pub fn now_rfc3339() -> String {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::new_0().to_iso_string().into()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        String::new()
    }
}

/// `HH:MM` in the viewer's time zone for an RFC 3339 timestamp.
pub fn local_hhmm(rfc3339: &str) -> String {
    #[cfg(feature = "hydrate")]
    {
        let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(rfc3339));
        if d.get_time().is_nan() {
            return String::new();
        }
        format!("{:02}:{:02}", d.get_hours(), d.get_minutes())
    }
    #[cfg(not(feature = "hydrate"))]
    {
        rfc3339.get(11..16).unwrap_or_default().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape() {
        let id = uuid_v7_from(0x0193_a5b6_c7d8, [0xff; 16]);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[..13], "0193a5b6-c7d8", "the time comes first");
        assert_eq!(&id[14..15], "7");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn later_sends_sort_later() {
        // Whatever their random bits: the store's send index relies on it.
        let earlier = uuid_v7_from(1_765_000_000_000, [0xff; 16]);
        let later = uuid_v7_from(1_765_000_000_001, [0x00; 16]);
        assert!(earlier < later, "{earlier} < {later}");
    }

    #[test]
    fn not_sent_says_so_once() {
        assert_eq!(not_sent("No such user"), "Message not sent: No such user");
        let unavailable = "Message not sent: the message log is unavailable. Please retry.";
        assert_eq!(not_sent(unavailable), unavailable);
    }

    #[test]
    fn hhmm_on_server_slices_utc() {
        assert_eq!(local_hhmm("2024-05-06T07:08:09.000Z"), "07:08");
        assert_eq!(local_hhmm("bad"), "");
    }
}

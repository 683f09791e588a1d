//! The left pane: the conversation list (most recent first, with the last
//! message and its time, paged with "Load more") or, while the search box
//! has text, the people matching it on the server (while the "Search
//! messages" box has text, the messages found: see [`super::search`]). Presence dots, unread
//! and mention badges and a "typing…" hint on both. On small screens it is the whole page at
//! `/chat` and hidden while a conversation is open.
//!
//! Groups are listed with the direct chats (name, member count, the
//! sender's name in the preview); "New group" opens the dialog that
//! creates one (see [`super::groups`]).

use leptos::prelude::*;

use super::{
    Chat, debounce, groups, local_hhmm,
    search::{MessageSearch, MessageSearchBox, message_results},
    state, use_chat,
};
use crate::{
    api::dto::{ChatMessage, is_group_id},
    app::avatar::{Avatar as AppAvatar, AvatarSize},
};

#[component]
pub fn Sidebar() -> impl IntoView {
    let chat = use_chat();
    let query = RwSignal::new(String::new());
    // Bumped on each keystroke; a debounced search runs only if it is
    // still the latest when its timer fires.
    let typed = StoredValue::new(0u64);
    let on_input = move |ev| {
        let q = event_target_value(&ev);
        query.set(q.clone());
        debounce(typed, q, || chat.search_people(String::new(), false), move |q| chat.search_people(q, false));
    };
    let searching = move || !query.with(|q| q.trim().is_empty());
    let messages = MessageSearch::new();
    let new_group = RwSignal::new(false);

    view! {
        <aside
            class=move || {
                if chat.peer.with(Option::is_some) {
                    "hidden w-full min-h-0 flex-col border-base-300 bg-base-100 md:flex md:w-80 md:shrink-0 md:border-r"
                } else {
                    "flex w-full min-h-0 flex-col border-base-300 bg-base-100 md:w-80 md:shrink-0 md:border-r"
                }
            }
            aria-labelledby="chats-heading"
        >
            <div class="space-y-2 border-b border-base-300 p-3">
                <div class="flex items-center justify-between gap-2">
                    <h2 id="chats-heading" class="text-lg font-bold">"Chats"</h2>
                    <button type="button" class="btn btn-ghost btn-sm" on:click=move |_| new_group.set(true)>
                        "New group"
                    </button>
                </div>
                {move || new_group.get().then(|| view! {
                    <Suspense>{Suspend::new(groups::new_group_dialog(chat, new_group))}</Suspense>
                })}
                <label class="input input-sm w-full">
                    <svg class="size-4 opacity-60" xmlns="http://www.w3.org/2000/svg" fill="none" viewBox="0 0 24 24" stroke="currentColor" stroke-width="2" aria-hidden="true">
                        <path stroke-linecap="round" stroke-linejoin="round" d="m21 21-4.3-4.3M10.5 18a7.5 7.5 0 1 1 0-15 7.5 7.5 0 0 1 0 15Z" />
                    </svg>
                    <span class="sr-only">"Search users"</span>
                    <input
                        type="search"
                        placeholder="Search users by name or email"
                        autocomplete="off"
                        prop:value=move || query.get()
                        on:input=on_input
                    />
                </label>
                <MessageSearchBox search=messages />
            </div>
            <nav class="min-h-0 flex-1 overflow-y-auto p-2" aria-label="Conversations">
                {move || {
                    if messages.active() {
                        message_results(messages).into_any()
                    } else if searching() {
                        view! { <SearchResultsList /> }.into_any()
                    } else {
                        view! { <ConversationList /> }.into_any()
                    }
                }}
            </nav>
        </aside>
    }
}

/// The conversation list, with the open conversation's peer on top when
/// it has no messages yet (a chat just started from search or a link).
#[component]
fn ConversationList() -> impl IntoView {
    let chat = use_chat();
    let rows = Memo::new(move |_| {
        let open = chat.peer.get();
        chat.conversations.with(|cs| {
            cs.as_ref().map(|cs| {
                // Newest first; each row goes in at its place (stable for
                // equal keys), which needs no sort linked into the client.
                let mut rows: Vec<(String, Option<ChatMessage>)> = Vec::with_capacity(cs.len());
                let mut place = |peer: String, last: Option<ChatMessage>| {
                    let key = state::recency(&peer, last.as_ref());
                    let at = rows.partition_point(|(p, l)| state::recency(p, l.as_ref()) >= key);
                    rows.insert(at, (peer, last));
                };
                for e in cs {
                    place(e.peer_id.clone(), Some(e.last.clone()));
                }
                // Groups without a message yet (just created, or just
                // joined) are listed too, by when they were made.
                chat.groups.with(|groups| {
                    for (id, g) in groups {
                        if !g.removed && g.members.is_some() && !cs.iter().any(|e| e.peer_id == *id) {
                            place(id.clone(), None);
                        }
                    }
                });
                // A group the user is no longer in is not listed, open or not.
                let gone = |id: &str| chat.groups.with(|g| g.get(id).is_some_and(|g| g.removed));
                if let Some(open) = open
                    && !rows.iter().any(|(p, _)| *p == open)
                    && !gone(&open)
                {
                    rows.insert(0, (open, None));
                }
                rows
            })
        })
    });
    move || {
        match rows.get() {
        None => match chat.conversations_error.get() {
            Some(err) => view! {
                <div role="alert" class="alert alert-error m-3 text-sm">
                    <span>{err}</span>
                    <button type="button" class="btn btn-sm" on:click=move |_| chat.load_conversations(None)>"Retry"</button>
                </div>
            }
            .into_any(),
            None => view! { <RowSkeletons /> }.into_any(),
        },
        Some(rows) if rows.is_empty() => view! {
            <p class="p-4 text-sm text-base-content/60" data-testid="no-conversations">
                "No conversations yet. Search for someone to start one."
            </p>
        }
        .into_any(),
        Some(rows) => view! {
            <ul class="menu w-full gap-1" data-testid="conversation-list">
                <For each=move || rows.clone() key=|(peer, last)| (peer.clone(), last.as_ref().map(|m| m.id.clone())) let:row>
                    <PersonRow peer_id=row.0 last=row.1 />
                </For>
            </ul>
            <LoadMore
                more=Signal::derive(move || chat.conversations_cursor.with(Option::is_some))
                on_more=Callback::new(move |()| {
                    if let Some(c) = chat.conversations_cursor.get_untracked() {
                        chat.load_conversations(Some(c));
                    }
                })
                label="Load older conversations"
            />
        }
        .into_any(),
    }
    }
}

/// People matching the search box, from the server, a page at a time.
#[component]
fn SearchResultsList() -> impl IntoView {
    let chat = use_chat();
    move || {
        let Some(results) = chat.search.get() else { return view! { <RowSkeletons /> }.into_any() };
        if let Some(err) = results.error.clone() {
            return view! { <div role="alert" class="alert alert-error m-3 text-sm">{err}</div> }.into_any();
        }
        if results.ids.is_empty() {
            return if results.loading {
                view! { <RowSkeletons /> }.into_any()
            } else {
                view! { <p class="p-4 text-sm text-base-content/60" data-testid="no-results">"Nobody matches."</p> }
                    .into_any()
            };
        }
        let query = results.query.clone();
        let more = results.next_cursor.is_some();
        view! {
            <ul class="menu w-full gap-1" data-testid="search-results">
                {results.ids.into_iter().map(|id| view! { <PersonRow peer_id=id last=None /> }).collect_view()}
            </ul>
            <LoadMore more=Signal::derive(move || more) on_more=Callback::new(move |()| chat.search_people(query.clone(), true)) label="More people" />
        }
        .into_any()
    }
}

/// A "load more" button while there is more.
#[component]
fn LoadMore(more: Signal<bool>, on_more: Callback<()>, label: &'static str) -> impl IntoView {
    view! {
        <Show when=move || more.get()>
            <div class="p-2 text-center">
                <button type="button" class="btn btn-ghost btn-sm" on:click=move |_| on_more.run(())>
                    {label}
                </button>
            </div>
        </Show>
    }
}

/// One person: a link to the conversation with them; with `last`, the
/// conversation's newest message and its time under the name.
#[component]
fn PersonRow(peer_id: String, last: Option<ChatMessage>) -> impl IntoView {
    let chat = use_chat();
    let person = {
        let id = peer_id.clone();
        Memo::new(move |_| chat.contact(&id))
    };
    let selected = {
        let id = peer_id.clone();
        Memo::new(move |_| chat.peer.with(|p| p.as_deref() == Some(id.as_str())))
    };
    // A listed conversation names itself; a person found by search (or a
    // chat just started) is the direct conversation with them.
    let conversation_id = {
        let id = peer_id.clone();
        let listed = last.as_ref().map(|m| m.conversation_id.clone());
        Memo::new(move |_| listed.clone().or_else(|| chat.conversation_with(&id)))
    };
    let unread = Memo::new(move |_| {
        conversation_id.with(|c| c.as_deref().map_or(0, |c| chat.reads.with(|r| state::unread_in(r, c))))
    });
    let mentioned = Memo::new(move |_| {
        conversation_id.with(|c| c.as_deref().is_some_and(|c| chat.reads.with(|r| state::mentioned_in(r, c))))
    });
    let typing = Memo::new(move |_| {
        conversation_id.with(|c| c.as_deref().is_some_and(|c| chat.typing.with(|t| !t.typers(c).is_empty())))
    });
    let online = move || person.with(|p| p.as_ref().is_some_and(|p| p.online));
    let group = is_group_id(&peer_id);
    let group_info = {
        let id = peer_id.clone();
        Memo::new(move |_| chat.groups.with(|g| g.get(&id).map(|g| (g.name.clone(), g.member_count))))
    };
    let name = move || match group_info.get() {
        Some((name, _)) if group => name,
        _ => person.with(|p| p.as_ref().map(|p| p.full_name.clone()).unwrap_or_default()),
    };
    let members = move || group_info.with(|g| g.as_ref().map(|(_, n)| *n)).filter(|_| group);
    let preview = row_subtitle(chat, last.clone());
    let sub = move || if typing.get() { "typing…".to_string() } else { preview() };
    let time = last.as_ref().map(|m| local_hhmm(&m.created_at));
    view! {
        <li>
            <a
                href=format!("/chat/{peer_id}")
                class=move || if selected.get() { "menu-active flex items-center gap-3" } else { "flex items-center gap-3" }
                aria-current=move || selected.get().then_some("page")
                data-testid="contact"
                data-contact-id=peer_id.clone()
                data-online=move || (!group).then(|| if online() { "true" } else { "false" })
                data-group=group.then_some("true")
            >
                {move || {
                    if group {
                        return view! { <Avatar name=name() picture=String::new() /> };
                    }
                    let (n, picture) = person
                        .with(|p| p.as_ref().map(|p| (p.full_name.clone(), p.profile_picture.clone())).unwrap_or_default());
                    view! { <Avatar name=n picture=picture online=online() /> }
                }}
                <span class="min-w-0 flex-1">
                    <span class="flex items-baseline gap-2">
                        <span class="min-w-0 flex-1 truncate font-medium" data-testid="contact-name">{name}</span>
                        {move || members().map(|n| view! {
                            <span class="shrink-0 text-xs text-base-content/60" data-testid="member-count">
                                {member_count(n)}
                            </span>
                        })}
                        {time.map(|t| view! { <time class="shrink-0 text-xs text-base-content/60">{t}</time> })}
                    </span>
                    <span class="block truncate text-xs text-base-content/60" data-testid="conversation-preview">{sub}</span>
                </span>
                <Show when=move || mentioned.get()>
                    <span
                        class="badge badge-accent badge-sm font-bold"
                        role="img"
                        aria-label="You were mentioned"
                        title="You were mentioned"
                        data-testid="mention-badge"
                    >
                        "@"
                    </span>
                </Show>
                <Show when=move || { unread.get() > 0 }>
                    <span
                        class="badge badge-primary badge-sm"
                        aria-label=move || state::unread_label(unread.get())
                        data-testid="unread-badge"
                    >
                        {move || state::unread_badge(unread.get())}
                    </span>
                </Show>
            </a>
        </li>
    }
}

/// The line under a row's name: the last message's preview, or a person's
/// bio in search results.
fn row_subtitle(chat: Chat, last: Option<ChatMessage>) -> impl Fn() -> String + Send + Sync + 'static {
    move || match &last {
        Some(m) => {
            // A group's preview says who wrote it.
            let sender = is_group_id(&m.conversation_id).then(|| chat.contact(&m.sender_id)).flatten();
            state::preview(m, chat.me.get().as_deref(), sender.as_ref().map(|c| c.full_name.as_str()))
        }
        None => String::new(),
    }
}

/// "3 members".
pub fn member_count(n: u32) -> String {
    if n == 1 { "1 member".to_string() } else { format!("{n} members") }
}

/// Placeholder rows while a list loads.
#[component]
fn RowSkeletons() -> impl IntoView {
    view! {
        <ul class="space-y-3 p-2" aria-busy="true" aria-label="Loading">
            {(0..6)
                .map(|_| {
                    view! {
                        <li class="flex items-center gap-3">
                            <div class="skeleton size-10 shrink-0 rounded-full"></div>
                            <div class="skeleton h-4 w-36"></div>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
}

/// The app's avatar with, when `online` is given, a presence dot and its
/// text for screen readers ("online"/"offline").
#[component]
pub fn Avatar(name: String, picture: String, #[prop(optional)] online: Option<bool>) -> impl IntoView {
    let dot = online.map(|on| {
        view! {
            <span
                class={if on {
                    "absolute right-0 bottom-0 size-3 rounded-full bg-success ring-2 ring-base-100"
                } else {
                    "absolute right-0 bottom-0 size-3 rounded-full bg-base-300 ring-2 ring-base-100"
                }}
                aria-hidden="true"
                data-testid="presence-dot"
            ></span>
            <span class="sr-only">{if on { "online" } else { "offline" }}</span>
        }
    });
    view! {
        <span class="relative inline-flex shrink-0">
            <AppAvatar name=name url=picture size=AvatarSize::Medium decorative=true />
            {dot}
        </span>
    }
}

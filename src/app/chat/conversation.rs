//! The open conversation: header, message log and composer. A group's
//! header names it and counts its members, and opens its details panel
//! ([`super::groups`]); once the user is no longer a member, the composer
//! gives way to a note saying so.
//!
//! Scrolling rules: the log sticks to the bottom while the user is there;
//! new messages then scroll into view. Once the user scrolls up they stay
//! put and a "New messages" pill offers the way down. Reaching the top loads
//! the previous page, keeping what the user was looking at in place.

use leptos::{html, prelude::*, task::spawn_local};

use super::{
    composer::Composer,
    groups,
    message::{Bubble, MessageSkeletons},
    sidebar::{Avatar, member_count},
    state::{self, Item},
    toggle_button, use_chat,
};
use crate::api::dto::is_group_id;

/// Within this many pixels of the bottom counts as "at the bottom".
const STICK_PX: i32 = 48;
/// Within this many pixels of the top starts loading the older page.
const TOP_PX: i32 = 64;
/// Pages of history a jump to a search result loads, at most, looking for
/// its message.
const JUMP_MAX_PAGES: u32 = 40;

/// Scrolls the row of message `id` into the middle of the log and marks it
/// (`data-search-hit`, a ring) as the one a search led to; the mark moves
/// with the next jump.
fn reveal(scroller: NodeRef<html::Div>, id: &str) {
    #[cfg(feature = "hydrate")]
    {
        const HIT: [&str; 3] = ["ring-2", "ring-warning", "rounded-box"];
        let Some(log) = scroller.get_untracked() else { return };
        // Each pass unmarks one, so this ends.
        while let Ok(Some(old)) = log.query_selector("[data-search-hit]") {
            let _ = old.remove_attribute("data-search-hit");
            for class in HIT {
                let _ = old.class_list().remove_1(class);
            }
        }
        let Ok(Some(row)) = log.query_selector(&format!("[data-message-id=\"{id}\"]")) else { return };
        let options = web_sys::ScrollIntoViewOptions::new();
        options.set_block(web_sys::ScrollLogicalPosition::Center);
        row.scroll_into_view_with_scroll_into_view_options(&options);
        let _ = row.set_attribute("data-search-hit", "true");
        for class in HIT {
            let _ = row.class_list().add_1(class);
        }
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (scroller, id);
    }
}

#[component]
pub fn Conversation(peer: String) -> impl IntoView {
    let chat = use_chat();
    let scroller = NodeRef::<html::Div>::new();
    let at_bottom = StoredValue::new(true);
    let new_below = RwSignal::new(false);
    let loading_older = RwSignal::new(false);

    let contact = {
        let peer = peer.clone();
        Memo::new(move |_| chat.contact(&peer))
    };
    let group = is_group_id(&peer);
    // A group's name, member count and whether the user is still in it.
    let group_info = {
        let peer = peer.clone();
        Memo::new(move |_| chat.groups.with(|g| g.get(&peer).map(|g| (g.name.clone(), g.member_count, g.removed))))
    };
    let removed = Memo::new(move |_| group_info.with(|g| g.as_ref().is_some_and(|g| g.2)));
    let details = RwSignal::new(false);
    // A group's rows wait for the user's id: only it tells own messages
    // from the others'.
    let items = {
        let peer = peer.clone();
        Memo::new(move |_| {
            if group && chat.me.with(Option::is_none) {
                return Vec::new();
            }
            chat.timelines.with(|m| m.get(&peer).map(|t| t.items()).unwrap_or_default())
        })
    };
    let meta = {
        let peer = peer.clone();
        Memo::new(move |_| {
            chat.timelines.with(|m| {
                m.get(&peer).map(|t| (t.loaded, t.has_more, t.load_error.clone())).unwrap_or((false, false, None))
            })
        })
    };
    let name = {
        let peer = peer.clone();
        move || {
            if let Some((name, ..)) = group_info.get().filter(|_| group) {
                return name;
            }
            contact.with(|c| match c {
                Some(c) => c.full_name.clone(),
                None if chat.unknown_people.with(|u| u.contains(&peer)) => "Unknown user".to_string(),
                None => String::new(),
            })
        }
    };
    let online = move || contact.with(|c| c.as_ref().is_some_and(|c| c.online));
    let conversation_id = {
        let peer = peer.clone();
        Memo::new(move |_| chat.conversation_with(&peer))
    };
    // The own message to show "Seen" under, if the peer has reached it,
    // with what to say: "Seen", or in a group "Seen by N" (N current
    // members but the user have read up to it).
    let seen = {
        let peer = peer.clone();
        Memo::new(move |_| {
            let me = chat.me.get()?;
            let conversation_id = conversation_id.get()?;
            let own = chat.timelines.with(|m| m.get(&peer).and_then(|t| t.newest_own_id(&me).map(str::to_string)))?;
            if !group {
                let peer_read = chat.reads.with(|r| r.get(&conversation_id).and_then(|r| r.peer.clone()));
                return state::seen_message(Some(&own), peer_read.as_deref()).map(|id| (id.to_string(), "Seen".into()));
            }
            let n = chat.groups.with(|g| {
                let members = g.get(&peer).and_then(|g| g.members.as_ref());
                let others = members.map(|m| m.iter().map(|m| m.contact.id.as_str()).filter(|id| *id != me));
                chat.reads.with(|r| state::seen_by(r, &conversation_id, &own, others))
            });
            (n > 0).then(|| (own, format!("Seen by {n}")))
        })
    };
    // "Ada is typing…" while the peer types (its own line for screen readers).
    let typing = Memo::new(move |_| {
        let typers = conversation_id.with(|c| c.as_deref().map(|c| chat.typing.with(|t| t.typers(c))));
        let names: Vec<String> = typers
            .unwrap_or_default()
            .iter()
            .map(|id| chat.contact(id).map(|c| c.full_name).unwrap_or_default())
            .collect();
        state::typing_text(&names)
    });

    let scroll_to_bottom = move || {
        if let Some(el) = scroller.get_untracked() {
            el.set_scroll_top(el.scroll_height());
        }
        at_bottom.set_value(true);
        new_below.set(false);
    };

    // Load the page before the oldest message, keeping the viewport on the
    // same messages: the content grows above, so move down by the growth.
    let load_older = {
        let peer = peer.clone();
        move || {
            let (loaded, has_more, _) = meta.get_untracked();
            if !loaded || !has_more || loading_older.get_untracked() {
                return;
            }
            loading_older.set(true);
            let peer = peer.clone();
            spawn_local(async move {
                match chat.fetch_older(peer.clone()).await {
                    Ok(Some((messages, has_more))) => {
                        let before = scroller.get_untracked().map(|el| (el.scroll_height(), el.scroll_top()));
                        chat.apply_older(&peer, messages, has_more);
                        request_animation_frame(move || {
                            if let (Some(el), Some((height, top))) = (scroller.get_untracked(), before) {
                                el.set_scroll_top(el.scroll_height() - height + top);
                            }
                            loading_older.set(false);
                        });
                    }
                    Ok(None) => loading_older.set(false),
                    Err(e) => {
                        loading_older.set(false);
                        chat.notify_error(format!("Could not load older messages: {}", e.message));
                    }
                }
            });
        }
    };

    let on_scroll = {
        let load_older = load_older.clone();
        move |_| {
            let Some(el) = scroller.get_untracked() else { return };
            let bottom = el.scroll_height() - el.scroll_top() - el.client_height() <= STICK_PX;
            at_bottom.set_value(bottom);
            if bottom {
                new_below.set(false);
            }
            if el.scroll_top() <= TOP_PX {
                load_older();
            }
        }
    };

    // After every change of the rows: follow new messages at the bottom, or
    // offer the pill; when the first page does not fill the view, keep
    // paging back so the top can be reached by scrolling.
    {
        let load_older = load_older.clone();
        let peer = peer.clone();
        Effect::new(move |prev: Option<(usize, Option<String>, Option<String>)>| {
            let me = chat.me.get_untracked();
            let (count, first, last, last_own) = items.with(|items| {
                let last = items.last();
                let own = match last {
                    Some(Item::Outgoing(_)) => true,
                    Some(Item::Confirmed(m)) => state::is_own(&peer, me.as_deref(), &m.sender_id),
                    None => false,
                };
                (items.len(), items.first().map(Item::render_key), last.map(Item::render_key), own)
            });
            let (prev_count, prev_first, prev_last) = prev.clone().unwrap_or((0, None, None));
            // First rows of this conversation: start at the bottom.
            let first_fill = prev_count == 0 && count > 0;
            // More rows and the same first row: something arrived at the end
            // (a prepend of older history changes the first row instead).
            let arrived = !first_fill && count > prev_count && first == prev_first;
            // Same rows re-keyed at the end (pending → sent): stay stuck.
            let rekeyed = !first_fill && !arrived && last != prev_last;
            let load_older = load_older.clone();
            request_animation_frame(move || {
                let stuck = at_bottom.get_value();
                if first_fill || (arrived && (stuck || last_own)) || (rekeyed && stuck) {
                    scroll_to_bottom();
                } else if arrived {
                    new_below.set(true);
                }
                if let Some(el) = scroller.get_untracked()
                    && el.scroll_height() <= el.client_height()
                {
                    load_older();
                }
            });
            (count, first, last)
        });
    }

    // A message search result picked in this conversation ([`Chat::jump`]):
    // page older history in until the message is there (bounded), then
    // scroll it into the middle of the log and highlight it.
    {
        let load_older = load_older.clone();
        let peer = peer.clone();
        let pages = StoredValue::new(0u32);
        Effect::new(move |_| {
            let target = chat.jump.with(|j| j.as_ref().filter(|(p, _)| *p == peer).map(|(_, id)| id.clone()));
            let Some(target) = target else { return };
            let (loaded, has_more, _) = meta.get();
            if !loaded || loading_older.get() {
                return;
            }
            let present = items.with(|items| items.iter().any(|i| matches!(i, Item::Confirmed(m) if m.id == target)));
            if present {
                chat.jump.set(None);
                pages.set_value(0);
                // After the rows' own scrolling (first fill, kept position).
                request_animation_frame(move || request_animation_frame(move || reveal(scroller, &target)));
            } else if has_more && pages.get_value() < JUMP_MAX_PAGES {
                pages.update_value(|n| *n += 1);
                load_older();
            } else {
                chat.jump.set(None);
                pages.set_value(0);
                chat.notify_error("That message is not in this conversation's history any more");
            }
        });
    }

    let error_view = {
        let peer = peer.clone();
        move || {
            let (loaded, _, error) = meta.get();
            let peer = peer.clone();
            error.filter(|_| !loaded).map(|err| {
                view! {
                    <div role="alert" class="alert alert-error m-4 text-sm">
                        <span>{err}</span>
                        <button type="button" class="btn btn-sm" on:click=move |_| chat.load_latest(peer.clone(), false)>
                            "Retry"
                        </button>
                    </div>
                }
            })
        }
    };
    let loading = move || meta.with(|(loaded, _, error)| !loaded && error.is_none()) && items.with(Vec::is_empty);
    let top = {
        let load_older = load_older.clone();
        move || {
            let (loaded, has_more, _) = meta.get();
            if !loaded {
                ().into_any()
            } else if loading_older.get() {
                view! { <span class="loading loading-dots loading-sm" aria-label="Loading older messages"></span> }
                    .into_any()
            } else if has_more {
                let load_older = load_older.clone();
                view! {
                    <button type="button" class="btn btn-ghost btn-xs" on:click=move |_| load_older()>
                        "Load earlier messages"
                    </button>
                }
                .into_any()
            } else if items.with(Vec::is_empty) {
                view! { <p class="text-sm text-base-content/60">"No messages yet. Say hello!"</p> }.into_any()
            } else {
                view! { <p class="text-xs text-base-content/50">"Beginning of the conversation"</p> }.into_any()
            }
        }
    };
    let on_image_load = Callback::new(move |()| {
        if at_bottom.get_value() {
            scroll_to_bottom();
        }
    });
    let bubble_peer = peer.clone();

    view! {
        <section class="flex min-h-0 flex-1 flex-col" data-testid="conversation" data-peer-id=peer.clone()>
            <header class="flex items-center gap-3 border-b border-base-300 bg-base-100 px-3 py-2">
                <a href="/chat" class="btn btn-ghost btn-sm btn-square md:hidden" aria-label="Back to conversations">
                    <svg xmlns="http://www.w3.org/2000/svg" class="size-5" fill="none" viewBox="0 0 24 24" stroke="currentColor" stroke-width="2" aria-hidden="true">
                        <path stroke-linecap="round" stroke-linejoin="round" d="M15 19l-7-7 7-7" />
                    </svg>
                </a>
                {
                    let name = name.clone();
                    move || {
                        if group {
                            return Some(view! { <Avatar name=name() picture=String::new() /> });
                        }
                        contact
                            .get()
                            .map(|c| view! { <Avatar name=c.full_name picture=c.profile_picture online=c.online /> })
                    }
                }
                <div class="min-w-0 flex-1">
                    <h2 class="truncate font-semibold" data-testid="peer-name">{name}</h2>
                    {if group {
                        view! {
                            <p class="text-xs text-base-content/60" data-testid="member-count">
                                {move || group_info.get().map(|(_, n, _)| member_count(n)).unwrap_or_default()}
                            </p>
                        }
                        .into_any()
                    } else {
                        view! {
                            <p
                                class=move || if online() { "text-xs text-success" } else { "text-xs text-base-content/60" }
                                data-testid="peer-status"
                            >
                                {move || if online() { "Online" } else { "Offline" }}
                            </p>
                        }
                        .into_any()
                    }}
                </div>
                {group.then(|| toggle_button(details, "btn btn-ghost btn-sm", "Group details"))}
            </header>
            {
                let peer = peer.clone();
                move || {
                    let peer = peer.clone();
                    (details.get() && !removed.get()).then(move || view! {
                        <Suspense>{Suspend::new(groups::group_details(chat, peer.clone(), details))}</Suspense>
                    })
                }
            }
            <div class="relative min-h-0 flex-1">
                <div
                    node_ref=scroller
                    class="h-full overflow-y-auto px-3 pb-7"
                    style="overflow-anchor: none"
                    role="log"
                    aria-live="polite"
                    aria-relevant="additions"
                    aria-label="Messages"
                    tabindex="0"
                    data-testid="message-log"
                    on:scroll=on_scroll
                >
                    {error_view}
                    <Show when=loading>
                        <MessageSkeletons />
                    </Show>
                    <div class="flex justify-center py-2">{top}</div>
                    <For each=move || items.get() key=Item::render_key let:item>
                        <Bubble item peer=bubble_peer.clone() seen on_image_load />
                    </For>
                </div>
                // Empty (and so without a box) while nobody types; always in
                // the page, so screen readers announce the line when it
                // appears. Over the log's bottom padding, which leaves it room.
                <p
                    class=move || {
                        if typing.with(Option::is_some) {
                            "pointer-events-none absolute bottom-1 left-3 rounded-full bg-base-200/90 px-3 py-0.5 text-xs italic text-base-content/70"
                        } else {
                            "pointer-events-none absolute bottom-1 left-3"
                        }
                    }
                    aria-live="polite"
                    data-testid="typing-indicator"
                >
                    {move || typing.get().unwrap_or_default()}
                </p>
                <Show when=move || new_below.get()>
                    <button
                        type="button"
                        class="btn btn-primary btn-sm absolute bottom-3 left-1/2 -translate-x-1/2 rounded-full shadow"
                        on:click=move |_| scroll_to_bottom()
                    >
                        "New messages ↓"
                    </button>
                </Show>
            </div>
            {
                let peer = peer.clone();
                move || {
                    if removed.get() {
                        view! {
                            <div role="status" class="alert m-3 text-sm" data-testid="not-a-member">
                                "You are no longer a member of this group."
                            </div>
                        }
                        .into_any()
                    } else {
                        view! { <Composer peer=peer.clone() /> }.into_any()
                    }
                }
            }
        </section>
    }
}

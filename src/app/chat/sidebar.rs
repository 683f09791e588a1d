//! The contact list: search, "online only" filter, presence dots and unread
//! badges. On small screens it is the whole page at `/chat` and hidden while
//! a conversation is open.

use leptos::prelude::*;

use super::{state::filter_contacts, use_chat};
use crate::{
    api::dto::Contact,
    app::avatar::{Avatar as AppAvatar, AvatarSize},
};

#[component]
pub fn Sidebar() -> impl IntoView {
    let chat = use_chat();
    let query = RwSignal::new(String::new());
    let online_only = RwSignal::new(false);

    let online_count =
        move || chat.contacts.with(|cs| cs.as_ref().map(|cs| cs.iter().filter(|c| c.online).count()).unwrap_or(0));
    let shown = Memo::new(move |_| {
        chat.contacts.with(|cs| {
            cs.as_ref().map(|cs| {
                query.with(|q| filter_contacts(cs, q, online_only.get()).into_iter().cloned().collect::<Vec<_>>())
            })
        })
    });

    let list = move || {
        match shown.get() {
        None => match chat.contacts_error.get() {
            Some(err) => view! {
                <div role="alert" class="alert alert-error m-3 text-sm">
                    <span>{err}</span>
                    <button type="button" class="btn btn-sm" on:click=move |_| chat.load_contacts()>"Retry"</button>
                </div>
            }
            .into_any(),
            None => view! { <ContactSkeletons /> }.into_any(),
        },
        Some(list) if list.is_empty() => {
            let msg = if chat.contacts.with(|c| c.as_ref().is_some_and(Vec::is_empty)) {
                "No other users yet."
            } else {
                "No contacts match."
            };
            view! { <p class="p-4 text-sm text-base-content/60">{msg}</p> }.into_any()
        }
        Some(list) => view! {
            <ul class="menu w-full gap-1" data-testid="contact-list">
                <For each=move || list.clone() key=|c| (c.id.clone(), c.full_name.clone(), c.profile_picture.clone(), c.online) let:contact>
                    <ContactRow contact />
                </For>
            </ul>
        }
        .into_any(),
    }
    };

    view! {
        <aside
            class=move || {
                if chat.peer.with(Option::is_some) {
                    "hidden w-full min-h-0 flex-col border-base-300 bg-base-100 md:flex md:w-80 md:shrink-0 md:border-r"
                } else {
                    "flex w-full min-h-0 flex-col border-base-300 bg-base-100 md:w-80 md:shrink-0 md:border-r"
                }
            }
            aria-labelledby="contacts-heading"
        >
            <div class="space-y-2 border-b border-base-300 p-3">
                <h2 id="contacts-heading" class="text-lg font-bold">"Contacts"</h2>
                <label class="input input-sm w-full">
                    <svg class="size-4 opacity-60" xmlns="http://www.w3.org/2000/svg" fill="none" viewBox="0 0 24 24" stroke="currentColor" stroke-width="2" aria-hidden="true">
                        <path stroke-linecap="round" stroke-linejoin="round" d="m21 21-4.3-4.3M10.5 18a7.5 7.5 0 1 1 0-15 7.5 7.5 0 0 1 0 15Z" />
                    </svg>
                    <span class="sr-only">"Search users"</span>
                    <input
                        type="search"
                        placeholder="Search users"
                        autocomplete="off"
                        prop:value=move || query.get()
                        on:input=move |ev| query.set(event_target_value(&ev))
                    />
                </label>
                <label class="flex cursor-pointer items-center gap-2 text-sm">
                    <input
                        type="checkbox"
                        class="toggle toggle-sm toggle-success"
                        prop:checked=move || online_only.get()
                        on:change=move |ev| online_only.set(event_target_checked(&ev))
                    />
                    <span>"Show online only"</span>
                    <span class="badge badge-sm badge-ghost" data-testid="online-count">
                        {online_count}
                        " online"
                    </span>
                </label>
            </div>
            <nav class="min-h-0 flex-1 overflow-y-auto p-2" aria-label="Contact list">
                {list}
            </nav>
        </aside>
    }
}

/// One contact: a link to its conversation.
#[component]
fn ContactRow(contact: Contact) -> impl IntoView {
    let chat = use_chat();
    let id = contact.id.clone();
    let selected = {
        let id = id.clone();
        Memo::new(move |_| chat.peer.with(|p| p.as_deref() == Some(id.as_str())))
    };
    let unread = {
        let id = id.clone();
        Memo::new(move |_| chat.unread.with(|u| u.get(&id).copied().unwrap_or(0)))
    };
    let href = format!("/chat/{id}");
    let online = contact.online;
    view! {
        <li>
            <a
                href=href
                class=move || if selected.get() { "menu-active flex items-center gap-3" } else { "flex items-center gap-3" }
                aria-current=move || selected.get().then_some("page")
                data-testid="contact"
                data-contact-id=id.clone()
                data-online={if online { "true" } else { "false" }}
            >
                <Avatar name=contact.full_name.clone() picture=contact.profile_picture.clone() online=online />
                <span class="min-w-0 flex-1 truncate font-medium">{contact.full_name.clone()}</span>
                <Show when=move || { unread.get() > 0 }>
                    <span class="badge badge-primary badge-sm" data-testid="unread-badge">
                        {unread}
                        <span class="sr-only">" unread"</span>
                    </span>
                </Show>
            </a>
        </li>
    }
}

/// Placeholder rows while the contacts load.
#[component]
fn ContactSkeletons() -> impl IntoView {
    view! {
        <ul class="space-y-3 p-2" aria-busy="true" aria-label="Loading contacts">
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

//! One message bubble, and the skeleton shown while a conversation loads.

use leptos::prelude::*;

use super::{
    local_hhmm,
    rich_text::{self, Block, Inline},
    sidebar::Avatar,
    state::{self, Delivery, Item},
    toggle_button, use_chat,
};
use crate::api::dto::is_group_id;

/// A message row. Own messages sit on the right (`chat-end`). Every row
/// carries `data-message-id` (the server id, or the `client_msg_id` while
/// unconfirmed); own rows carry `data-status` = pending | sent | failed.
/// The own message whose id `seen` holds says what `seen` says ("Seen",
/// "Seen by 2") instead of "Sent". In a group, others' messages show their
/// sender's name and avatar.
#[component]
pub fn Bubble(
    item: Item,
    peer: String,
    seen: Memo<Option<(String, String)>>,
    on_image_load: Callback<()>,
) -> impl IntoView {
    let chat = use_chat();
    let me = chat.me.get_untracked();
    struct Row {
        id: String,
        sender_id: String,
        client_msg_id: Option<String>,
        own: bool,
        text: String,
        image: Option<String>,
        created_at: String,
        status: Option<&'static str>,
        error: Option<String>,
        edited: bool,
        deleted: bool,
        reply_to: Option<String>,
    }
    let row = match item {
        Item::Confirmed(m) => {
            let own = state::is_own(&peer, me.as_deref(), &m.sender_id);
            Row {
                id: m.id,
                sender_id: m.sender_id,
                client_msg_id: m.client_msg_id,
                own,
                text: m.text,
                image: m.image.filter(|s| !s.is_empty()),
                created_at: m.created_at,
                status: own.then_some("sent"),
                error: None,
                edited: m.edited_at.is_some(),
                deleted: m.deleted,
                reply_to: m.reply_to,
            }
        }
        Item::Outgoing(o) => Row {
            id: o.client_msg_id.clone(),
            sender_id: me.clone().unwrap_or_default(),
            image: o.shown_image(),
            client_msg_id: Some(o.client_msg_id),
            own: true,
            text: o.text,
            created_at: o.created_at,
            status: Some(match o.delivery {
                Delivery::Pending => "pending",
                Delivery::Failed => "failed",
            }),
            error: o.error,
            edited: false,
            deleted: false,
            reply_to: o.reply_to,
        },
    };

    let author = if row.own {
        "you".to_string()
    } else {
        chat.contact_untracked(&row.sender_id).map(|c| c.full_name).unwrap_or_else(|| "your contact".into())
    };
    // A group names who wrote each message of the others (reactive: a
    // sender may become known after the row is drawn).
    let sender = (!row.own && is_group_id(&peer)).then(|| {
        let id = row.sender_id.clone();
        Memo::new(move |_| chat.contact(&id).map(|c| (c.full_name, c.profile_picture)).unwrap_or_default())
    });
    let image = row.image.map(|src| {
        let alt = format!("Image from {author}");
        view! {
            <a href=src.clone() target="_blank" rel="noopener noreferrer" class="block" title="Open full size">
                <img
                    src=src.clone()
                    alt=alt
                    class="max-h-64 max-w-full rounded-lg object-contain sm:max-w-xs"
                    on:load=move |_| on_image_load.run(())
                />
            </a>
        }
    });
    let original_text = row.text.clone();
    // Parsed again once the user's name is known (it arrives with the
    // socket's `Hello`, maybe after the history), for mentions of them.
    let text = (!row.text.is_empty()).then(|| {
        let text = row.text;
        view! {
            <div class="break-words space-y-1" data-testid="message-text">
                {move || blocks_view(rich_text::parse(&text, chat.me_name.get().as_deref()))}
            </div>
        }
        .into_any()
    });
    // A deleted message keeps its place, as a tombstone.
    let (image, text) = if row.deleted {
        let tombstone = view! {
            <p class="italic opacity-70" data-testid="deleted-message">"This message was deleted"</p>
        }
        .into_any();
        (None, Some(tombstone))
    } else {
        (image, text)
    };
    // Own confirmed messages can be edited and deleted (not tombstones).
    let changeable = row.status == Some("sent") && !row.deleted;
    let actions = changeable.then(|| message_actions(row.id.clone(), original_text));
    // Any confirmed message can be answered and reacted to.
    let confirmed = row.status.is_none() || row.status == Some("sent");
    let social = (confirmed && !row.deleted).then(|| {
        let (id, react_id) = (row.id.clone(), row.id.clone());
        view! {
            <button type="button" class="link link-hover opacity-60 hover:opacity-100" on:click=move |_| chat.replying.set(Some(id.clone()))>
                "Reply"
            </button>
            {reaction_picker(react_id)}
        }
    });
    let reactions = (confirmed && !row.deleted).then(|| reaction_chips(row.id.clone()));
    let quote = row.reply_to.clone().map(|target| reply_quote(target, peer.clone(), me.clone()));
    let footer = match row.status {
        Some("pending") => view! {
            <span class="flex items-center gap-1" title="Sending">
                <span class="loading loading-spinner loading-xs" aria-hidden="true"></span>
                <span class="sr-only">"Sending"</span>
            </span>
        }
        .into_any(),
        Some("failed") => {
            let cid = row.client_msg_id.clone().unwrap_or_default();
            let peer = peer.clone();
            view! {
                <span class="flex items-center gap-1 text-error" title=row.error.clone().unwrap_or_default()>
                    <span>"failed — "</span>
                    <button
                        type="button"
                        class="link link-error font-semibold"
                        data-testid="retry"
                        on:click=move |_| chat.retry(peer.clone(), cid.clone())
                    >
                        "Retry"
                    </button>
                </span>
            }
            .into_any()
        }
        Some(_) => {
            let id = row.id.clone();
            let label = move || seen.with(|s| s.as_ref().filter(|(at, _)| *at == id).map(|(_, label)| label.clone()));
            view! {
                {move || match label() {
                    Some(label) => view! { <span class="opacity-60" data-testid="seen-marker">{label}</span> }.into_any(),
                    None => view! { <span class="opacity-60">"Sent"</span> }.into_any(),
                }}
            }
            .into_any()
        }
        None => ().into_any(),
    };

    let time = local_hhmm(&row.created_at);
    view! {
        <div
            class={if row.own { "chat chat-end" } else { "chat chat-start" }}
            data-message-id=row.id
            data-client-msg-id=row.client_msg_id
            data-status=row.status
            data-own={if row.own { "true" } else { "false" }}
        >
            {sender.map(|s| view! {
                <div class="chat-image">
                    {move || { let (name, picture) = s.get(); view! { <Avatar name picture /> } }}
                </div>
            })}
            <div class="chat-header text-xs opacity-60">
                {sender.map(|s| view! {
                    <span class="mr-1 font-semibold" data-testid="sender-name">{move || s.get().0}</span>
                })}
                <time datetime=row.created_at>{time}</time>
                {(row.edited && !row.deleted).then(|| view! { <span class="ml-1" data-testid="edited-mark">"(edited)"</span> })}
            </div>
            <div class={if row.own {
                "chat-bubble chat-bubble-primary max-w-[85%] sm:max-w-md"
            } else {
                "chat-bubble max-w-[85%] sm:max-w-md"
            }}>{quote} {image} {text}</div>
            // Reactions, then the status and actions: one footer (DaisyUI puts
            // every `chat-footer` in the same grid cell).
            <div class={if row.own { "chat-footer text-xs flex flex-col items-end gap-1" } else { "chat-footer text-xs flex flex-col items-start gap-1" }}>
                {reactions}
                <div class="flex flex-wrap items-center gap-2">{footer} {social} {actions}</div>
            </div>
        </div>
    }
}

/// The message a reply answers, quoted from what this page holds; a click
/// scrolls to it. One not loaded (older than the history shown) is named
/// without its text.
fn reply_quote(target: String, peer: String, me: Option<String>) -> impl IntoView {
    let chat = use_chat();
    let quoted = chat.timelines.with_untracked(|m| m.get(&peer).and_then(|t| t.get(&target).cloned()));
    let (author, body) = match &quoted {
        Some(q) if !state::is_own(&peer, me.as_deref(), &q.sender_id) => (
            chat.contact_untracked(&q.sender_id).map(|c| c.full_name).unwrap_or_else(|| "Them".into()),
            state::snippet(q, 100),
        ),
        Some(q) => ("You".to_string(), state::snippet(q, 100)),
        None => ("An earlier message".to_string(), String::new()),
    };
    let jump = move |_| scroll_to_message(&target);
    view! {
        <button
            type="button"
            class="mb-1 block w-full border-l-4 border-base-content/30 pl-2 text-left text-xs opacity-80 hover:opacity-100"
            data-testid="reply-quote"
            title="Show the original message"
            on:click=jump
        >
            <span class="font-semibold">{author}</span>
            {(!body.is_empty()).then(|| view! { <span class="block truncate">{body}</span> })}
        </button>
    }
}

/// Scrolls the message `id` into view and flashes it, if it is on the page.
fn scroll_to_message(id: &str) {
    #[cfg(feature = "hydrate")]
    {
        let selector = format!("[data-message-id=\"{id}\"]");
        let found =
            web_sys::window().and_then(|w| w.document()).and_then(|d| d.query_selector(&selector).ok().flatten());
        if let Some(el) = found {
            el.scroll_into_view();
            let _ = el.class_list().add_1("message-flash");
            let el = el.clone();
            set_timeout(
                move || drop(el.class_list().remove_1("message-flash")),
                std::time::Duration::from_millis(1_600),
            );
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = id;
}

/// The emoji under a message, with how many chose each; one's own are
/// highlighted, and a click takes one's own back or adds it.
fn reaction_chips(message_id: String) -> impl IntoView {
    let chat = use_chat();
    move || {
        let me = chat.me.get().unwrap_or_default();
        let list = chat.reactions.with(|r| r.get(&message_id).cloned()).unwrap_or_default();
        (!list.is_empty()).then(|| {
            let chips = list
                .into_iter()
                .map(|c| {
                    let mine = c.user_ids.contains(&me);
                    let n = c.user_ids.len();
                    let label = format!(
                        "{} {n}, {}",
                        c.emoji,
                        if mine { "yours included; click to remove yours" } else { "click to add yours" }
                    );
                    let (id, emoji) = (message_id.clone(), c.emoji.clone());
                    view! {
                        <button
                            type="button"
                            class={if mine { "badge badge-primary gap-1" } else { "badge badge-outline gap-1" }}
                            aria-pressed={if mine { "true" } else { "false" }}
                            aria-label=label
                            data-testid="reaction"
                            on:click=move |_| chat.react(id.clone(), emoji.clone(), !mine)
                        >
                            <span>{c.emoji.clone()}</span>
                            <span>{n}</span>
                        </button>
                    }
                })
                .collect_view();
            view! { <div class="flex flex-wrap gap-1" data-testid="reactions">{chips}</div> }
        })
    }
}

/// "React": opens the set of emoji; choosing one adds it (or takes it back
/// if it is already one's own).
fn reaction_picker(message_id: String) -> impl IntoView {
    let chat = use_chat();
    let open = RwSignal::new(false);
    view! {
        <span class="relative">
            {toggle_button(open, "link link-hover opacity-60 hover:opacity-100", "React")}
            {move || open.get().then(|| {
                let id = message_id.clone();
                view! {
                    <span class="absolute bottom-full left-0 z-10 mb-1 flex gap-1 rounded-box bg-base-200 p-1 shadow" role="group" aria-label="Reactions">
                        {crate::api::dto::REACTION_EMOJI
                            .iter()
                            .map(|emoji| {
                                let (id, emoji) = (id.clone(), emoji.to_string());
                                let label = format!("React with {emoji}");
                                let text = emoji.clone();
                                view! {
                                    <button
                                        type="button"
                                        class="btn btn-ghost btn-xs text-base"
                                        aria-label=label
                                        on:click=move |_| {
                                            let me = chat.me.get_untracked().unwrap_or_default();
                                            let mine = chat.reactions.with_untracked(|r| {
                                                r.get(&id).is_some_and(|l| l.iter().any(|c| c.emoji == emoji && c.user_ids.contains(&me)))
                                            });
                                            chat.react(id.clone(), emoji.clone(), !mine);
                                            open.set(false);
                                        }
                                    >
                                        {text}
                                    </button>
                                }
                            })
                            .collect_view()}
                    </span>
                }
            })}
        </span>
    }
}

/// "Edit" and "Delete" under one of the user's own messages: editing opens
/// a box with the text in place; deleting asks once more, inline (a
/// tombstone cannot be undone).
fn message_actions(message_id: String, text: String) -> impl IntoView {
    let chat = use_chat();
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Idle,
        Editing,
        ConfirmDelete,
    }
    let mode = RwSignal::new(Mode::Idle);
    let draft = RwSignal::new(text.clone());
    let id_for_edit = message_id.clone();
    let save = move || {
        let new_text = draft.get_untracked();
        if new_text.trim().is_empty() || new_text == text {
            mode.set(Mode::Idle);
            return;
        }
        chat.edit(id_for_edit.clone(), new_text);
        mode.set(Mode::Idle);
    };
    let save = StoredValue::new(save);
    let delete = move || {
        chat.delete(message_id.clone());
        mode.set(Mode::Idle);
    };
    let delete = StoredValue::new(delete);
    move || match mode.get() {
        Mode::Idle => view! {
            <span class="flex gap-2 opacity-60 hover:opacity-100 focus-within:opacity-100">
                <button type="button" class="link link-hover" on:click=move |_| mode.set(Mode::Editing)>
                    "Edit"
                </button>
                <button type="button" class="link link-hover" on:click=move |_| mode.set(Mode::ConfirmDelete)>
                    "Delete"
                </button>
            </span>
        }
        .into_any(),
        Mode::Editing => view! {
            <form
                class="flex w-full flex-col gap-1"
                on:submit=move |ev| {
                    ev.prevent_default();
                    save.with_value(|f| f());
                }
            >
                <textarea
                    class="textarea textarea-bordered textarea-sm w-72 max-w-full"
                    aria-label="Edit message"
                    prop:value=move || draft.get()
                    on:input=move |ev| draft.set(event_target_value(&ev))
                    on:keydown=move |ev| {
                        if ev.key() == "Escape" {
                            mode.set(Mode::Idle);
                        } else if ev.key() == "Enter" && !ev.shift_key() {
                            ev.prevent_default();
                            save.with_value(|f| f());
                        }
                    }
                ></textarea>
                <span class="flex gap-2">
                    <button type="submit" class="btn btn-primary btn-xs">"Save"</button>
                    <button type="button" class="btn btn-ghost btn-xs" on:click=move |_| mode.set(Mode::Idle)>
                        "Cancel"
                    </button>
                </span>
            </form>
        }
        .into_any(),
        Mode::ConfirmDelete => view! {
            <span class="flex items-center gap-2" role="group" aria-label="Confirm delete">
                <span>"Delete this message for everyone?"</span>
                <button type="button" class="btn btn-error btn-xs" on:click=move |_| delete.with_value(|f| f())>
                    "Delete"
                </button>
                <button type="button" class="btn btn-ghost btn-xs" on:click=move |_| mode.set(Mode::Idle)>
                    "Cancel"
                </button>
            </span>
        }
        .into_any(),
    }
}

/// A message's blocks as elements. All user text ends up in text nodes and
/// attribute values set through the DOM, never parsed as HTML; every link
/// is http(s) or mailto (see [`rich_text`]) and opens in a new tab without
/// handing the page to it (`noopener`) or vouching for it (`nofollow`).
fn blocks_view(blocks: Vec<Block>) -> Vec<AnyView> {
    blocks
        .into_iter()
        .map(|block| match block {
            Block::Paragraph(inlines) => {
                view! { <p class="whitespace-pre-wrap">{inlines_view(inlines)}</p> }.into_any()
            }
            Block::Code(code) => view! {
                <pre class="bg-base-300 text-base-content border border-base-content/10 rounded p-2 overflow-x-auto text-sm"><code>{code}</code></pre>
            }
            .into_any(),
            Block::List { start: None, items } => {
                view! { <ul class="list-disc pl-5">{items_view(items)}</ul> }.into_any()
            }
            Block::List { start: Some(n), items } => {
                view! { <ol class="list-decimal pl-5" start=n>{items_view(items)}</ol> }.into_any()
            }
        })
        .collect()
}

fn items_view(items: Vec<Vec<Inline>>) -> Vec<AnyView> {
    items.into_iter().map(|item| view! { <li>{inlines_view(item)}</li> }.into_any()).collect()
}

/// Inline spans as elements; the parser caps their nesting, so this
/// recursion is shallow.
fn inlines_view(inlines: Vec<Inline>) -> Vec<AnyView> {
    inlines
        .into_iter()
        .map(|inline| match inline {
            Inline::Text(text) => text.into_any(),
            Inline::Strong(c) => view! { <strong>{inlines_view(c)}</strong> }.into_any(),
            Inline::Emphasis(c) => view! { <em>{inlines_view(c)}</em> }.into_any(),
            Inline::Code(code) => view! {
                <code class="font-mono text-sm bg-base-300 text-base-content border border-base-content/10 rounded px-1">{code}</code>
            }
            .into_any(),
            Inline::Link { href, label } => view! {
                <a href=href target="_blank" rel="noopener noreferrer nofollow" class="link">{inlines_view(label)}</a>
            }
            .into_any(),
            Inline::Mention { text, me: true } => {
                view! { <span class="badge badge-accent badge-sm font-semibold" data-testid="mention-me">{text}</span> }
                    .into_any()
            }
            Inline::Mention { text, me: false } => {
                view! { <span class="font-semibold" data-testid="mention">{text}</span> }.into_any()
            }
        })
        .collect()
}

/// Placeholder bubbles while the first page loads.
#[component]
pub fn MessageSkeletons() -> impl IntoView {
    view! {
        <div class="space-y-4 py-4" aria-busy="true" aria-label="Loading messages">
            {[("chat-start", "w-40"), ("chat-end", "w-56"), ("chat-start", "w-32"), ("chat-end", "w-24")]
                .into_iter()
                .map(|(side, width)| {
                    view! {
                        <div class=format!("chat {side}")>
                            <div class=format!("skeleton chat-bubble h-10 {width}")></div>
                        </div>
                    }
                })
                .collect_view()}
        </div>
    }
}

//! One message bubble, and the skeleton shown while a conversation loads.

use leptos::prelude::*;

use super::{
    local_hhmm,
    rich_text::{self, Block, Inline},
    state::{Delivery, Item},
    use_chat,
};

/// A message row. Own messages sit on the right (`chat-end`). Every row
/// carries `data-message-id` (the server id, or the `client_msg_id` while
/// unconfirmed); own rows carry `data-status` = pending | sent | failed.
/// The own message whose id `seen` holds says "Seen" instead of "Sent".
#[component]
pub fn Bubble(item: Item, peer: String, seen: Memo<Option<String>>, on_image_load: Callback<()>) -> impl IntoView {
    let chat = use_chat();
    struct Row {
        id: String,
        client_msg_id: Option<String>,
        own: bool,
        text: String,
        image: Option<String>,
        created_at: String,
        status: Option<&'static str>,
        error: Option<String>,
    }
    let row = match item {
        Item::Confirmed(m) => {
            let own = m.sender_id != peer;
            Row {
                id: m.id,
                client_msg_id: m.client_msg_id,
                own,
                text: m.text,
                image: m.image.filter(|s| !s.is_empty()),
                created_at: m.created_at,
                status: own.then_some("sent"),
                error: None,
            }
        }
        Item::Outgoing(o) => Row {
            id: o.client_msg_id.clone(),
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
        },
    };

    let author = if row.own {
        "you".to_string()
    } else {
        chat.contact_untracked(&peer).map(|c| c.full_name).unwrap_or_else(|| "your contact".into())
    };
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
    // Parsed again once the user's name is known (it arrives with the
    // socket's `Hello`, maybe after the history), for mentions of them.
    let text = (!row.text.is_empty()).then(|| {
        let text = row.text;
        view! {
            <div class="break-words space-y-1" data-testid="message-text">
                {move || blocks_view(rich_text::parse(&text, chat.me_name.get().as_deref()))}
            </div>
        }
    });
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
            let is_seen = move || seen.with(|s| s.as_deref() == Some(id.as_str()));
            view! {
                {move || {
                    if is_seen() {
                        view! { <span class="opacity-60" data-testid="seen-marker">"Seen"</span> }.into_any()
                    } else {
                        view! { <span class="opacity-60">"Sent"</span> }.into_any()
                    }
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
            <div class="chat-header text-xs opacity-60">
                <time datetime=row.created_at>{time}</time>
            </div>
            <div class={if row.own {
                "chat-bubble chat-bubble-primary max-w-[85%] sm:max-w-md"
            } else {
                "chat-bubble max-w-[85%] sm:max-w-md"
            }}>{image} {text}</div>
            <div class="chat-footer text-xs">{footer}</div>
        </div>
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

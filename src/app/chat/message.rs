//! One message bubble, and the skeleton shown while a conversation loads.

use leptos::prelude::*;

use super::{
    local_hhmm,
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
        edited: bool,
        deleted: bool,
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
                edited: m.edited_at.is_some(),
                deleted: m.deleted,
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
            edited: false,
            deleted: false,
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
    let original_text = row.text.clone();
    let text = (!row.text.is_empty()).then(|| {
        view! { <p class="whitespace-pre-wrap break-words">{row.text}</p> }
    });
    // A deleted message keeps its place, as a tombstone.
    let (image, text) = if row.deleted {
        let tombstone = view! {
            <p class="italic opacity-70" data-testid="deleted-message">"This message was deleted"</p>
        };
        (None, Some(tombstone))
    } else {
        (image, text)
    };
    // Own confirmed messages can be edited and deleted (not tombstones).
    let changeable = row.status == Some("sent") && !row.deleted;
    let actions = changeable.then(|| message_actions(row.id.clone(), original_text));
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
                {(row.edited && !row.deleted).then(|| view! { <span class="ml-1" data-testid="edited-mark">"(edited)"</span> })}
            </div>
            <div class={if row.own {
                "chat-bubble chat-bubble-primary max-w-[85%] sm:max-w-md"
            } else {
                "chat-bubble max-w-[85%] sm:max-w-md"
            }}>{image} {text}</div>
            <div class="chat-footer text-xs flex flex-wrap items-center gap-2">{footer} {actions}</div>
        </div>
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

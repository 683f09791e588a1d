//! The message composer: text (Enter sends, Shift+Enter breaks the line),
//! an optional image with a preview, and the Send button.

use leptos::{ev, html, prelude::*};

use super::{state, use_chat};
use crate::{
    app::{blob_url, validate},
    protocol::MAX_TEXT_CHARS,
};

/// The character counter appears this close to the limit.
const COUNTER_FROM: usize = MAX_TEXT_CHARS - 500;
/// The textarea grows with its content up to this many rows.
const MAX_ROWS: usize = 6;

/// A picked image, as the composer shows it: file name and `blob:` preview.
#[derive(Clone, Debug, PartialEq)]
struct Attachment {
    name: String,
    preview: String,
}

#[component]
pub fn Composer(peer: String) -> impl IntoView {
    let chat = use_chat();
    let draft = chat.drafts.with_value(|d| d.get(&peer).cloned()).unwrap_or_default();
    let text = RwSignal::new(draft);
    let attachment = RwSignal::new(None::<Attachment>);
    // The picked file itself (browser only; not `Send`).
    let file = StoredValue::<_, super::BrowserStorage>::new_with_storage(None::<super::ImageFile>);
    let textarea = NodeRef::<html::Textarea>::new();
    let file_input = NodeRef::<html::Input>::new();

    let chars = Memo::new(move |_| text.with(|t| t.chars().count()));
    let too_long = move || chars.get() > MAX_TEXT_CHARS;
    let has_content = move || text.with(|t| !t.trim().is_empty()) || attachment.with(Option::is_some);
    let can_send = move || has_content() && !too_long();
    let rows = move || text.with(|t| t.lines().count().max(1) + usize::from(t.ends_with('\n'))).min(MAX_ROWS);

    // Focus lands here when a conversation opens.
    Effect::new(move |_| {
        if let Some(el) = textarea.get() {
            let _ = el.focus();
        }
    });

    let save_draft = {
        let peer = peer.clone();
        move |value: String| {
            chat.drafts.update_value(|d| {
                if value.is_empty() {
                    d.remove(&peer);
                } else {
                    d.insert(peer.clone(), value);
                }
            });
        }
    };

    let clear_attachment = move |revoke: bool| {
        if let Some(a) = attachment.get_untracked()
            && revoke
        {
            blob_url::revoke(&a.preview);
        }
        attachment.set(None);
        file.set_value(None);
        if let Some(input) = file_input.get_untracked() {
            input.set_value("");
        }
    };

    let submit = {
        let peer = peer.clone();
        let save_draft = save_draft.clone();
        move || {
            if !can_send() {
                return;
            }
            let body = text.get_untracked().trim().to_string();
            let image = match (file.get_value(), attachment.get_untracked()) {
                (Some(f), Some(a)) => Some((f, a.preview)),
                _ => None,
            };
            chat.send(peer.clone(), body, image);
            text.set(String::new());
            save_draft(String::new());
            // The preview URL now belongs to the pending message.
            clear_attachment(false);
            if let Some(el) = textarea.get_untracked() {
                let _ = el.focus();
            }
        }
    };

    let on_keydown = {
        let submit = submit.clone();
        move |ev: ev::KeyboardEvent| {
            if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                ev.prevent_default();
                submit();
            }
        }
    };
    let on_submit = {
        let submit = submit.clone();
        move |ev: ev::SubmitEvent| {
            ev.prevent_default();
            submit();
        }
    };

    let on_pick = move |_ev: ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            let Some(input) = file_input.get_untracked() else { return };
            let Some(picked) = input.files().and_then(|list| list.get(0)) else { return };
            if let Some(message) = validate::image_type(&picked.type_()) {
                chat.notify_error(message);
                input.set_value("");
                return;
            }
            let Some(preview) = blob_url::create(&picked) else {
                chat.notify_error("Could not read that image.");
                return;
            };
            clear_attachment(true);
            attachment.set(Some(Attachment { name: picked.name(), preview }));
            file.set_value(Some(picked));
            if let Some(el) = textarea.get_untracked() {
                let _ = el.focus();
            }
        }
    };

    on_cleanup(move || {
        if let Some(Some(a)) = attachment.try_get_untracked() {
            blob_url::revoke(&a.preview);
        }
    });

    let preview = move || {
        attachment.get().map(|a| {
            view! {
                <div class="relative mb-2 inline-block" data-testid="attachment-preview">
                    <img src=a.preview alt=format!("Attached image {}", a.name) class="h-20 max-w-40 rounded-lg border border-base-300 object-cover" />
                    <button
                        type="button"
                        class="btn btn-circle btn-xs absolute -top-2 -right-2"
                        aria-label="Remove image"
                        title="Remove image"
                        on:click=move |_| clear_attachment(true)
                    >
                        "×"
                    </button>
                </div>
            }
        })
    };

    let counter = move || {
        let n = chars.get();
        (n >= COUNTER_FROM).then(|| {
            view! {
                <span
                    class={if n > MAX_TEXT_CHARS { "text-xs text-error" } else { "text-xs text-base-content/60" }}
                    aria-live="polite"
                    data-testid="char-counter"
                >
                    {format!("{n} / {MAX_TEXT_CHARS}")}
                    {(n > MAX_TEXT_CHARS).then_some(" — too long")}
                </span>
            }
        })
    };

    // "Replying to …" above the box while the next send answers a message.
    let reply_peer = peer.clone();
    let replying = move || {
        let id = chat.replying.get()?;
        let quoted = chat.timelines.with(|m| m.get(&reply_peer).and_then(|t| t.get(&id).cloned()))?;
        let author = if quoted.sender_id == reply_peer {
            chat.contact_untracked(&reply_peer).map(|c| c.full_name).unwrap_or_else(|| "them".into())
        } else {
            "yourself".to_string()
        };
        Some(view! {
            <div class="mb-2 flex items-center gap-2 rounded-lg bg-base-200 px-3 py-1 text-sm" data-testid="replying-to">
                <span class="min-w-0 flex-1 truncate">
                    <span class="font-semibold">{format!("Replying to {author}: ")}</span>
                    {state::snippet(&quoted, 80)}
                </span>
                <button
                    type="button"
                    class="btn btn-ghost btn-xs"
                    aria-label="Cancel reply"
                    on:click=move |_| chat.replying.set(None)
                >
                    "×"
                </button>
            </div>
        })
    };
    // Focus moves to the box when a reply starts.
    Effect::new(move |_| {
        if chat.replying.with(Option::is_some)
            && let Some(el) = textarea.get_untracked()
        {
            let _ = el.focus();
        }
    });

    let save = save_draft.clone();
    let typed_peer = peer.clone();
    view! {
        <form class="border-t border-base-300 bg-base-100 p-3" on:submit=on_submit data-testid="composer">
            {replying}
            {preview}
            <div class="flex items-end gap-2">
                <input
                    node_ref=file_input
                    type="file"
                    accept=validate::IMAGE_ACCEPT
                    class="hidden"
                    tabindex="-1"
                    aria-hidden="true"
                    data-testid="attach-input"
                    on:change=on_pick
                />
                <button
                    type="button"
                    class="btn btn-ghost btn-square"
                    aria-label="Attach image"
                    title="Attach image"
                    on:click=move |_| {
                        if let Some(input) = file_input.get_untracked() {
                            input.click();
                        }
                    }
                >
                    <svg xmlns="http://www.w3.org/2000/svg" class="size-5" fill="none" viewBox="0 0 24 24" stroke="currentColor" stroke-width="2" aria-hidden="true">
                        <path stroke-linecap="round" stroke-linejoin="round" d="m18.4 10.6-6.9 6.9a4.5 4.5 0 0 1-6.4-6.4l7.6-7.6a3 3 0 0 1 4.2 4.2l-7.6 7.6a1.5 1.5 0 0 1-2.1-2.1l6.9-6.9" />
                    </svg>
                </button>
                <label for="chat-composer-text" class="sr-only">"Message"</label>
                <textarea
                    node_ref=textarea
                    id="chat-composer-text"
                    class="textarea min-h-10 flex-1 resize-none"
                    placeholder="Type a message…"
                    rows=rows
                    prop:value=move || text.get()
                    on:input=move |ev| {
                        let value = event_target_value(&ev);
                        // Clearing the box is not typing a message.
                        if !value.trim().is_empty() {
                            chat.user_typed(&typed_peer);
                        }
                        save(value.clone());
                        text.set(value);
                    }
                    on:keydown=on_keydown
                    aria-invalid=move || too_long().then_some("true")
                ></textarea>
                <button type="submit" class="btn btn-primary" disabled=move || !can_send()>
                    "Send"
                </button>
            </div>
            <div class="flex justify-end">{counter}</div>
        </form>
    }
}

//! Form building blocks shared by signup, login and profile: labelled fields
//! with their error line, the error alert and the submit button.

use leptos::prelude::*;

use super::{
    icons::{Icon, IconName},
    validate::FieldMessages,
};
use crate::api::AppError;

/// Error messages of one form: the client's own checks first, then the
/// server's answer (which is authoritative once it arrives).
#[derive(Clone, Copy)]
pub struct FormErrors {
    client: RwSignal<FieldMessages>,
    server: Signal<Option<AppError>>,
}

impl FormErrors {
    /// `server` is the latest server error (`None` while a request is
    /// pending, so stale messages disappear as soon as the user resubmits).
    pub fn new(server: Signal<Option<AppError>>) -> Self {
        Self { client: RwSignal::new(FieldMessages::new()), server }
    }

    /// Replaces the client-side messages (empty map = all fields valid).
    pub fn set_client(&self, messages: FieldMessages) {
        self.client.set(messages);
    }

    /// The message to show under `field`, if any.
    pub fn field(&self, field: &'static str) -> Signal<Option<String>> {
        let this = *self;
        Signal::derive(move || {
            this.client
                .with(|c| c.get(field).cloned())
                .or_else(|| this.server.with(|s| s.as_ref().and_then(|err| err.field_error(field))))
        })
    }

    /// The server's error, for the alert above the form.
    pub fn server(&self) -> Signal<Option<AppError>> {
        self.server
    }
}

/// A labelled single-line input with its error line below.
///
/// The `<label for=id>` makes the field reachable by its label text (screen
/// readers, `getByLabel`). `value` is only the initial value.
#[component]
pub fn TextField(
    id: &'static str,
    name: &'static str,
    label: &'static str,
    #[prop(into)] error: Signal<Option<String>>,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional)] autocomplete: Option<&'static str>,
    #[prop(optional, into)] value: Option<String>,
    #[prop(optional)] required: bool,
    #[prop(optional)] placeholder: Option<&'static str>,
    /// Help text shown under the field while it has no error.
    #[prop(optional)]
    hint: Option<&'static str>,
) -> impl IntoView {
    let error_id = format!("{id}-error");
    let describedby = error_id.clone();
    view! {
        <div class="flex flex-col gap-1.5">
            <label for=id class="text-sm font-medium">
                {label}
            </label>
            <input
                id=id
                name=name
                type=kind
                value=value
                autocomplete=autocomplete
                placeholder=placeholder
                required=required
                aria-invalid=move || error.with(Option::is_some).to_string()
                aria-describedby=describedby
                class=move || {
                    if error.with(Option::is_some) {
                        "input input-error w-full"
                    } else {
                        "input w-full"
                    }
                }
            />
            <FieldMessage id=error_id error=error hint=hint.unwrap_or_default()/>
        </div>
    }
}

/// A labelled multi-line input with its error line below. `optional` adds
/// an "Optional" badge next to (not inside) the label.
#[component]
pub fn TextAreaField(
    id: &'static str,
    name: &'static str,
    label: &'static str,
    #[prop(into)] error: Signal<Option<String>>,
    #[prop(optional, into)] value: String,
    #[prop(default = 3)] rows: u32,
    #[prop(optional)] optional: bool,
    #[prop(optional)] placeholder: Option<&'static str>,
    #[prop(optional)] hint: Option<&'static str>,
) -> impl IntoView {
    let error_id = format!("{id}-error");
    let describedby = error_id.clone();
    view! {
        <div class="flex flex-col gap-1.5">
            <div class="flex items-center justify-between">
                <label for=id class="text-sm font-medium">
                    {label}
                </label>
                {optional.then(|| view! { <span class="badge badge-ghost badge-sm">"Optional"</span> })}
            </div>
            <textarea
                id=id
                name=name
                rows=rows
                placeholder=placeholder
                aria-invalid=move || error.with(Option::is_some).to_string()
                aria-describedby=describedby
                class=move || {
                    if error.with(Option::is_some) {
                        "textarea textarea-error w-full"
                    } else {
                        "textarea w-full"
                    }
                }
                // A property, never children: the view layer does not escape
                // a textarea's text children, so user text there (a bio of
                // `</textarea><script>…`) would become markup.
                prop:value=value
            ></textarea>
            <FieldMessage id=error_id error=error hint=hint.unwrap_or_default()/>
        </div>
    }
}

/// The line under a field: its error if any, else its hint. Always present
/// (and referenced by `aria-describedby`), so the layout does not jump.
#[component]
pub fn FieldMessage(
    #[prop(into)] id: String,
    #[prop(into)] error: Signal<Option<String>>,
    #[prop(optional)] hint: &'static str,
) -> impl IntoView {
    view! {
        <p id=id class="min-h-5 text-sm" aria-live="polite">
            {move || match error.get() {
                Some(message) => view! { <span class="text-error">{message}</span> }.into_any(),
                None => view! { <span class="text-base-content/60">{hint}</span> }.into_any(),
            }}
        </p>
    }
}

/// The server's top-level error message, above the form.
#[component]
pub fn FormAlert(#[prop(into)] error: Signal<Option<AppError>>) -> impl IntoView {
    move || {
        error.get().map(|err| {
            view! {
                <div role="alert" class="alert alert-error alert-soft">
                    <Icon icon=IconName::AlertCircle/>
                    <span>{err.message}</span>
                </div>
            }
        })
    }
}

/// The form's submit button: shows a spinner and is disabled while the
/// request is in flight (its accessible name stays `label`).
#[component]
pub fn SubmitButton(
    label: &'static str,
    #[prop(into)] pending: Signal<bool>,
    #[prop(default = "btn btn-primary w-full")] class: &'static str,
) -> impl IntoView {
    view! {
        <button
            type="submit"
            class=class
            disabled=move || pending.get()
            aria-busy=move || pending.get().to_string()
        >
            {move || {
                pending
                    .get()
                    .then(|| {
                        view! {
                            <span class="loading loading-spinner loading-sm" aria-hidden="true"></span>
                        }
                    })
            }}
            {label}
        </button>
    }
}

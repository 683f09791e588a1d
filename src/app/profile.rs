//! `/profile` (signed-in only): the user's card and the edit form.
//!
//! The form is a real `multipart/form-data` post to `update_profile`, so it
//! works without JS (the server redirects back here). In the browser the
//! submit is intercepted: fields are checked, the form is sent as
//! `FormData`, and on success the session's user is replaced, so the navbar
//! and this page update without a reload. Picking an avatar shows a preview
//! at once, from a local object URL.

use leptos::{ev::SubmitEvent, html, prelude::*};
use leptos_meta::Title;

#[cfg(feature = "hydrate")]
use super::validate::{self, FieldMessages};
use super::{
    avatar::{Avatar, AvatarSize},
    blob_url,
    fields::{FieldMessage, FormAlert, FormErrors, SubmitButton, TextAreaField, TextField},
    session::{Session, use_session},
    toast::{Toasts, use_toast},
    validate::IMAGE_ACCEPT,
};
use crate::api::{AppError, dto::User};

/// State of the edit form. It lives in the page, not in the form, because
/// the form is re-rendered when the user changes (after a save).
#[derive(Clone, Copy)]
struct ProfileFormState {
    pending: RwSignal<bool>,
    server_error: RwSignal<Option<AppError>>,
    errors: FormErrors,
    /// Object URL of the picked avatar, shown until it is saved.
    preview: RwSignal<Option<String>>,
    // Captured here because event handlers and tasks run outside the
    // component's reactive owner, where `use_context` finds nothing.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    session: Session,
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    toast: Toasts,
}

impl ProfileFormState {
    fn new() -> Self {
        let server_error = RwSignal::new(error_from_redirect());
        let errors = FormErrors::new(server_error.into());
        Self {
            pending: RwSignal::new(false),
            server_error,
            errors,
            preview: RwSignal::new(None),
            session: use_session(),
            toast: use_toast(),
        }
    }

    /// The server error for the alert above the form: everything except an
    /// upload rejection, which shows under the avatar input instead.
    fn alert_error(&self) -> Signal<Option<AppError>> {
        let server_error = self.server_error;
        Signal::derive(move || server_error.get().filter(|err| !is_upload_rejection(err)))
    }

    /// The message under the avatar input: a field error, or the server's
    /// message for a too-large (413) or wrong-type (415) upload.
    fn avatar_error(&self) -> Signal<Option<String>> {
        let field = self.errors.field("avatar");
        let server_error = self.server_error;
        Signal::derive(move || {
            field.get().or_else(|| {
                server_error
                    .with(|err| err.as_ref().filter(|err| is_upload_rejection(err)).map(|err| err.message.clone()))
            })
        })
    }

    /// Replaces the preview, releasing the previous object URL.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn set_preview(&self, url: Option<String>) {
        if let Some(Some(old)) = self.preview.try_get_untracked() {
            blob_url::revoke(&old);
        }
        self.preview.try_set(url);
    }
}

/// A too-large (413) or wrong-type (415) avatar, without field details.
fn is_upload_rejection(err: &AppError) -> bool {
    err.errors.is_empty() && matches!(err.status, 413 | 415)
}

/// The error of a no-JS submission, which the server put in the URL when it
/// redirected back here.
fn error_from_redirect() -> Option<AppError> {
    use leptos::server::ServerActionError;
    use leptos::server_fn::{ServerFn, error::ServerFnUrlError};

    let error = use_context::<ServerActionError>()?;
    (error.path() == crate::api::auth::UpdateProfile::PATH)
        .then(|| ServerFnUrlError::<AppError>::decode_err(error.err()))
}

#[component]
pub fn ProfilePage() -> impl IntoView {
    let session = use_session();
    let state = ProfileFormState::new();
    on_cleanup(move || state.set_preview(None));

    view! {
        <Title text="Profile"/>
        <div class="mx-auto max-w-5xl px-4 py-10">
            <header class="mb-8">
                <h1 class="text-3xl font-bold tracking-tight">"Your profile"</h1>
                <p class="mt-2 text-base-content/70">"This is how other people see you in Charcha."</p>
            </header>
            {move || {
                session
                    .user_now()
                    .map(|user| {
                        view! {
                            <div class="grid gap-6 lg:grid-cols-[20rem_1fr]">
                                <ProfileCard user=user.clone() preview=state.preview/>
                                <ProfileForm user=user state=state/>
                            </div>
                        }
                    })
            }}
        </div>
    }
}

/// The user's public card.
#[component]
fn ProfileCard(user: User, preview: RwSignal<Option<String>>) -> impl IntoView {
    let name = user.full_name.clone();
    let saved_picture = user.profile_picture.clone();
    let member_since = member_since(&user.created_at);
    view! {
        <section
            class="card h-fit border border-base-300 bg-base-100 shadow-sm"
            aria-labelledby="profile-name"
        >
            <div class="card-body items-center gap-3 text-center">
                {move || {
                    let url = preview.get().unwrap_or_else(|| saved_picture.clone());
                    view! { <Avatar name=name.clone() url=url size=AvatarSize::Large ring=true/> }
                }}
                <h2 id="profile-name" class="mt-2 text-2xl font-bold">
                    {user.full_name.clone()}
                </h2>
                <p class="text-base-content/70">{user.email}</p>
                {if user.bio.trim().is_empty() {
                    view! { <p class="italic text-base-content/50">"No bio yet."</p> }.into_any()
                } else {
                    view! { <p class="whitespace-pre-line">{user.bio}</p> }.into_any()
                }}
                <div class="divider my-1"></div>
                <p class="text-sm text-base-content/60">
                    "Member since "
                    <time datetime=user.created_at>{member_since}</time>
                </p>
            </div>
        </section>
    }
}

/// The edit form.
#[component]
fn ProfileForm(user: User, state: ProfileFormState) -> impl IntoView {
    let form_ref = NodeRef::<html::Form>::new();
    let on_submit = move |ev: SubmitEvent| submit(ev, form_ref, state);
    let on_avatar_change = move |ev: leptos::ev::Event| avatar_picked(ev, state);
    let avatar_error = state.avatar_error();

    view! {
        <form
            node_ref=form_ref
            method="post"
            enctype="multipart/form-data"
            action=update_profile_url()
            novalidate=true
            on:submit=on_submit
            class="card border border-base-300 bg-base-100 shadow-sm"
            aria-labelledby="edit-profile-title"
        >
            <div class="card-body gap-2">
                <h2 id="edit-profile-title" class="card-title mb-2">
                    "Edit profile"
                </h2>
                <FormAlert error=state.alert_error()/>
                <TextField
                    id="profile-full-name"
                    name="full_name"
                    label="Full name"
                    autocomplete="name"
                    value=user.full_name
                    required=true
                    error=state.errors.field("full_name")
                />
                <TextAreaField
                    id="profile-bio"
                    name="bio"
                    label="Bio"
                    rows=4
                    value=user.bio
                    placeholder="A line about you"
                    error=state.errors.field("bio")
                />
                <div class="flex flex-col gap-1.5">
                    <label for="profile-avatar" class="text-sm font-medium">
                        "Avatar"
                    </label>
                    <div class="flex items-center gap-3">
                        {move || {
                            state
                                .preview
                                .get()
                                .map(|url| {
                                    view! {
                                        <div class="avatar shrink-0">
                                            <div class="w-12 rounded-full">
                                                <img src=url alt="Preview of the new picture"/>
                                            </div>
                                        </div>
                                    }
                                })
                        }}
                        <input
                            id="profile-avatar"
                            name="avatar"
                            type="file"
                            accept=IMAGE_ACCEPT
                            aria-describedby="profile-avatar-error"
                            aria-invalid=move || avatar_error.with(Option::is_some).to_string()
                            class=move || {
                                if avatar_error.with(Option::is_some) {
                                    "file-input file-input-error w-full"
                                } else {
                                    "file-input w-full"
                                }
                            }
                            on:change=on_avatar_change
                        />
                    </div>
                    <FieldMessage
                        id="profile-avatar-error"
                        error=avatar_error
                        hint="PNG, JPEG, WebP or GIF."
                    />
                </div>
                <div class="card-actions mt-2 items-center justify-end">
                    <SubmitButton label="Save" pending=state.pending class="btn btn-primary min-w-32"/>
                </div>
            </div>
        </form>
    }
}

fn update_profile_url() -> &'static str {
    use leptos::server_fn::ServerFn;
    crate::api::auth::UpdateProfile::url()
}

/// "March 2025" from an RFC 3339 timestamp; the raw date if it is malformed.
pub fn member_since(rfc3339: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let mut parts = rfc3339.get(..7).unwrap_or_default().split('-');
    let year = parts.next().filter(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()));
    let month = parts.next().and_then(|m| m.parse::<usize>().ok()).and_then(|m| MONTHS.get(m.wrapping_sub(1)));
    match (year, month) {
        (Some(year), Some(month)) => format!("{month} {year}"),
        _ => rfc3339.get(..10).unwrap_or(rfc3339).to_string(),
    }
}

/// Checks the picked file and previews it.
fn avatar_picked(ev: leptos::ev::Event, state: ProfileFormState) {
    #[cfg(feature = "hydrate")]
    {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let file = input.files().and_then(|files| files.get(0));
        let Some(file) = file else {
            state.set_preview(None);
            return;
        };
        let mut messages = FieldMessages::new();
        if let Some(message) = validate::image_type(&file.type_()) {
            messages.insert("avatar", message);
            state.set_preview(None);
        } else {
            state.set_preview(blob_url::create(&file));
        }
        state.errors.set_client(messages);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (ev, state);
}

/// Sends the form with `update_profile`, in the browser.
fn submit(ev: SubmitEvent, form_ref: NodeRef<html::Form>, state: ProfileFormState) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;

        ev.prevent_default();
        if state.pending.get_untracked() {
            return;
        }
        let Some(form) = form_ref.get_untracked() else { return };
        let toast = state.toast;
        let Ok(data) = web_sys::FormData::new_with_form(&form) else {
            toast.error("Could not read the form");
            return;
        };

        let text = |name: &str| data.get(name).as_string().unwrap_or_default();
        let mut messages = validate::profile(&text("full_name"), &text("bio"));
        match data.get("avatar").dyn_into::<web_sys::File>() {
            // No file picked: the browser still sends an empty part; drop it.
            Ok(file) if file.size() == 0.0 && file.name().is_empty() => {
                data.delete("avatar");
            }
            Ok(file) => {
                if let Some(message) = validate::image_type(&file.type_()) {
                    messages.insert("avatar", message);
                }
            }
            Err(_) => {}
        }
        let valid = messages.is_empty();
        state.errors.set_client(messages);
        if !valid {
            return;
        }

        state.pending.set(true);
        state.server_error.set(None);
        let session = state.session;
        leptos::task::spawn_local(async move {
            let result = crate::api::auth::update_profile(data.into()).await;
            // `try_*`: the page may have been left while the request ran.
            state.pending.try_set(false);
            match result {
                Ok(user) => {
                    state.set_preview(None);
                    session.set_user(Some(user));
                    // Fields now default to the saved values; clear the file input.
                    form.reset();
                    toast.success("Profile saved");
                }
                Err(err) => {
                    state.server_error.try_set(Some(err));
                }
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (ev, form_ref, state);
}

#[cfg(test)]
mod tests {
    use super::member_since;

    #[test]
    fn formats_month_and_year() {
        assert_eq!(member_since("2025-03-14T10:00:00.000Z"), "March 2025");
        assert_eq!(member_since("1999-12-01T00:00:00Z"), "December 1999");
        assert_eq!(member_since("2025-13-01"), "2025-13-01");
        assert_eq!(member_since("soon"), "soon");
        assert_eq!(member_since(""), "");
    }
}

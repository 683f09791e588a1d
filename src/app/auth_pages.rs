//! `/signup` and `/login`.
//!
//! Both forms post to the server functions' URLs, so they also work before
//! the wasm loads (or without JS: the server redirects back, and the error,
//! if any, rides along in the URL). With JS, the submit handler runs the
//! client checks first and dispatches the server function only when they
//! pass. On success the session is updated, and the guest-only guard
//! around these pages sends the user to `/chat`.

use leptos::{ev::SubmitEvent, prelude::*, server_fn::ServerFn as _};
use leptos_meta::Title;
use leptos_router::components::A;

use super::{
    fields::{FormAlert, FormErrors, SubmitButton, TextAreaField, TextField},
    icons::{Icon, IconName},
    session::use_session,
    toast::use_toast,
    validate::{self, FieldMessages},
};
use crate::api::{
    AppError,
    auth::{Login, Signup},
    dto::User,
};

/// The server's error for an action, hidden while a new attempt is pending.
fn action_error<I, T>(action: ServerAction<I>) -> Signal<Option<AppError>>
where
    I: leptos::server_fn::ServerFn<Output = T, Error = AppError> + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    Signal::derive(move || if action.pending().get() { None } else { action.value().get().and_then(Result::err) })
}

/// A text field of the submitted form (empty when absent).
fn form_field(data: &leptos::web_sys::FormData, name: &str) -> String {
    data.get(name).as_string().unwrap_or_default()
}

/// Handles a form's submission in the browser: reads the fields with
/// `read`, runs `check` on them, and either shows the problems or
/// dispatches `action`. Plain `<form>`s posting to the server function's
/// URL, not `ActionForm`s: they work the same before hydration (the
/// browser posts the form), but the client carries neither `ActionForm`'s
/// code for each server function nor its generic form decoder (`serde_qs`):
/// 60 KB of wasm, 17 KiB compressed (BENCHMARKS.md, client size).
fn submit<I>(
    ev: &SubmitEvent,
    errors: FormErrors,
    action: ServerAction<I>,
    read: impl Fn(&leptos::web_sys::FormData) -> I,
    check: impl Fn(&I) -> FieldMessages,
) where
    I: leptos::server_fn::ServerFn + Clone + Send + Sync + 'static,
    I::Output: Send + Sync + 'static,
    I::Error: Send + Sync + 'static,
{
    use leptos::wasm_bindgen::JsCast;
    ev.prevent_default();
    let form = ev.target().and_then(|t| t.dyn_into::<leptos::web_sys::HtmlFormElement>().ok());
    let Some(data) = form.and_then(|f| leptos::web_sys::FormData::new_with_form(&f).ok()) else { return };
    let input = read(&data);
    let messages = check(&input);
    let valid = messages.is_empty();
    errors.set_client(messages);
    if valid {
        action.dispatch(input);
    } else {
        // Drop the previous server answer so only current problems show.
        action.value().set(None);
    }
}

/// Marks the session signed in once `action` succeeds, with a greeting toast.
fn sign_in_on_success<I>(action: ServerAction<I>, greeting: &'static str)
where
    I: leptos::server_fn::ServerFn<Output = User, Error = AppError> + Clone + Send + Sync + 'static,
{
    let session = use_session();
    let toast = use_toast();
    Effect::new(move |_| {
        if let Some(Ok(user)) = action.value().get() {
            toast.success(greeting);
            session.set_user(Some(user));
        }
    });
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let action = ServerAction::<Login>::new();
    let errors = FormErrors::new(action_error(action));
    sign_in_on_success(action, "Welcome back!");

    let on_submit = move |ev: SubmitEvent| {
        submit(
            &ev,
            errors,
            action,
            |data| Login { email: form_field(data, "email"), password: form_field(data, "password") },
            |input| validate::login(&input.email, &input.password),
        );
    };

    view! {
        <Title text="Log in"/>
        <AuthCard title="Welcome back" subtitle="Log in to pick up your conversations where you left them.">
            <FormAlert error=errors.server()/>
            <form action=Login::url() method="post" on:submit=on_submit novalidate=true class="flex flex-col gap-2">
                <TextField
                    id="login-email"
                    name="email"
                    label="Email"
                    kind="email"
                    autocomplete="email"
                    placeholder="you@example.com"
                    required=true
                    error=errors.field("email")
                />
                <TextField
                    id="login-password"
                    name="password"
                    label="Password"
                    kind="password"
                    autocomplete="current-password"
                    required=true
                    error=errors.field("password")
                />
                <SubmitButton label="Log in" pending=action.pending()/>
            </form>
            <p class="text-center text-sm text-base-content/70">
                "New to Charcha? "
                <A href="/signup" attr:class="link link-primary">
                    "Create an account"
                </A>
            </p>
        </AuthCard>
    }
}

#[component]
pub fn SignupPage() -> impl IntoView {
    let action = ServerAction::<Signup>::new();
    let errors = FormErrors::new(action_error(action));
    sign_in_on_success(action, "Welcome to Charcha!");

    let on_submit = move |ev: SubmitEvent| {
        submit(
            &ev,
            errors,
            action,
            |data| Signup {
                email: form_field(data, "email"),
                password: form_field(data, "password"),
                full_name: form_field(data, "full_name"),
                bio: form_field(data, "bio"),
            },
            |input| validate::signup(&input.full_name, &input.email, &input.password, &input.bio),
        );
    };

    view! {
        <Title text="Sign up"/>
        <AuthCard title="Create your account" subtitle="It takes a few seconds. Then say hello.">
            <FormAlert error=errors.server()/>
            <form action=Signup::url() method="post" on:submit=on_submit novalidate=true class="flex flex-col gap-2">
                <TextField
                    id="signup-full-name"
                    name="full_name"
                    label="Full name"
                    autocomplete="name"
                    placeholder="Ada Lovelace"
                    required=true
                    error=errors.field("full_name")
                />
                <TextField
                    id="signup-email"
                    name="email"
                    label="Email"
                    kind="email"
                    autocomplete="email"
                    placeholder="you@example.com"
                    required=true
                    error=errors.field("email")
                />
                <TextField
                    id="signup-password"
                    name="password"
                    label="Password"
                    kind="password"
                    autocomplete="new-password"
                    required=true
                    hint="At least 8 characters."
                    error=errors.field("password")
                />
                <TextAreaField
                    id="signup-bio"
                    name="bio"
                    label="Bio"
                    optional=true
                    placeholder="A line about you"
                    error=errors.field("bio")
                />
                <SubmitButton label="Sign up" pending=action.pending()/>
            </form>
            <p class="text-center text-sm text-base-content/70">
                "Already have an account? "
                <A href="/login" attr:class="link link-primary">
                    "Sign in instead"
                </A>
            </p>
        </AuthCard>
    }
}

/// The centred card both pages share.
#[component]
fn AuthCard(title: &'static str, subtitle: &'static str, children: Children) -> impl IntoView {
    view! {
        <div class="flex justify-center px-4 py-10 sm:py-16">
            <section class="card w-full max-w-md border border-base-300 bg-base-100 shadow-xl">
                <div class="card-body gap-5">
                    <div class="flex flex-col items-center gap-3 text-center">
                        <span class="rounded-2xl bg-primary/10 p-3 text-primary">
                            <Icon icon=IconName::Chat class="size-7"/>
                        </span>
                        <h1 class="text-2xl font-bold">{title}</h1>
                        <p class="text-base-content/70">{subtitle}</p>
                    </div>
                    {children()}
                </div>
            </section>
        </div>
    }
}

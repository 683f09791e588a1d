//! `/settings`: the theme picker. Each choice is a button previewing the
//! theme in its own colours (`data-theme` scopes DaisyUI's variables to the
//! card); pressing one repaints the page at once and remembers the choice.
//! Public: the theme works for visitors too.

use leptos::prelude::*;
use leptos_meta::Title;

use super::{
    icons::{Icon, IconName},
    theme::use_theme,
};
use crate::api::dto::THEMES;

#[component]
pub fn SettingsPage() -> impl IntoView {
    let theme = use_theme();
    view! {
        <Title text="Settings"/>
        <div class="mx-auto max-w-6xl px-4 py-10">
            <header class="mb-8">
                <h1 class="text-3xl font-bold tracking-tight">"Settings"</h1>
                <p class="mt-2 text-base-content/70">"Make Charcha look the way you like."</p>
            </header>
            <div class="grid gap-8 lg:grid-cols-[1fr_20rem]">
                <section aria-labelledby="theme-title">
                    <div class="mb-4 flex flex-wrap items-baseline justify-between gap-2">
                        <h2 id="theme-title" class="text-xl font-semibold">
                            "Theme"
                        </h2>
                        <p class="text-sm text-base-content/70">
                            "Current: "
                            <span class="font-semibold text-base-content">{move || theme.current()}</span>
                        </p>
                    </div>
                    <ul class="grid grid-cols-2 gap-3 sm:grid-cols-3 xl:grid-cols-4">
                        {THEMES.iter().map(|name| view! { <li><ThemeCard name=name/></li> }).collect_view()}
                    </ul>
                </section>
                <ThemePreview/>
            </div>
            <NotificationSettings/>
        </div>
    }
}

/// Browser notifications: off until turned on here, which asks the
/// browser's permission. What the browser allows is read after hydration
/// (the server cannot know), so the first paint says "Checking…".
#[component]
fn NotificationSettings() -> impl IntoView {
    use super::notify::{self, Permission};
    let permission = RwSignal::new(None::<Permission>);
    let enabled = RwSignal::new(false);
    Effect::new(move |_| {
        permission.set(Some(notify::permission()));
        enabled.set(notify::enabled());
    });
    let turn_on = move |_| {
        notify::request(move |answer| {
            permission.set(Some(answer));
            let on = answer == Permission::Granted;
            notify::set_enabled(on);
            enabled.set(on);
        });
    };
    let turn_off = move |_| {
        notify::set_enabled(false);
        enabled.set(false);
    };
    let status = move || match (permission.get(), enabled.get()) {
        (None, _) => "Checking…",
        (Some(Permission::Unsupported), _) => "Not supported by this browser",
        (Some(Permission::Denied), _) => "Blocked: allow notifications for this site in the browser's settings",
        (Some(Permission::Granted), true) => "On",
        (Some(_), _) => "Off",
    };
    view! {
        <section aria-labelledby="notifications-title" class="mt-10 max-w-2xl">
            <h2 id="notifications-title" class="text-xl font-semibold">"Notifications"</h2>
            <p class="mt-1 text-sm text-base-content/70">
                "Get a browser notification when a message arrives in a conversation you are not looking at."
            </p>
            <div class="mt-3 flex flex-wrap items-center gap-3">
                <span class="badge badge-outline" data-testid="notifications-status">{status}</span>
                {move || {
                    let on = enabled.get() && permission.get() == Some(Permission::Granted);
                    let blocked = matches!(permission.get(), Some(Permission::Denied | Permission::Unsupported) | None);
                    if on {
                        view! { <button type="button" class="btn btn-sm" on:click=turn_off>"Turn off notifications"</button> }.into_any()
                    } else {
                        view! {
                            <button type="button" class="btn btn-primary btn-sm" disabled=blocked on:click=turn_on>
                                "Enable browser notifications"
                            </button>
                        }
                        .into_any()
                    }
                }}
            </div>
        </section>
    }
}

/// One theme choice. Its accessible name is exactly the theme's name;
/// `aria-pressed` marks the current one.
#[component]
fn ThemeCard(name: &'static str) -> impl IntoView {
    let theme = use_theme();
    let selected = Memo::new(move |_| theme.current() == name);
    view! {
        <button
            type="button"
            data-theme=name
            aria-pressed=move || selected.get().to_string()
            on:click=move |_| theme.set(name)
            class=move || {
                if selected.get() {
                    "w-full overflow-hidden rounded-box border-2 border-primary bg-base-100 text-left text-base-content shadow-md ring-2 ring-primary/30 transition"
                } else {
                    "w-full overflow-hidden rounded-box border-2 border-base-300 bg-base-100 text-left text-base-content transition hover:-translate-y-0.5 hover:shadow-md"
                }
            }
        >
            <span class="flex h-12 items-stretch gap-1 bg-base-200 p-2" aria-hidden="true">
                <span class="w-3 rounded-sm bg-base-300"></span>
                <span class="flex flex-1 flex-col justify-center gap-1">
                    <span class="h-1.5 w-3/4 rounded-full bg-base-content/30"></span>
                    <span class="h-1.5 w-1/2 rounded-full bg-base-content/20"></span>
                </span>
            </span>
            <span class="flex items-center justify-between gap-2 px-3 py-2">
                <span class="truncate text-sm font-semibold">{name}</span>
                <span class="flex shrink-0 items-center gap-1" aria-hidden="true">
                    <span class="size-3 rounded-full bg-primary"></span>
                    <span class="size-3 rounded-full bg-secondary"></span>
                    <span class="size-3 rounded-full bg-accent"></span>
                    <span class="size-3 rounded-full bg-neutral"></span>
                </span>
            </span>
            <span
                class=move || {
                    if selected.get() {
                        "flex items-center gap-1 px-3 pb-2 text-xs font-medium text-primary"
                    } else {
                        "invisible flex items-center gap-1 px-3 pb-2 text-xs font-medium"
                    }
                }
                aria-hidden="true"
            >
                <Icon icon=IconName::Check class="size-3"/>
                "In use"
            </span>
        </button>
    }
}

/// A sample of the interface in the current theme.
#[component]
fn ThemePreview() -> impl IntoView {
    view! {
        <aside aria-labelledby="preview-title" class="lg:sticky lg:top-24 lg:self-start">
            <h2 id="preview-title" class="mb-4 text-xl font-semibold">
                "Preview"
            </h2>
            <div class="card border border-base-300 bg-base-100 shadow-sm" aria-hidden="true">
                <div class="card-body gap-4">
                    <div class="chat chat-start">
                        <div class="chat-bubble">"Is the new theme live?"</div>
                    </div>
                    <div class="chat chat-end">
                        <div class="chat-bubble chat-bubble-primary">"Already painted!"</div>
                    </div>
                    <div class="flex flex-wrap gap-2">
                        <span class="btn btn-primary btn-sm">"Primary"</span>
                        <span class="btn btn-secondary btn-sm">"Secondary"</span>
                        <span class="btn btn-accent btn-sm">"Accent"</span>
                    </div>
                    <div class="alert alert-success alert-soft text-sm">"Profile saved"</div>
                    <progress class="progress progress-primary w-full" value="70" max="100"></progress>
                </div>
            </div>
        </aside>
    }
}

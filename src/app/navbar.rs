//! The top bar: brand, the signed-in user, and navigation. On large screens
//! every link is visible inline; on small screens they fold into a menu
//! opened by a button.

use leptos::{prelude::*, server_fn::ServerFn as _};
use leptos_router::{components::A, hooks::use_location};

use super::{
    avatar::{Avatar, AvatarSize},
    icons::{Icon, IconName},
    session::use_session,
};
use crate::api::dto::User;

const MENU_ID: &str = "main-menu";

#[component]
pub fn Navbar() -> impl IntoView {
    let session = use_session();
    let menu_open = RwSignal::new(false);

    // Close the small-screen menu whenever the page changes.
    let location = use_location();
    Effect::new(move |_| {
        location.pathname.track();
        menu_open.set(false);
    });

    view! {
        <header class="sticky top-0 z-40 border-b border-base-300 bg-base-100/85 backdrop-blur">
            <div
                class="navbar mx-auto max-w-7xl gap-2 px-4 lg:px-8"
                on:keydown=move |ev| {
                    if ev.key() == "Escape" {
                        menu_open.set(false);
                    }
                }
            >
                <div class="navbar-start">
                    <Brand/>
                </div>
                <div class="navbar-end relative gap-2">
                    <Transition fallback=|| {
                        view! { <span class="skeleton h-8 w-40" aria-hidden="true"></span> }
                    }>
                        {move || Suspend::new(async move {
                            let user = session.current_user().await;
                            view! { <NavContent user=user menu_open=menu_open/> }
                        })}
                    </Transition>
                </div>
            </div>
        </header>
    }
}

/// Logo and name, linking home.
#[component]
fn Brand() -> impl IntoView {
    view! {
        <A href="/" attr:class="flex items-center gap-2 rounded-lg px-1 text-xl font-bold tracking-tight">
            <span class="rounded-xl bg-primary/10 p-2 text-primary">
                <Icon icon=IconName::Chat/>
            </span>
            <span>"Charcha"</span>
            <span class="badge badge-soft badge-primary badge-sm hidden sm:inline-flex" aria-hidden="true">
                "चर्चा"
            </span>
        </A>
    }
}

/// Everything right of the brand, for the given session state.
#[component]
fn NavContent(user: Option<User>, menu_open: RwSignal<bool>) -> impl IntoView {
    let signed_in = user.is_some();
    view! {
        {user.map(|user| view! { <UserBadge user=user/> })}
        <button
            type="button"
            class="btn btn-ghost btn-square lg:hidden"
            aria-label="Menu"
            aria-controls=MENU_ID
            aria-expanded=move || menu_open.get().to_string()
            on:click=move |_| menu_open.update(|open| *open = !*open)
        >
            {move || {
                if menu_open.get() {
                    view! { <Icon icon=IconName::Close/> }
                } else {
                    view! { <Icon icon=IconName::Menu/> }
                }
            }}
        </button>
        <nav
            id=MENU_ID
            aria-label="Main"
            class=move || {
                if menu_open.get() {
                    "absolute right-0 top-full z-50 mt-2 flex w-56 flex-col gap-1 rounded-box border border-base-300 bg-base-100 p-2 shadow-xl lg:static lg:mt-0 lg:w-auto lg:flex-row lg:items-center lg:border-0 lg:bg-transparent lg:p-0 lg:shadow-none"
                } else {
                    "hidden lg:flex lg:flex-row lg:items-center lg:gap-1"
                }
            }
        >
            {if signed_in {
                view! {
                    <NavLink href="/chat" icon=IconName::Chat label="Chat"/>
                    <NavLink href="/profile" icon=IconName::User label="Profile"/>
                    <NavLink href="/settings" icon=IconName::Sliders label="Settings"/>
                    <LogoutButton/>
                }
                    .into_any()
            } else {
                view! {
                    <NavLink href="/login" icon=IconName::LogIn label="Log in"/>
                    <NavLink href="/settings" icon=IconName::Sliders label="Settings"/>
                    <A
                        href="/signup"
                        attr:class="btn btn-primary btn-sm justify-start gap-2 lg:justify-center"
                    >
                        <Icon icon=IconName::UserPlus class="size-4"/>
                        "Sign up"
                    </A>
                }
                    .into_any()
            }}
        </nav>
    }
}

/// A navigation link; highlighted when it is the current page.
#[component]
fn NavLink(href: &'static str, icon: IconName, label: &'static str) -> impl IntoView {
    view! {
        <A
            href=href
            attr:class="btn btn-ghost btn-sm justify-start gap-2 font-medium aria-[current=page]:bg-base-200 aria-[current=page]:text-primary lg:justify-center"
        >
            <Icon icon=icon class="size-4"/>
            {label}
        </A>
    }
}

/// The signed-in user's avatar and full name.
#[component]
fn UserBadge(user: User) -> impl IntoView {
    let name = user.full_name.clone();
    view! {
        <div class="flex min-w-0 items-center gap-2 pr-1">
            <Avatar name=name.clone() url=user.profile_picture size=AvatarSize::Small decorative=true/>
            <span class="max-w-[8rem] truncate text-sm font-semibold sm:max-w-[14rem]" title=name>
                {user.full_name}
            </span>
        </div>
    }
}

/// "Log out" as a real form, so it works before hydration too.
#[component]
fn LogoutButton() -> impl IntoView {
    let session = use_session();
    let pending = session.logout.pending();
    view! {
        // A plain form (not `ActionForm`: see `auth_pages::submit`).
        <form
            action=crate::api::auth::Logout::url()
            method="post"
            class="contents"
            on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                session.logout.dispatch(crate::api::auth::Logout {});
            }
        >
            <button
                type="submit"
                class="btn btn-ghost btn-sm justify-start gap-2 font-medium lg:justify-center"
                disabled=move || pending.get()
            >
                {move || {
                    if pending.get() {
                        view! { <span class="loading loading-spinner loading-xs" aria-hidden="true"></span> }
                            .into_any()
                    } else {
                        view! { <Icon icon=IconName::LogOut class="size-4"/> }.into_any()
                    }
                }}
                "Log out"
            </button>
        </form>
    }
}

//! The Charcha UI: the HTML shell, the router and the pages. The same code
//! renders on the server (`ssr`) and hydrates in the browser (`hydrate`).
//!
//! Shared pieces other modules (the chat page) can use:
//! - [`use_session`] → [`Session`]: the signed-in user, `set_user`, `refetch`, logout.
//! - [`use_toast`] → [`Toasts`]: `.success(msg)`, `.error(msg)`, `.info(msg)`.
//! - [`use_theme`] → [`ThemeState`]: the current DaisyUI theme.
//! - [`avatar::Avatar`], [`icons::Icon`]: small UI components.
//!
//! Every route renders in `SsrMode::Async`: the server waits for the session
//! (and the page's own resources) before sending anything, so pages arrive
//! fully rendered (no JS needed to read them) and guards answer with a real
//! HTTP redirect.

use leptos::prelude::*;
use leptos_meta::{Link, Meta, MetaTags, Title, provide_meta_context};
use leptos_router::{
    Lazy, LazyRoute, SsrMode,
    components::{Route, Router, Routes},
    path,
};

mod auth_pages;
pub mod avatar;
pub mod blob_url;
pub mod chat;
pub mod fields;
pub mod icons;
mod landing;
mod navbar;
mod not_found;
pub mod notify;
mod profile;
pub mod session;
mod settings;
pub mod theme;
pub mod toast;
pub mod validate;

pub use session::{RequireUser, Session, use_session};
pub use theme::{ThemeState, use_theme};
pub use toast::{Toasts, use_toast};

use auth_pages::{LoginPage, SignupPage};
use chat::ChatPage;
use landing::LandingPage;
use navbar::Navbar;
use not_found::NotFoundPage;
use profile::ProfilePage;
use session::RequireGuest;
use settings::SettingsPage;
use toast::ToastHost;

/// The whole HTML document, rendered on the server. `data-theme` comes from
/// the visitor's `theme` cookie, so the first paint already has their theme.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let theme = theme::initial_theme();
    #[cfg(feature = "ssr")]
    set_page_csp(&options);
    let stylesheet = stylesheet_href(&options);
    view! {
        <!DOCTYPE html>
        <html lang="en" data-theme=theme>
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                // In the shell (rendered on the server only), not in <App/>: its
                // name carries the build's content hash, which only the server knows.
                // `id="leptos"` is what `cargo leptos watch` reloads on a CSS change.
                <link rel="stylesheet" id="leptos" href=stylesheet/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body class="min-h-screen bg-base-100 text-base-content antialiased">
                <App/>
            </body>
        </html>
    }
}

/// The stylesheet's URL (hashed in builds with `hash-files`).
#[cfg(feature = "ssr")]
fn stylesheet_href(options: &LeptosOptions) -> String {
    crate::server::assets::stylesheet_href(options)
}

#[cfg(not(feature = "ssr"))]
fn stylesheet_href(options: &LeptosOptions) -> String {
    format!("/{}/{}.css", options.site_pkg_dir, options.output_name)
}

/// Sends this page's Content-Security-Policy, allowing the render's nonce
/// (Leptos puts it on its inline hydration script). In development the
/// live-reload socket of `cargo leptos watch` is allowed too.
#[cfg(feature = "ssr")]
fn set_page_csp(options: &LeptosOptions) {
    let (Some(nonce), Some(response)) = (use_nonce(), use_context::<leptos_axum::ResponseOptions>()) else {
        return;
    };
    let reload = match options.env {
        leptos::config::Env::DEV => {
            format!(" ws://127.0.0.1:{port} ws://localhost:{port}", port = options.reload_port)
        }
        leptos::config::Env::PROD => String::new(),
    };
    if let Ok(value) = http::HeaderValue::from_str(&crate::server::guard::page_csp(&nonce.to_string(), &reload)) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

/// The application: shared contexts, the frame (navbar, footer, toasts)
/// and the routes.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    theme::provide_theme();
    toast::provide_toasts();
    session::provide_session();

    view! {
        <Link rel="icon" type_="image/svg+xml" href="/favicon.svg"/>
        <Title formatter=|text: String| format!("{text} · Charcha")/>
        <Meta
            name="description"
            content="Charcha: scalable real-time chat over WebSockets, with Redis pub/sub, Kafka and MongoDB."
        />
        <Router>
            <div class="flex min-h-screen flex-col">
                <a
                    href="#main"
                    class="btn btn-primary btn-sm sr-only z-50 focus:not-sr-only focus:absolute focus:left-4 focus:top-3"
                >
                    "Skip to content"
                </a>
                <Navbar/>
                <main id="main" class="flex-1" tabindex="-1">
                    <Routes fallback=NotFoundPage>
                        // Every page but the chat is a split point: a release
                        // build with `--split` loads its code when it is
                        // visited, so the first download of the chat page
                        // holds the chat alone (BENCHMARKS.md, "Client size").
                        <Route path=path!("/") view={Lazy::<LandingRoute>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("/signup") view={Lazy::<SignupRoute>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("/login") view={Lazy::<LoginRoute>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("/profile") view={Lazy::<ProfileRoute>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("/settings") view={Lazy::<SettingsRoute>::new()} ssr=SsrMode::Async/>
                        // One route for `/chat` and `/chat/:peer_id`, so switching
                        // conversations keeps the chat page (and its socket) alive.
                        <Route path=path!("/chat/:peer_id?") view=UserChat ssr=SsrMode::Async/>
                    </Routes>
                </main>
                <Footer/>
                <ToastHost/>
            </div>
        </Router>
    }
}

/// Lazily loaded pages: no data of their own (they fetch what they need
/// inside), just the view behind a split point. With feature `split` (and
/// `cargo leptos build --split`) each page's code is a wasm module of its
/// own, fetched when the page is first shown; without it the same routes
/// resolve at once, so the server's HTML and the client's hydration take
/// the same path in every build.
macro_rules! lazy_page {
    ($route:ident, $page:ident) => {
        struct $route;

        #[cfg(feature = "split")]
        #[leptos_router::lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(_this: Self) -> AnyView {
                view! { <$page/> }.into_any()
            }
        }

        #[cfg(not(feature = "split"))]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            async fn view(_this: Self) -> AnyView {
                view! { <$page/> }.into_any()
            }
        }
    };
}

lazy_page!(LandingRoute, LandingPage);
lazy_page!(SignupRoute, GuestSignup);
lazy_page!(LoginRoute, GuestLogin);
lazy_page!(ProfileRoute, UserProfile);
lazy_page!(SettingsRoute, SettingsPage);

#[component]
fn GuestSignup() -> impl IntoView {
    view! {
        <RequireGuest>
            <SignupPage/>
        </RequireGuest>
    }
}

#[component]
fn GuestLogin() -> impl IntoView {
    view! {
        <RequireGuest>
            <LoginPage/>
        </RequireGuest>
    }
}

#[component]
fn UserProfile() -> impl IntoView {
    view! {
        <RequireUser>
            <ProfilePage/>
        </RequireUser>
    }
}

#[component]
fn UserChat() -> impl IntoView {
    view! {
        <RequireUser>
            <ChatPage/>
        </RequireUser>
    }
}

/// Site footer; left out on the chat page, which fills the viewport.
#[component]
fn Footer() -> impl IntoView {
    let location = leptos_router::hooks::use_location();
    let on_chat = move || location.pathname.with(|path| path == "/chat" || path.starts_with("/chat/"));
    move || {
        (!on_chat()).then(|| {
            view! {
                <footer class="border-t border-base-300 py-6 text-sm text-base-content/60">
                    <div class="mx-auto flex max-w-7xl flex-wrap items-center justify-between gap-2 px-4 lg:px-8">
                        <p>"Charcha · चर्चा — conversations that scale."</p>
                        <p>"Rust, Leptos, WebSockets, Redis, Kafka, MongoDB."</p>
                    </div>
                </footer>
            }
        })
    }
}

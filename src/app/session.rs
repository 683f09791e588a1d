//! Who is signed in, shared through context by the navbar, the pages and the
//! chat, plus the route guards built on it.
//!
//! ```no_run
//! # fn component(user: charcha::api::dto::User) {
//! use charcha::app::use_session;
//!
//! let session = use_session();
//! // Inside <Suspense>/<Transition> (e.g. anywhere under a protected route):
//! let me = move || session.user_now(); // Option<User>, reactive
//! // After the user changes (login, profile edit):
//! session.set_user(Some(user));
//! # }
//! ```

use leptos::{either::Either, prelude::*};
use leptos_router::components::Redirect;

use super::toast::use_toast;
use crate::api::{
    AppError,
    auth::{Logout, current_user},
    dto::User,
    json::ReplyEncoding,
};

/// The session: the server's answer to "who is signed in?" plus the logout
/// action. `Copy`; get it with [`use_session`].
#[derive(Clone, Copy)]
pub struct Session {
    /// `Ok(Some(user))` signed in, `Ok(None)` signed out, `Err` when the
    /// server could not answer (treated as signed out). Blocking: the server
    /// waits for it before sending the page, so the first paint already
    /// shows the right navbar and protected pages redirect with a real 302.
    /// Carried in the page as server-function replies are, and read by the
    /// client's JSON reader ([`ReplyEncoding`]).
    pub user: Resource<Result<Option<User>, AppError>, ReplyEncoding>,
    /// Signs out; the navbar's "Log out" form dispatches it. On success the
    /// session becomes signed out (protected pages then redirect to /login).
    pub logout: ServerAction<Logout>,
}

impl Session {
    fn new() -> Self {
        let blocking = true;
        Self { user: Resource::new_with_options(|| (), |_| current_user(), blocking), logout: ServerAction::new() }
    }

    /// The signed-in user, once known. Await it inside `Suspend::new` (under
    /// a `<Suspense>`/`<Transition>`); re-runs when the user changes.
    pub async fn current_user(self) -> Option<User> {
        self.user.await.ok().flatten()
    }

    /// The signed-in user, read synchronously and reactively; `None` while
    /// loading or signed out. Read it under a `<Suspense>`/`<Transition>`
    /// (every protected page already is).
    pub fn user_now(&self) -> Option<User> {
        self.user.get().and_then(|result| result.ok().flatten())
    }

    /// `Some(true)` signed in, `Some(false)` signed out, `None` still loading.
    pub fn is_signed_in(&self) -> Option<bool> {
        self.user.with(|state| state.as_ref().map(|result| matches!(result, Ok(Some(_)))))
    }

    /// Replaces the session's user without asking the server again: after
    /// login/signup (`Some`), a profile edit (`Some`), or logout (`None`).
    pub fn set_user(&self, user: Option<User>) {
        self.user.set(Some(Ok(user)));
    }

    /// Asks the server again (e.g. after a 401 from elsewhere).
    pub fn refetch(&self) {
        self.user.refetch();
    }

    /// Resolves once the first answer is in, without subscribing to later
    /// changes: guards use it so a user edit does not re-mount the page.
    async fn loaded(self) {
        // The value is read later through `is_signed_in`.
        let _ = ScopedFuture::new_untracked(self.user.into_future()).await;
    }
}

/// Provides the [`Session`]; `App` does this once (after the toasts).
pub(crate) fn provide_session() -> Session {
    let session = Session::new();
    provide_context(session);

    let toast = use_toast();
    Effect::new(move |_| match session.logout.value().get() {
        Some(Ok(())) => {
            session.set_user(None);
            toast.info("You have been logged out");
        }
        Some(Err(err)) => toast.error(err.message),
        None => {}
    });
    session
}

/// The session provided by `App`. Use it anywhere below `App`: the navbar,
/// pages and the chat page (e.g. `use_session().user_now()` for the current
/// user's id and name, `set_user` after changing it).
pub fn use_session() -> Session {
    expect_context::<Session>()
}

/// Shows `children` only to a signed-in user; anyone else is redirected to
/// `/login` (a 302 on the server, a client-side navigation in the browser).
#[component]
pub fn RequireUser(children: ChildrenFn) -> impl IntoView {
    view! { <AuthGate signed_in=true redirect_to="/login" children=children/> }
}

/// Shows `children` only to signed-out visitors (login, signup); a
/// signed-in user is sent to `/chat`. This is also how a successful login
/// leaves the login page: it sets the session, and this guard redirects.
#[component]
pub fn RequireGuest(children: ChildrenFn) -> impl IntoView {
    view! { <AuthGate signed_in=false redirect_to="/chat" children=children/> }
}

#[component]
fn AuthGate(signed_in: bool, redirect_to: &'static str, children: ChildrenFn) -> impl IntoView {
    let session = use_session();
    view! {
        <Transition fallback=PageLoading>
            {move || {
                let children = children.clone();
                Suspend::new(async move {
                    session.loaded().await;
                    // Only flips when the signed-in state flips, not when the
                    // user's name or avatar changes.
                    let allowed = Memo::new(move |_| session.is_signed_in() == Some(signed_in));
                    move || {
                        if allowed.get() {
                            Either::Left(children())
                        } else {
                            Either::Right(view! { <Redirect path=redirect_to/> })
                        }
                    }
                })
            }}
        </Transition>
    }
}

/// Placeholder while a page waits for the session.
#[component]
pub fn PageLoading() -> impl IntoView {
    view! {
        <div class="flex min-h-[50vh] items-center justify-center" role="status">
            <span class="loading loading-spinner loading-lg text-primary" aria-hidden="true"></span>
            <span class="sr-only">"Loading…"</span>
        </div>
    }
}

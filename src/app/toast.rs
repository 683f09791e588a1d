//! Global toasts: short notices ("Profile saved", "Could not send") shown in
//! a corner and dismissed automatically. Any component can raise one:
//!
//! ```no_run
//! # fn component(err: charcha::api::AppError) {
//! let toast = charcha::app::use_toast();
//! toast.success("Profile saved");
//! toast.error(err.message);
//! # }
//! ```

use leptos::prelude::*;

use super::icons::{Icon, IconName};

/// How long a toast stays up, in milliseconds (timers only run in the browser).
#[cfg(feature = "hydrate")]
const TOAST_LIFETIME_MS: u64 = 4_000;
/// Older toasts are dropped beyond this many, so a burst cannot fill the screen.
const MAX_TOASTS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToastKind {
    Success,
    Error,
    Info,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toast {
    pub id: u64,
    pub kind: ToastKind,
    pub message: String,
}

/// Handle to the toast list; `Copy`, so capture it in closures freely.
#[derive(Clone, Copy, Debug)]
pub struct Toasts {
    items: RwSignal<Vec<Toast>>,
    next_id: StoredValue<u64>,
}

impl Toasts {
    fn new() -> Self {
        Self { items: RwSignal::new(Vec::new()), next_id: StoredValue::new(0) }
    }

    pub fn success(&self, message: impl Into<String>) {
        self.push(ToastKind::Success, message.into());
    }

    pub fn error(&self, message: impl Into<String>) {
        self.push(ToastKind::Error, message.into());
    }

    pub fn info(&self, message: impl Into<String>) {
        self.push(ToastKind::Info, message.into());
    }

    /// Removes a toast before its time is up.
    pub fn dismiss(&self, id: u64) {
        // `try_update`: a timer may fire after the app was torn down.
        self.items.try_update(|items| items.retain(|t| t.id != id));
    }

    /// Shows a toast and schedules its removal.
    pub fn push(&self, kind: ToastKind, message: String) {
        let id = self.next_id.try_update_value(|n| {
            *n += 1;
            *n
        });
        let Some(id) = id else { return };
        self.items.try_update(|items| {
            items.push(Toast { id, kind, message });
            let overflow = items.len().saturating_sub(MAX_TOASTS);
            items.drain(..overflow);
        });
        // Toasts come from user actions, which only happen in the browser.
        #[cfg(feature = "hydrate")]
        {
            let this = *self;
            set_timeout(move || this.dismiss(id), std::time::Duration::from_millis(TOAST_LIFETIME_MS));
        }
    }
}

/// Provides the toast list; `App` does this once.
pub(crate) fn provide_toasts() -> Toasts {
    let toasts = Toasts::new();
    provide_context(toasts);
    toasts
}

/// The toast handle provided by `App`.
pub fn use_toast() -> Toasts {
    expect_context::<Toasts>()
}

/// Renders the toasts in the bottom-right corner. A polite live region, so
/// screen readers announce each new toast without interrupting.
#[component]
pub fn ToastHost() -> impl IntoView {
    let toasts = use_toast();
    view! {
        <div
            class="toast toast-end toast-bottom z-50 max-w-[calc(100vw-2rem)]"
            role="status"
            aria-live="polite"
        >
            <For each=move || toasts.items.get() key=|toast| toast.id let:toast>
                <ToastItem toast=toast/>
            </For>
        </div>
    }
}

#[component]
fn ToastItem(toast: Toast) -> impl IntoView {
    let toasts = use_toast();
    let (class, icon) = match toast.kind {
        ToastKind::Success => ("alert alert-success shadow-lg", IconName::CheckCircle),
        ToastKind::Error => ("alert alert-error shadow-lg", IconName::AlertCircle),
        ToastKind::Info => ("alert alert-info shadow-lg", IconName::Info),
    };
    let id = toast.id;
    view! {
        <div class=class>
            <Icon icon=icon/>
            <span class="whitespace-normal break-words">{toast.message}</span>
            <button
                type="button"
                class="btn btn-ghost btn-xs btn-circle"
                aria-label="Dismiss notification"
                on:click=move |_| toasts.dismiss(id)
            >
                <Icon icon=IconName::Close class="size-4"/>
            </button>
        </div>
    }
}

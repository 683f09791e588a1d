//! Browser notifications (the Notification API) for messages that arrive
//! while the user is not looking at their conversation. Off until the user
//! turns them on in Settings, which asks the browser's permission; the
//! choice is remembered in `localStorage` (it is this browser's, not the
//! account's).

/// What this browser allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// No Notification API (or not in a browser).
    Unsupported,
    /// Not asked yet.
    Ask,
    Granted,
    /// Refused; only the browser's site settings can change it.
    Denied,
}

/// Whether a live message should raise a notification: someone else's,
/// not on screen, with notifications on and allowed.
pub fn should_notify(enabled: bool, permission: Permission, incoming: bool, on_screen: bool) -> bool {
    enabled && permission == Permission::Granted && incoming && !on_screen
}

/// The notification's title and body for a message from `sender`.
pub fn notification_text(sender: &str, message: &crate::api::dto::ChatMessage) -> (String, String) {
    (sender.to_string(), crate::app::chat::state::snippet(message, 140))
}

#[cfg(feature = "hydrate")]
mod browser {
    use wasm_bindgen::{JsCast, closure::Closure};
    use web_sys::{Notification, NotificationOptions, NotificationPermission};

    use super::Permission;

    /// Where the on/off choice is kept.
    const STORAGE_KEY: &str = "charcha.notifications";

    fn supported() -> bool {
        web_sys::window().and_then(|w| js_sys::Reflect::has(&w, &"Notification".into()).ok()).unwrap_or(false)
    }

    pub fn permission() -> Permission {
        if !supported() {
            return Permission::Unsupported;
        }
        match Notification::permission() {
            NotificationPermission::Granted => Permission::Granted,
            NotificationPermission::Denied => Permission::Denied,
            _ => Permission::Ask,
        }
    }

    pub fn enabled() -> bool {
        let stored = web_sys::window()
            .and_then(|w| w.local_storage().ok().flatten())
            .and_then(|s| s.get_item(STORAGE_KEY).ok().flatten());
        stored.as_deref() == Some("on")
    }

    pub fn set_enabled(on: bool) {
        if let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
            let _ = storage.set_item(STORAGE_KEY, if on { "on" } else { "off" });
        }
    }

    /// Asks the browser; `done` gets the answer.
    pub fn request(done: impl FnOnce(Permission) + 'static) {
        if !supported() {
            done(Permission::Unsupported);
            return;
        }
        let Ok(promise) = Notification::request_permission() else {
            done(permission());
            return;
        };
        let answered = Closure::once(move |_: wasm_bindgen::JsValue| done(permission()));
        let _ = promise.then(&answered);
        // Runs once, when the browser answers; a few bytes per click.
        answered.forget();
    }

    /// Shows one notification; a click brings the tab to the front. One per
    /// conversation at a time (`tag`): a burst replaces rather than stacks.
    pub fn show(title: &str, body: &str, tag: &str) {
        let options = NotificationOptions::new();
        options.set_body(body);
        options.set_tag(tag);
        if let Ok(n) = Notification::new_with_options(title, &options) {
            let focus = Closure::<dyn Fn()>::new(|| {
                if let Some(w) = web_sys::window() {
                    let _ = w.focus();
                }
            });
            n.set_onclick(Some(focus.as_ref().unchecked_ref()));
            focus.forget();
        }
    }
}

#[cfg(feature = "hydrate")]
pub use browser::{enabled, permission, request, set_enabled, show};

#[cfg(not(feature = "hydrate"))]
mod server {
    use super::Permission;

    pub fn permission() -> Permission {
        Permission::Unsupported
    }
    pub fn enabled() -> bool {
        false
    }
    pub fn set_enabled(_on: bool) {}
    pub fn request(done: impl FnOnce(Permission) + 'static) {
        done(Permission::Unsupported)
    }
    pub fn show(_title: &str, _body: &str, _tag: &str) {}
}

#[cfg(not(feature = "hydrate"))]
pub use server::{enabled, permission, request, set_enabled, show};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_someone_elses_message_out_of_sight_with_permission() {
        assert!(should_notify(true, Permission::Granted, true, false));
        assert!(!should_notify(false, Permission::Granted, true, false), "turned off");
        assert!(!should_notify(true, Permission::Ask, true, false), "not allowed yet");
        assert!(!should_notify(true, Permission::Denied, true, false));
        assert!(!should_notify(true, Permission::Granted, false, false), "our own");
        assert!(!should_notify(true, Permission::Granted, true, true), "already on screen");
    }

    #[test]
    fn the_text_is_the_sender_and_a_snippet() {
        let m = crate::api::dto::ChatMessage { text: "see  you\nat noon".into(), ..Default::default() };
        assert_eq!(notification_text("Ada", &m), ("Ada".to_string(), "see you at noon".to_string()));
    }
}

//! The DaisyUI theme: chosen in Settings, remembered in the `theme` cookie
//! and painted by the server on `<html data-theme>`, so the first paint is
//! already in the right colours (no flash of the default theme).

use leptos::prelude::*;

use crate::api::dto::is_theme;

/// Theme used when the visitor has not picked one.
pub const DEFAULT_THEME: &str = "light";
/// Name of the cookie holding the chosen theme.
pub const THEME_COOKIE: &str = "theme";
/// One year, in seconds.
const COOKIE_MAX_AGE: u32 = 31_536_000;

/// The current theme, shared through context. Copy it freely.
#[derive(Clone, Copy, Debug)]
pub struct ThemeState {
    current: RwSignal<String>,
}

impl ThemeState {
    /// The current theme name (reactive).
    pub fn current(&self) -> String {
        self.current.get()
    }

    /// Switches to `name` at once (page colours change immediately) and
    /// remembers it in the cookie. Unknown names are ignored.
    pub fn set(&self, name: &str) {
        if !is_theme(name) {
            return;
        }
        self.current.set(name.to_string());
        #[cfg(feature = "hydrate")]
        apply_in_browser(name);
    }
}

/// Provides [`ThemeState`], seeded from what the server painted.
pub(crate) fn provide_theme() -> ThemeState {
    let state = ThemeState { current: RwSignal::new(initial_theme()) };
    provide_context(state);
    state
}

/// The theme state provided by `App`.
pub fn use_theme() -> ThemeState {
    expect_context::<ThemeState>()
}

/// The theme to render with: on the server from the request's `theme`
/// cookie; in the browser from what the server put on `<html>`.
pub(crate) fn initial_theme() -> String {
    #[cfg(feature = "ssr")]
    let theme = request_theme();
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    let theme = document_theme();
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    let theme = None;
    theme.unwrap_or_else(|| DEFAULT_THEME.to_string())
}

/// The valid theme named in a `Cookie` request header, if any.
pub fn theme_from_cookie_header(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == THEME_COOKIE)
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|value| is_theme(value))
}

/// The `Set-Cookie`-style string that remembers `name` for a year.
pub fn theme_cookie(name: &str) -> String {
    format!("{THEME_COOKIE}={name}; Path=/; Max-Age={COOKIE_MAX_AGE}; SameSite=Lax")
}

/// Reads the theme cookie of the request being rendered (leptos_axum
/// provides the request parts as context).
#[cfg(feature = "ssr")]
fn request_theme() -> Option<String> {
    let parts = use_context::<http::request::Parts>()?;
    parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(theme_from_cookie_header)
        .map(str::to_string)
}

#[cfg(all(feature = "hydrate", not(feature = "ssr")))]
fn document_theme() -> Option<String> {
    document().document_element().and_then(|html| html.get_attribute("data-theme")).filter(|name| is_theme(name))
}

/// Repaints the page and stores the cookie so reloads (and the server's
/// first paint) keep the choice.
#[cfg(feature = "hydrate")]
fn apply_in_browser(name: &str) {
    use wasm_bindgen::JsCast;

    let doc = document();
    if let Some(html) = doc.document_element()
        && html.set_attribute("data-theme", name).is_err()
    {
        leptos::logging::warn!("could not set data-theme");
    }
    if let Some(html_doc) = doc.dyn_ref::<web_sys::HtmlDocument>()
        && html_doc.set_cookie(&theme_cookie(name)).is_err()
    {
        leptos::logging::warn!("could not store the theme cookie");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_valid_theme_cookies() {
        assert_eq!(theme_from_cookie_header("theme=dark"), Some("dark"));
        assert_eq!(theme_from_cookie_header("token=abc; theme=retro; x=1"), Some("retro"));
        assert_eq!(theme_from_cookie_header("theme=\"nord\""), Some("nord"));
        assert_eq!(theme_from_cookie_header("theme=<script>"), None);
        assert_eq!(theme_from_cookie_header("mytheme=dark"), None);
        assert_eq!(theme_from_cookie_header(""), None);
    }

    #[test]
    fn cookie_lasts_a_year_on_every_path() {
        assert_eq!(theme_cookie("dark"), "theme=dark; Path=/; Max-Age=31536000; SameSite=Lax");
    }
}

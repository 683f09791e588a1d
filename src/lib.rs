//! Charcha: a scalable real-time chat. One crate compiles to the server
//! (feature `ssr`) and to the wasm client (feature `hydrate`).

#![recursion_limit = "256"]

pub mod api;
pub mod app;
pub mod protocol;
#[cfg(feature = "ssr")]
pub mod server;

/// Entry point of the wasm client: hydrates the server-rendered page, once
/// the code of its lazily loaded route (if any) is in: `hydrate_body` would
/// hydrate a lazy route before its view exists (src/app/mod.rs, `lazy_page!`).
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_lazy(app::App);
}

//! Charcha: a scalable real-time chat. One crate compiles to the server
//! (feature `ssr`) and to the wasm client (feature `hydrate`).

#![recursion_limit = "256"]

pub mod api;
pub mod app;
pub mod protocol;
#[cfg(feature = "ssr")]
pub mod server;

/// Entry point of the wasm client: hydrates the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}

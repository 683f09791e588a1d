//! Everything a request handler needs, cheap to clone.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use tokio_util::sync::CancellationToken;

use super::{
    auth::AuthService, bus::Bus, chat::ChatService, config::Config, hub::Hub, log::Log, presence::Presence,
    quota::Quotas, ratelimit::RateLimiter, store::Store,
};

/// Shared behind one `Arc`: every request and every WebSocket task holds a
/// clone, and a clone of the fields themselves (eleven `Arc`s and the Leptos
/// options) was 288 bytes copied into each of 20,000 idle connections.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Services {
    pub config: Arc<Config>,
    pub leptos_options: LeptosOptions,
    pub store: Arc<dyn Store>,
    pub log: Arc<dyn Log>,
    pub auth: Arc<AuthService>,
    pub chat: Arc<ChatService>,
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn Bus>,
    pub presence: Arc<dyn Presence>,
    pub limiter: Arc<dyn RateLimiter>,
    /// Per-user quotas (uploads, profile edits, watch changes).
    pub quotas: Arc<Quotas>,
    /// Cancelled when the server shuts down; long-lived tasks watch it.
    pub shutdown: CancellationToken,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

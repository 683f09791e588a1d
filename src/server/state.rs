//! Everything a request handler needs, cheap to clone.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use tokio_util::sync::CancellationToken;

use super::{
    auth::AuthService, bus::Bus, chat::ChatService, config::Config, hub::Hub, log::Log, presence::Presence,
    quota::Quotas, ratelimit::RateLimiter, store::Store,
};

#[derive(Clone)]
pub struct AppState {
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

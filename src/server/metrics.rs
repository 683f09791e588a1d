//! Prometheus metrics at `GET /metrics` (text exposition format): counters
//! the hot paths bump with relaxed atomics, gauges read when scraped.
//!
//! Not public: the counters tell an outsider how busy the service is and
//! when its backends fail. `/metrics` is served either on its own address
//! (CHARCHA_METRICS_ADDR, for a scraper on a private network; the site
//! address then answers 404) or on the site address to requests carrying
//! `Authorization: Bearer <CHARCHA_METRICS_TOKEN>` (401 otherwise). With
//! neither configured it answers 404.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::state::AppState;

/// Process-wide counters. Relaxed ordering: each is an independent tally.
#[derive(Default)]
pub struct Metrics {
    pub messages_sent: AtomicU64,
    pub send_failures: AtomicU64,
    pub ws_connections: AtomicU64,
    pub ws_kicked_slow: AtomicU64,
    pub messages_stored: AtomicU64,
    pub dead_letters: AtomicU64,
    pub bus_dropped: AtomicU64,
    pub password_busy: AtomicU64,
    pub presence_frames: AtomicU64,
}

pub static METRICS: Metrics = Metrics {
    messages_sent: AtomicU64::new(0),
    send_failures: AtomicU64::new(0),
    ws_connections: AtomicU64::new(0),
    ws_kicked_slow: AtomicU64::new(0),
    messages_stored: AtomicU64::new(0),
    dead_letters: AtomicU64::new(0),
    bus_dropped: AtomicU64::new(0),
    password_busy: AtomicU64::new(0),
    presence_frames: AtomicU64::new(0),
};

pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Each counter's Prometheus name and help text.
fn counters(m: &Metrics) -> [(&'static str, &'static str, &AtomicU64); 9] {
    [
        (
            "charcha_messages_sent_total",
            "Messages acknowledged to their sender (durable in the log).",
            &m.messages_sent,
        ),
        ("charcha_send_failures_total", "Sends refused because the log was unavailable.", &m.send_failures),
        ("charcha_ws_connections_total", "WebSocket sessions opened.", &m.ws_connections),
        ("charcha_ws_kicked_slow_total", "Sessions closed because their outgoing queue was full.", &m.ws_kicked_slow),
        (
            "charcha_password_busy_total",
            "Sign-ups and log-ins turned away (503) because the hashing queue was full.",
            &m.password_busy,
        ),
        (
            "charcha_messages_stored_total",
            "Messages newly written to history by this process's worker.",
            &m.messages_stored,
        ),
        ("charcha_dead_letters_total", "Undecodable log records set aside by the worker.", &m.dead_letters),
        (
            "charcha_bus_dropped_total",
            "Live events not published because the bus was unreachable or its queue full.",
            &m.bus_dropped,
        ),
        (
            "charcha_watch_frames_total",
            "Presence and profile frames queued for sessions watching the user they are about.",
            &m.presence_frames,
        ),
    ]
}

/// `GET /metrics` on the site address (see the module docs).
pub async fn site_handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.config.metrics_addr.is_some() {
        return StatusCode::NOT_FOUND.into_response();
    }
    match &state.config.metrics_token {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(token) => authorized(&headers, token, &state).await,
    }
}

/// `GET /metrics` on CHARCHA_METRICS_ADDR; a configured token is required
/// there too.
pub async fn private_handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match &state.config.metrics_token {
        None => handler(State(state)).await.into_response(),
        Some(token) => authorized(&headers, token, &state).await,
    }
}

async fn authorized(headers: &HeaderMap, token: &str, state: &AppState) -> Response {
    if bearer_matches(headers, token) {
        return handler(State(state.clone())).await.into_response();
    }
    let mut resp = StatusCode::UNAUTHORIZED.into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"metrics\""));
    resp
}

/// The request's bearer token is `token`, compared in constant time (the
/// comparison must not tell an attacker how much of a guess was right).
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The exposition itself, unguarded: callers check access first.
pub async fn handler(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    };
    for (name, help, counter) in counters(&METRICS) {
        metric(name, "counter", help, counter.load(Ordering::Relaxed));
    }
    metric(
        "charcha_ws_sessions",
        "gauge",
        "WebSocket sessions open on this instance.",
        state.hub.session_count() as u64,
    );
    metric(
        "charcha_local_users",
        "gauge",
        "Users with a session on this instance.",
        state.hub.local_user_count() as u64,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_must_match_exactly() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
            h
        };
        let token = "0123456789abcdef";
        assert!(bearer_matches(&with("Bearer 0123456789abcdef"), token));
        assert!(!bearer_matches(&with("Bearer 0123456789abcdeF"), token));
        assert!(!bearer_matches(&with("Bearer 0123456789abcde"), token));
        assert!(!bearer_matches(&with("Basic 0123456789abcdef"), token));
        assert!(!bearer_matches(&HeaderMap::new(), token));
    }
}

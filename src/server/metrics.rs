//! Prometheus metrics at `GET /metrics` (text exposition format): counters
//! the hot paths bump with relaxed atomics, gauges read when scraped.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::{extract::State, http::header, response::IntoResponse};

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
};

pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub async fn handler(State(state): State<AppState>) -> impl IntoResponse {
    let m = &METRICS;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    };
    metric(
        "charcha_messages_sent_total",
        "counter",
        "Messages acknowledged to their sender (durable in the log).",
        get(&m.messages_sent),
    );
    metric(
        "charcha_send_failures_total",
        "counter",
        "Sends refused because the log was unavailable.",
        get(&m.send_failures),
    );
    metric("charcha_ws_connections_total", "counter", "WebSocket sessions opened.", get(&m.ws_connections));
    metric(
        "charcha_ws_kicked_slow_total",
        "counter",
        "Sessions closed because their outgoing queue was full.",
        get(&m.ws_kicked_slow),
    );
    metric(
        "charcha_password_busy_total",
        "counter",
        "Sign-ups and log-ins turned away (503) because the hashing queue was full.",
        get(&m.password_busy),
    );
    metric(
        "charcha_messages_stored_total",
        "counter",
        "Messages newly written to history by this process's worker.",
        get(&m.messages_stored),
    );
    metric(
        "charcha_dead_letters_total",
        "counter",
        "Undecodable log records set aside by the worker.",
        get(&m.dead_letters),
    );
    metric(
        "charcha_bus_dropped_total",
        "counter",
        "Live events not published because the bus was unreachable or its queue full.",
        get(&m.bus_dropped),
    );
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

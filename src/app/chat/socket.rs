//! The chat WebSocket client: one connection to `/ws` per chat page, kept
//! alive with heartbeats and brought back with jittered exponential backoff.
//!
//! The page gets a small `Copy` handle ([`ChatSocket`]) with a status signal
//! and a `send`; incoming frames are handed to the callback given to
//! [`ChatSocket::connect`]. The browser half lives behind
//! `#[cfg(feature = "hydrate")]`; on the server the handle stays in
//! [`SocketStatus::Connecting`] and sends nothing, so SSR renders the same
//! markup the client starts from and hydration matches.

use std::time::Duration;

use leptos::prelude::*;

use crate::protocol::{ClientEvent, ServerEvent};

/// Ping cadence: well under common proxy idle timeouts (often 60 s).
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// With a ping every 20 s answered by a pong, 45 s without any frame means
/// the connection is dead even if the browser has not noticed.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(45);
/// First reconnect waits up to this long…
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// …doubling per failed attempt, never more than this.
pub const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// Connection state shown to the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketStatus {
    /// First connection of this page, not greeted yet.
    Connecting,
    /// The server said `Hello`; frames flow.
    Open,
    /// The connection was lost (or never came up); retrying with backoff.
    Reconnecting,
    /// The server turned the connection away because the user has too many
    /// open (`too_many_connections`): not retried until [`ChatSocket::retry`]
    /// or a reload, since every retry would be refused the same way.
    Refused,
}

/// Upper bound of the reconnect delay after `attempt` failed attempts (full
/// jitter then picks uniformly in `0..=bound`, so a server restart is not met
/// by every client at the same instant).
pub fn backoff_bound(attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_CAP)
}

/// Handle to the page's socket. `Copy`, so event handlers can capture it.
#[derive(Clone, Copy)]
pub struct ChatSocket {
    status: RwSignal<SocketStatus>,
    /// The server speaks a newer protocol: the page must be reloaded.
    outdated: RwSignal<bool>,
    #[cfg(feature = "hydrate")]
    shared: StoredValue<Option<std::rc::Rc<client::Shared>>, LocalStorage>,
}

impl ChatSocket {
    /// Opens the socket (in the browser) and calls `on_event` with every
    /// well-formed frame. Closed when the calling owner is cleaned up.
    pub fn connect(on_event: impl Fn(ServerEvent) + 'static) -> Self {
        let status = RwSignal::new(SocketStatus::Connecting);
        let outdated = RwSignal::new(false);
        #[cfg(feature = "hydrate")]
        {
            let shared = client::Shared::start(status, outdated, Box::new(on_event));
            let this = Self { status, outdated, shared: StoredValue::new_local(Some(shared)) };
            on_cleanup(move || {
                if let Some(Some(shared)) = this.shared.try_update_value(Option::take) {
                    shared.dispose();
                }
            });
            this
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = on_event;
            Self { status, outdated }
        }
    }

    pub fn status(&self) -> ReadSignal<SocketStatus> {
        self.status.read_only()
    }

    /// True once a `Hello` announced a protocol version other than ours.
    pub fn outdated(&self) -> ReadSignal<bool> {
        self.outdated.read_only()
    }

    /// Connects again now, after a [`SocketStatus::Refused`] (the user
    /// closed another tab and pressed "Retry").
    pub fn retry(&self) {
        #[cfg(feature = "hydrate")]
        if let Some(Some(shared)) = self.shared.try_get_value() {
            shared.retry();
        }
    }

    /// Writes one frame. Returns whether it was handed to an open socket
    /// (not whether the server got it: that is what acks are for).
    pub fn send(&self, event: &ClientEvent) -> bool {
        #[cfg(feature = "hydrate")]
        {
            self.shared.try_with_value(|s| s.as_ref().map(|s| s.send(event))).flatten().unwrap_or(false)
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = event;
            false
        }
    }
}

#[cfg(feature = "hydrate")]
mod client {
    //! Browser side. The `WebSocket` handlers are created once per page and
    //! reattached to every new connection; each checks that the event comes
    //! from the current socket, so a late event of an abandoned connection is
    //! ignored. Handlers hold only a `Weak` to the shared state, and are
    //! dropped in `dispose`, never from inside one of them.

    use std::{
        cell::{Cell, RefCell},
        rc::{Rc, Weak},
    };

    use leptos::prelude::*;
    use wasm_bindgen::{JsCast, JsValue, closure::Closure};
    use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};

    use super::{BACKOFF_CAP, PING_EVERY, SILENCE_LIMIT, SocketStatus, backoff_bound};
    use crate::protocol::{ClientEvent, ErrorCode, PROTOCOL_VERSION, ServerEvent};

    /// How often the heartbeat/watchdog looks at the clock.
    const TICK: std::time::Duration = std::time::Duration::from_secs(1);

    struct Handlers {
        open: Closure<dyn FnMut(Event)>,
        message: Closure<dyn FnMut(MessageEvent)>,
        close: Closure<dyn FnMut(CloseEvent)>,
        error: Closure<dyn FnMut(Event)>,
    }

    #[derive(Default)]
    struct Conn {
        ws: Option<WebSocket>,
        /// Failed attempts since the last `Hello` (drives the backoff).
        attempt: u32,
        /// `Date.now()` of the last frame received (or of the connect).
        last_rx: f64,
        last_ping: f64,
        nonce: u64,
        reconnect: Option<TimeoutHandle>,
        /// The server refused the connection (`too_many_connections`): do
        /// not reconnect until asked to.
        refused: bool,
        ticker: Option<IntervalHandle>,
        online: Option<WindowListenerHandle>,
    }

    pub struct Shared {
        /// Ourselves, for timer callbacks scheduled from `&self` methods.
        this: Weak<Shared>,
        conn: RefCell<Conn>,
        handlers: RefCell<Option<Handlers>>,
        disposed: Cell<bool>,
        on_event: Box<dyn Fn(ServerEvent)>,
        status: RwSignal<SocketStatus>,
        outdated: RwSignal<bool>,
    }

    fn now() -> f64 {
        js_sys::Date::now()
    }

    /// `ws://host/ws` or `wss://host/ws`, following the page's scheme.
    fn socket_url() -> Option<String> {
        let location = window().location();
        let scheme = if location.protocol().ok()? == "https:" { "wss" } else { "ws" };
        Some(format!("{scheme}://{}/ws", location.host().ok()?))
    }

    fn is_current(shared: &Shared, target: Option<web_sys::EventTarget>) -> bool {
        let conn = shared.conn.borrow();
        match (conn.ws.as_ref(), target) {
            (Some(ws), Some(t)) => {
                let t: &JsValue = t.as_ref();
                let ws: &JsValue = ws.as_ref();
                t == ws
            }
            _ => false,
        }
    }

    fn detach(ws: &WebSocket) {
        ws.set_onopen(None);
        ws.set_onmessage(None);
        ws.set_onclose(None);
        ws.set_onerror(None);
        let _ = ws.close();
    }

    impl Shared {
        pub fn start(
            status: RwSignal<SocketStatus>,
            outdated: RwSignal<bool>,
            on_event: Box<dyn Fn(ServerEvent)>,
        ) -> Rc<Self> {
            let shared = Rc::new_cyclic(|weak: &Weak<Shared>| Shared {
                this: weak.clone(),
                conn: RefCell::new(Conn::default()),
                handlers: RefCell::new(Some(Self::handlers(weak))),
                disposed: Cell::new(false),
                on_event,
                status,
                outdated,
            });
            let weak = Rc::downgrade(&shared);

            let w = weak.clone();
            let ticker = set_interval_with_handle(
                move || {
                    if let Some(s) = w.upgrade() {
                        s.tick();
                    }
                },
                TICK,
            )
            .ok();
            // Back online: no point waiting out the backoff.
            let w = weak.clone();
            let online = window_event_listener_untyped("online", move |_| {
                if let Some(s) = w.upgrade()
                    && s.conn.borrow().ws.is_none()
                    && !s.conn.borrow().refused
                {
                    s.connect_now();
                }
            });
            {
                let mut conn = shared.conn.borrow_mut();
                conn.ticker = ticker;
                conn.online = Some(online);
            }
            shared.connect_now();
            shared
        }

        fn handlers(weak: &Weak<Shared>) -> Handlers {
            let w = weak.clone();
            let open = Closure::<dyn FnMut(Event)>::new(move |ev: Event| {
                if let Some(s) = w.upgrade()
                    && is_current(&s, ev.target())
                {
                    s.conn.borrow_mut().last_rx = now();
                }
            });
            let w = weak.clone();
            let message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                if let Some(s) = w.upgrade()
                    && is_current(&s, ev.target())
                {
                    s.receive(ev.data());
                }
            });
            let w = weak.clone();
            let close = Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
                if let Some(s) = w.upgrade()
                    && is_current(&s, ev.target())
                {
                    leptos::logging::warn!("chat socket closed ({}): {}", ev.code(), ev.reason());
                    s.conn.borrow_mut().ws = None;
                    if ev.code() == crate::protocol::CLOSE_SESSION_ENDED {
                        // Logged out elsewhere, or the session expired: a
                        // reconnect would be refused; ask to log in again.
                        let _ = window().location().set_href("/login");
                        return;
                    }
                    if s.conn.borrow().refused {
                        // Too many tabs: wait for the user (status `Refused`).
                        return;
                    }
                    s.schedule_reconnect();
                }
            });
            let error = Closure::<dyn FnMut(Event)>::new(move |_ev: Event| {
                // A `close` event always follows; reconnecting happens there.
                leptos::logging::warn!("chat socket error");
            });
            Handlers { open, message, close, error }
        }

        /// Cancels a scheduled reconnect and detaches the current socket.
        fn drop_connection(&self) {
            let old = {
                let mut conn = self.conn.borrow_mut();
                if let Some(t) = conn.reconnect.take() {
                    t.clear();
                }
                conn.ws.take()
            };
            if let Some(ws) = old {
                detach(&ws);
            }
        }

        /// Opens a new connection now (cancelling a scheduled one).
        fn connect_now(&self) {
            if self.disposed.get() {
                return;
            }
            self.drop_connection();
            let Some(url) = socket_url() else {
                self.schedule_reconnect();
                return;
            };
            match WebSocket::new(&url) {
                Ok(ws) => {
                    if let Some(h) = self.handlers.borrow().as_ref() {
                        ws.set_onopen(Some(h.open.as_ref().unchecked_ref()));
                        ws.set_onmessage(Some(h.message.as_ref().unchecked_ref()));
                        ws.set_onclose(Some(h.close.as_ref().unchecked_ref()));
                        ws.set_onerror(Some(h.error.as_ref().unchecked_ref()));
                    }
                    let mut conn = self.conn.borrow_mut();
                    conn.ws = Some(ws);
                    conn.last_rx = now();
                    conn.last_ping = now();
                }
                Err(e) => {
                    leptos::logging::warn!("chat socket: cannot connect to {url}: {e:?}");
                    self.schedule_reconnect();
                }
            }
        }

        /// Reconnects at once after a refusal, with a fresh backoff.
        pub fn retry(&self) {
            if self.disposed.get() {
                return;
            }
            {
                let mut conn = self.conn.borrow_mut();
                conn.refused = false;
                conn.attempt = 0;
            }
            self.status.set(SocketStatus::Reconnecting);
            self.connect_now();
        }

        /// Drops the current connection (if any) and retries after a
        /// full-jitter backoff delay.
        fn schedule_reconnect(&self) {
            if self.disposed.get() || self.conn.borrow().refused {
                return;
            }
            self.status.set(SocketStatus::Reconnecting);
            self.drop_connection();
            let bound = {
                let mut conn = self.conn.borrow_mut();
                let b = backoff_bound(conn.attempt);
                conn.attempt = conn.attempt.saturating_add(1);
                b
            };
            let delay_ms =
                (js_sys::Math::random() * bound.as_millis() as f64).clamp(0.0, BACKOFF_CAP.as_millis() as f64);
            let weak = self.this.clone();
            let handle = set_timeout_with_handle(
                move || {
                    if let Some(s) = weak.upgrade() {
                        s.conn.borrow_mut().reconnect = None;
                        s.connect_now();
                    }
                },
                std::time::Duration::from_millis(delay_ms as u64),
            );
            match handle {
                Ok(h) => self.conn.borrow_mut().reconnect = Some(h),
                Err(e) => leptos::logging::error!("chat socket: cannot schedule reconnect: {e:?}"),
            }
        }

        fn receive(&self, data: JsValue) {
            self.conn.borrow_mut().last_rx = now();
            let Some(text) = data.as_string() else {
                leptos::logging::warn!("chat socket: ignoring a non-text frame");
                return;
            };
            let event = match ServerEvent::from_json(&text) {
                Ok(ev) => ev,
                Err(e) => {
                    leptos::logging::warn!("chat socket: ignoring a malformed frame ({e}): {text:.200}");
                    return;
                }
            };
            match &event {
                ServerEvent::Hello { protocol_version, .. } => {
                    self.conn.borrow_mut().attempt = 0;
                    self.status.set(SocketStatus::Open);
                    if *protocol_version != PROTOCOL_VERSION {
                        self.outdated.set(true);
                    }
                }
                // Sent instead of `hello`; the close (1008) follows, and
                // must not start the reconnect loop.
                ServerEvent::Error { code: ErrorCode::TooManyConnections, .. } => {
                    self.conn.borrow_mut().refused = true;
                    self.status.set(SocketStatus::Refused);
                }
                _ => {}
            }
            if !self.disposed.get() {
                (self.on_event)(event);
            }
        }

        /// Heartbeat and watchdog, once per [`TICK`].
        fn tick(&self) {
            if self.disposed.get() {
                return;
            }
            let t = now();
            let (stale, ping) = {
                let mut conn = self.conn.borrow_mut();
                let Some(ws) = conn.ws.as_ref() else { return };
                let open = ws.ready_state() == WebSocket::OPEN;
                let stale = t - conn.last_rx >= SILENCE_LIMIT.as_millis() as f64;
                let ping = open && !stale && t - conn.last_ping >= PING_EVERY.as_millis() as f64;
                if ping {
                    conn.last_ping = t;
                    conn.nonce = conn.nonce.wrapping_add(1);
                }
                (stale, ping.then_some(conn.nonce))
            };
            if stale {
                leptos::logging::warn!("chat socket: nothing received for {} s; reconnecting", SILENCE_LIMIT.as_secs());
                self.schedule_reconnect();
            } else if let Some(nonce) = ping {
                self.send(&ClientEvent::Ping { nonce });
            }
        }

        pub fn send(&self, event: &ClientEvent) -> bool {
            let conn = self.conn.borrow();
            let Some(ws) = conn.ws.as_ref().filter(|ws| ws.ready_state() == WebSocket::OPEN) else {
                return false;
            };
            match serde_json::to_string(event) {
                Ok(json) => ws.send_with_str(&json).is_ok(),
                Err(e) => {
                    leptos::logging::error!("chat socket: cannot encode frame: {e}");
                    false
                }
            }
        }

        /// Closes for good: timers stopped, socket closed, handlers dropped.
        pub fn dispose(&self) {
            if self.disposed.replace(true) {
                return;
            }
            let (ws, reconnect, ticker, online) = {
                let mut conn = self.conn.borrow_mut();
                (conn.ws.take(), conn.reconnect.take(), conn.ticker.take(), conn.online.take())
            };
            if let Some(ws) = ws {
                detach(&ws);
            }
            if let Some(t) = reconnect {
                t.clear();
            }
            if let Some(t) = ticker {
                t.clear();
            }
            if let Some(l) = online {
                l.remove();
            }
            self.handlers.borrow_mut().take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff_bound(0), Duration::from_millis(500));
        assert_eq!(backoff_bound(1), Duration::from_millis(1000));
        assert_eq!(backoff_bound(4), Duration::from_millis(8000));
        assert_eq!(backoff_bound(5), BACKOFF_CAP);
        assert_eq!(backoff_bound(u32::MAX), BACKOFF_CAP);
    }
}

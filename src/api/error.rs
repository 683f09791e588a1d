//! The one error type of Charcha's data API. The REST routes render it as
//! `{message, errors}` with its HTTP status; server functions carry it to the
//! wasm client whole, so forms can show each field's errors next to the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    /// HTTP status this error maps to; [`AppError::NO_RESPONSE`] when no
    /// answer arrived at all (see [`AppError::is_unreachable`]).
    #[serde(default = "internal_status")]
    pub status: u16,
    pub message: String,
    /// Field name → messages, for validation errors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, Vec<String>>,
    /// Seconds to wait, for 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

fn internal_status() -> u16 {
    500
}

impl AppError {
    /// The `status` of an error made by the client when the request got no
    /// HTTP answer (network down, server unreachable). No HTTP status is 0,
    /// so it never collides with a real answer such as a 503, and the server
    /// never sends it.
    pub const NO_RESPONSE: u16 = 0;

    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), errors: BTreeMap::new(), retry_after: None }
    }

    /// 400 with per-field messages.
    pub fn validation(errors: BTreeMap<String, Vec<String>>) -> Self {
        Self { errors, ..Self::new(400, "Validation failed") }
    }

    /// 400 for a single field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut errors = BTreeMap::new();
        errors.insert(field.to_string(), vec![message.into()]);
        Self::validation(errors)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, message)
    }
    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(415, message)
    }
    /// 429 saying when to come back (the UI shows `message` as it is).
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let secs = retry_after_secs.max(1);
        Self {
            retry_after: Some(secs),
            ..Self::new(429, format!("Too many attempts; try again {}", wait_phrase(secs)))
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, message)
    }
    pub fn internal() -> Self {
        Self::new(500, "Internal server error")
    }
    /// The request got no answer: see [`AppError::NO_RESPONSE`].
    pub fn unreachable() -> Self {
        Self::new(Self::NO_RESPONSE, "Cannot reach the server. Check your connection.")
    }

    /// Whether the server was never reached (as opposed to answering with
    /// an error, a 503 included).
    pub fn is_unreachable(&self) -> bool {
        self.status == Self::NO_RESPONSE
    }

    /// First message for `field`, if any.
    pub fn field_error(&self, field: &str) -> Option<String> {
        self.errors.get(field).and_then(|v| v.first()).cloned()
    }
}

/// "in 40 seconds" / "in 12 minutes", for messages that say when to retry.
pub fn wait_phrase(secs: u64) -> String {
    match secs {
        0 | 1 => "in 1 second".to_string(),
        2..120 => format!("in {secs} seconds"),
        _ => format!("in {} minutes", secs.div_ceil(60)),
    }
}

impl leptos::server_fn::error::FromServerFnError for AppError {
    type Encoder = super::json::ReplyEncoding;

    fn from_server_fn_error(value: leptos::server_fn::error::ServerFnErrorErr) -> Self {
        use leptos::server_fn::error::ServerFnErrorErr as E;
        let error = match value {
            E::Request(_) => Self::unreachable(),
            E::Args(e) | E::MissingArg(e) | E::Deserialization(e) => Self::new(400, e),
            other => Self::new(500, other.to_string()),
        };
        // On the server this is an error raised before the function's body
        // ran (arguments it could not read): its answer takes the error's
        // status, as the body's errors do (`web::finish`), instead of the
        // 500 server_fn puts on every error.
        #[cfg(feature = "ssr")]
        crate::server::web::set_status(&error);
        error
    }
}

#[cfg(test)]
mod tests {
    use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};

    use super::*;

    #[test]
    fn only_a_failed_request_is_unreachable() {
        let offline = AppError::from_server_fn_error(ServerFnErrorErr::Request("connection refused".into()));
        assert!(offline.is_unreachable());
        assert!(!AppError::unavailable("The message log is unavailable").is_unreachable());
        assert!(!AppError::internal().is_unreachable());
    }

    #[test]
    fn a_rate_limit_says_when_to_come_back() {
        let e = AppError::rate_limited(42);
        assert_eq!((e.status, e.retry_after), (429, Some(42)));
        assert_eq!(e.message, "Too many attempts; try again in 42 seconds");
        assert_eq!(AppError::rate_limited(0).message, "Too many attempts; try again in 1 second");
        assert_eq!(wait_phrase(600), "in 10 minutes");
    }

    #[test]
    fn a_real_503_crosses_the_wire_as_a_503() {
        let sent = AppError::unavailable("Message not sent: the message log is unavailable. Please retry.");
        let json = serde_json::to_string(&sent).unwrap();
        assert_eq!(
            json,
            r#"{"status":503,"message":"Message not sent: the message log is unavailable. Please retry."}"#
        );
        let received: AppError = serde_json::from_str(&json).unwrap();
        assert_eq!(received, sent);
        assert!(!received.is_unreachable());
        // A body without a status is a server error, not "unreachable".
        assert!(!serde_json::from_str::<AppError>(r#"{"message":"x"}"#).unwrap().is_unreachable());
    }
}

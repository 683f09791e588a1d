//! The one error type of Charcha's data API. The REST routes render it as
//! `{message, errors}` with its HTTP status; server functions carry it to the
//! wasm client whole, so forms can show each field's errors next to the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    /// HTTP status this error maps to.
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
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(429, "Too many attempts; try again later")
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, message)
    }
    pub fn internal() -> Self {
        Self::new(500, "Internal server error")
    }

    /// First message for `field`, if any.
    pub fn field_error(&self, field: &str) -> Option<String> {
        self.errors.get(field).and_then(|v| v.first()).cloned()
    }
}

impl leptos::server_fn::error::FromServerFnError for AppError {
    type Encoder = leptos::server_fn::codec::JsonEncoding;

    fn from_server_fn_error(value: leptos::server_fn::error::ServerFnErrorErr) -> Self {
        use leptos::server_fn::error::ServerFnErrorErr as E;
        match value {
            E::Request(_) => Self::new(503, "Cannot reach the server. Check your connection."),
            E::Args(e) | E::MissingArg(e) | E::Deserialization(e) => Self::new(400, e),
            other => Self::new(500, other.to_string()),
        }
    }
}

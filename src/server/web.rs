//! Glue between Leptos server functions and the services: the request's
//! state, caller, client address and cookies, as server functions see them.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue, header::SET_COOKIE};
use leptos::prelude::use_context;
use leptos_axum::ResponseOptions;

use super::{
    auth::{AuthUser, clear_cookie, session_cookie},
    client_ip::ClientIp,
    ratelimit,
    state::AppState,
};
use crate::api::AppError;

pub const AUTH_RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

pub fn state() -> Result<AppState, AppError> {
    use_context::<AppState>().ok_or_else(|| {
        tracing::error!("AppState missing from the server function context");
        AppError::internal()
    })
}

/// The form of a multipart server function, or 400 when the body is not one.
pub fn multipart(data: leptos::server_fn::codec::MultipartData) -> Result<multer::Multipart<'static>, AppError> {
    data.into_inner().ok_or_else(|| AppError::bad_request("Expected a multipart form"))
}

/// The caller, from the request's cookie or bearer token.
pub async fn request_auth(state: &AppState) -> Result<AuthUser, AppError> {
    let headers: HeaderMap = leptos_axum::extract().await.map_err(|_| AppError::unauthorized("Not authenticated"))?;
    state.auth.authenticate_headers(&headers).await
}

/// Sets the HTTP status of a failing server function's response.
pub fn set_status(error: &AppError) {
    if let Some(resp) = use_context::<ResponseOptions>()
        && let Ok(status) = http::StatusCode::from_u16(error.status)
    {
        resp.set_status(status);
        // 429 and 503 say when to come back, as the REST routes do.
        if let Some(secs) = error.retry_after {
            resp.insert_header(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
    }
}

pub fn set_session_cookie(state: &AppState, token: &str) {
    append_cookie(session_cookie(token, state.auth.tokens().ttl().as_secs(), state.config.is_production()));
}

pub fn clear_session_cookie(state: &AppState) {
    append_cookie(clear_cookie(state.config.is_production()));
}

fn append_cookie(value: String) {
    if let (Some(resp), Ok(v)) = (use_context::<ResponseOptions>(), HeaderValue::from_str(&value)) {
        resp.append_header(SET_COOKIE, v);
    }
}

/// Counts a sign-up/log-in attempt against the caller's IP (the same
/// [`ClientIp`] the REST routes use: behind a trusted proxy, the client's).
pub async fn check_auth_rate(state: &AppState) -> Result<(), AppError> {
    let ClientIp(ip) = leptos_axum::extract_with_state::<ClientIp, AppState>(state).await.map_err(|e| {
        tracing::error!("no client address for a server function: {e}");
        AppError::internal()
    })?;
    auth_rate(state, ip).await
}

/// Shared by the REST routes and the server functions.
pub async fn auth_rate(state: &AppState, ip: IpAddr) -> Result<(), AppError> {
    let limit = state.config.limits.auth_rate_per_minute;
    ratelimit::check(state.limiter.as_ref(), &format!("auth:{ip}"), limit, AUTH_RATE_WINDOW)
        .await
        .map_err(AppError::rate_limited)
}

/// Ends a server function: a failure also sets the response's HTTP status,
/// so server functions answer like the REST routes (401, 409, 413, …).
pub fn finish<T>(result: Result<T, AppError>) -> Result<T, AppError> {
    if let Err(e) = &result {
        set_status(e);
    }
    result
}

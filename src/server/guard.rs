//! Request guards and response headers every route gets.
//!
//! * [`cross_site_guard`]: a state-changing request (anything but GET, HEAD,
//!   OPTIONS) from another site is refused before any handler runs. Browsers
//!   say where a request comes from (`Sec-Fetch-Site`, `Origin`); a foreign
//!   page's form post to `/api/auth/login` would otherwise log the victim
//!   into the attacker's account (login CSRF). Clients that send neither
//!   header are not browsers and carry no ambient credentials worth
//!   stealing. The `SameSite=Lax` cookie stays as the second barrier.
//! * [`server_fn_body_limit`]: each server function's body is bounded like
//!   its REST twin (JSON at `max_json_bytes`, the avatar and image forms at
//!   their upload limits), not only by the app-wide ceiling.
//! * [`security_headers`]: `nosniff`, no framing, a strict referrer policy,
//!   HSTS in production, a locked-down CSP on everything that is not a page
//!   (pages set their own, with the render's nonce: see `app::shell`), and
//!   `Cache-Control: no-store` on signed-in API answers and pages.

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::state::AppState;
use crate::api::AppError;

/// True when `headers` (of a browser request) say it comes from this site.
/// Non-browser clients (no `Sec-Fetch-Site`, no `Origin`) pass.
pub fn same_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        // `none`: the user typed the URL or used a bookmark.
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => origin_matches_host(origin, headers.get(header::HOST)),
    }
}

/// `Origin` names the host (and port) the request was sent to.
pub fn origin_matches_host(origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), host.map(|h| h.to_str())) else {
        return false;
    };
    let origin_host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host))
}

pub async fn cross_site_guard(req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !same_site(req.headers()) {
        return AppError::forbidden("Cross-site request refused").into_response();
    }
    next.run(req).await
}

/// Room for the multipart framing and text fields around an upload.
const FORM_OVERHEAD: usize = 64 * 1024;

/// The largest body the server function at `path` takes, or `None` for a
/// path that is not a server function.
fn server_fn_limit(state: &AppState, path: &str) -> Option<usize> {
    use leptos::server_fn::ServerFn;
    if !path.starts_with("/api/fn/") {
        return None;
    }
    let limits = &state.config.limits;
    Some(if path == crate::api::auth::UpdateProfile::PATH {
        limits.avatar_max_bytes + FORM_OVERHEAD
    } else if path == crate::api::chat::UploadImage::PATH {
        limits.image_max_bytes + FORM_OVERHEAD
    } else {
        limits.max_json_bytes
    })
}

pub async fn server_fn_body_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(limit) = server_fn_limit(&state, req.uri().path()) else { return next.run(req).await };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return too_large(limit);
    }
    // A body without (or lying about) its length is cut off at the limit:
    // reading past it fails instead of buffering more.
    let (parts, body) = req.into_parts();
    let body = Body::new(http_body_util::Limited::new(body, limit));
    next.run(Request::from_parts(parts, body)).await
}

fn too_large(limit: usize) -> Response {
    AppError::too_large(format!("Request body too large (limit {limit} bytes)")).into_response()
}

/// What a response that is not a page may do in a browser: nothing.
const NON_PAGE_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let signed_in = req.headers().contains_key(header::AUTHORIZATION)
        || req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .any(|c| c.to_str().is_ok_and(|c| c.split(';').any(|p| p.trim_start().starts_with("token="))));
    let mut response: Response<Body> = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if state.config.is_production() {
        headers
            .insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let page = content_type.starts_with("text/html");
    let dynamic = page || content_type.starts_with("application/json") || content_type.starts_with("text/plain");
    if !page && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(NON_PAGE_CSP));
    }
    // A signed-in answer is someone's data: never kept by a shared or
    // back-forward cache. (Media sets its own private caching.)
    if signed_in && dynamic {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The page CSP for a render with `nonce`: scripts only from this origin or
/// with the nonce (Leptos' hydration script), wasm compilation allowed,
/// same-origin connections (the WebSocket), images from here, blobs (the
/// composer's previews) and data URLs. `extra_connect` is the dev
/// live-reload socket, when there is one.
pub fn page_csp(nonce: &str, extra_connect: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; font-src 'self'; \
         connect-src 'self'{extra_connect}; object-src 'none'; base-uri 'self'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        assert!(same_site(&headers(&[])), "no browser headers: a non-browser client");
        assert!(same_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(same_site(&headers(&[("sec-fetch-site", "none")])));
        assert!(!same_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_site(&headers(&[("origin", "http://chat.example:3000"), ("host", "chat.example:3000")])));
        assert!(!same_site(&headers(&[("origin", "http://evil.example"), ("host", "chat.example")])));
        assert!(!same_site(&headers(&[("origin", "null"), ("host", "chat.example")])));
        // Sec-Fetch-Site wins: a same-origin fetch with an odd Origin passes.
        assert!(same_site(&headers(&[("sec-fetch-site", "same-origin"), ("origin", "http://x")])));
    }
}

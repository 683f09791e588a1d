//! Sign-up / log-in for the bench users: two small HTTP/1.1 JSON POSTs over
//! a plain TCP stream (`Connection: close`), and the token cache.

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

pub const PASSWORD: &str = "bench password 1";

pub fn email(i: usize) -> String {
    format!("bench-{i}@bench.charcha.test")
}

/// `http://host:port` split into what a request needs.
#[derive(Clone, Debug)]
pub struct Base {
    /// `host:port`, for connecting and for the Host header.
    pub authority: String,
    /// `ws://host:port`
    pub ws: String,
}

impl Base {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{url}`: only http:// URLs are supported (a local benchmark needs no TLS)"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("`{url}`: expected http://host:port"));
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Self { ws: format!("ws://{authority}"), authority })
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(300).collect()
    }
}

const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn post_json(base: &Base, path: &str, body: &str) -> Result<HttpResponse, String> {
    post_json_with(base, path, body, "").await
}

/// `POST path` with a JSON body and extra header lines (each ending in
/// `\r\n`), e.g. a bearer token.
pub async fn post_json_with(base: &Base, path: &str, body: &str, extra_headers: &str) -> Result<HttpResponse, String> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json\r\n\
         {extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        base.authority,
        body.len()
    );
    exchange(base, &format!("POST http://{}{path}", base.authority), request).await
}

/// `GET path` with extra header lines (each ending in `\r\n`), e.g. the
/// bearer token `/metrics` needs.
pub async fn get_with(base: &Base, path: &str, extra_headers: &str) -> Result<HttpResponse, String> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {}\r\n{extra_headers}Connection: close\r\n\r\n", base.authority);
    exchange(base, &format!("GET http://{}{path}", base.authority), request).await
}

/// The server's `/metrics` counter `name` (`/metrics` needs the server's
/// CHARCHA_METRICS_TOKEN); `None` when it cannot be read or lacks it.
pub async fn metric_counter(base: &Base, token: Option<&str>, name: &str) -> Option<u64> {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let r = get_with(base, "/metrics", &auth).await.ok()?;
    if r.status != 200 {
        eprintln!("charcha-bench: GET /metrics answered {} (pass the server's token with --metrics-token)", r.status);
        return None;
    }
    let text = String::from_utf8(r.body).ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
}

async fn exchange(base: &Base, what: &str, request: String) -> Result<HttpResponse, String> {
    tokio::time::timeout(HTTP_TIMEOUT, exchange_inner(base, &request))
        .await
        .map_err(|_| format!("{what}: no answer within {} s", HTTP_TIMEOUT.as_secs()))?
        .map_err(|e| format!("{what}: {e}"))
}

async fn exchange_inner(base: &Base, request: &str) -> Result<HttpResponse, String> {
    let mut tcp = TcpStream::connect(&base.authority).await.map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    tcp.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::with_capacity(2048);
    tcp.read_to_end(&mut raw).await.map_err(|e| format!("read: {e}"))?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("truncated response (no end of headers)")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "response headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line `{status_line}`"))?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let rest = &raw[end + 4..];
    let resp = HttpResponse { status, headers, body: Vec::new() };
    let body = if resp.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| format!("bad Content-Length `{len}`"))?;
        if rest.len() < len {
            return Err(format!("truncated body ({} of {len} bytes)", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { body, ..resp })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").ok_or("truncated chunked body")?;
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size `{size_text}`"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// What a bench user needs to connect.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cred {
    pub user_id: String,
    pub token: String,
}

#[derive(Deserialize)]
struct AuthUser {
    #[serde(rename = "_id")]
    id: String,
}

#[derive(Deserialize)]
struct AuthResponse {
    user: AuthUser,
    token: String,
}

/// How a credential was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Obtained {
    SignedUp,
    LoggedIn,
}

const MAX_ATTEMPTS: usize = 30;

/// One POST, waiting out 429s (Retry-After) and retrying transient failures
/// (connection errors, 503) a few times.
async fn post_retrying(base: &Base, path: &str, body: &str) -> Result<HttpResponse, String> {
    let mut last = String::new();
    for attempt in 0..MAX_ATTEMPTS {
        match post_json(base, path, body).await {
            Ok(r) if r.status == 429 => {
                let secs: f64 = r.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(1.0);
                last = format!("429 (Retry-After {secs})");
                tokio::time::sleep(Duration::from_secs_f64(secs.clamp(0.1, 60.0))).await;
            }
            Ok(r) if r.status == 503 => {
                last = format!("503 {}", r.body_text());
                tokio::time::sleep(Duration::from_millis(200 * (attempt as u64 + 1))).await;
            }
            Ok(r) => return Ok(r),
            Err(e) if attempt < 4 => {
                last = e;
                tokio::time::sleep(Duration::from_millis(200 * (attempt as u64 + 1))).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(format!("POST {path}: gave up after {MAX_ATTEMPTS} attempts (last: {last})"))
}

fn parse_session(path: &str, r: &HttpResponse) -> Result<Cred, String> {
    let a: AuthResponse = serde_json::from_slice(&r.body)
        .map_err(|e| format!("POST {path}: {} answer is not {{user:{{_id}},token}}: {e}", r.status))?;
    Ok(Cred { user_id: a.user.id, token: a.token })
}

pub async fn login(base: &Base, i: usize) -> Result<HttpResponse, String> {
    let body = serde_json::json!({ "email": email(i), "password": PASSWORD }).to_string();
    post_retrying(base, "/api/auth/login", &body).await
}

/// Signs bench user `i` up, or logs in when the account exists (409).
pub async fn signup_or_login(base: &Base, i: usize) -> Result<(Cred, Obtained), String> {
    let body =
        serde_json::json!({ "email": email(i), "password": PASSWORD, "full_name": format!("Bench {i}") }).to_string();
    let r = post_retrying(base, "/api/auth/signup", &body).await?;
    match r.status {
        201 => Ok((parse_session("/api/auth/signup", &r)?, Obtained::SignedUp)),
        409 => {
            let r = login(base, i).await?;
            match r.status {
                200 => Ok((parse_session("/api/auth/login", &r)?, Obtained::LoggedIn)),
                s => Err(format!("POST /api/auth/login ({}): {s} {}", email(i), r.body_text())),
            }
        }
        s => Err(format!("POST /api/auth/signup ({}): {s} {}", email(i), r.body_text())),
    }
}

/// Logs bench user `i` in again (a cached token was refused), signing up
/// when the account does not exist any more.
pub async fn login_or_signup(base: &Base, i: usize) -> Result<(Cred, Obtained), String> {
    let r = login(base, i).await?;
    match r.status {
        200 => Ok((parse_session("/api/auth/login", &r)?, Obtained::LoggedIn)),
        400 | 401 | 404 => signup_or_login(base, i).await,
        s => Err(format!("POST /api/auth/login ({}): {s} {}", email(i), r.body_text())),
    }
}

/// `{cache key (server URL) → {email → cred}}` in a JSON file.
#[derive(Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenCache(BTreeMap<String, BTreeMap<String, Cred>>);

impl TokenCache {
    pub fn load(path: &Path) -> Self {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                eprintln!("warning: ignoring unreadable token cache {}: {e}", path.display());
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec_pretty(&self.0).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, json).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    pub fn get(&self, key: &str, i: usize) -> Option<Cred> {
        self.0.get(key)?.get(&email(i)).cloned()
    }

    pub fn put(&mut self, key: &str, i: usize, cred: Cred) {
        self.0.entry(key.to_string()).or_default().insert(email(i), cred);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked() {
        let r = parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"{}"[..]));
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!(r.body, b"abcde");
        assert_eq!(Base::parse("http://127.0.0.1:3000/").unwrap().ws, "ws://127.0.0.1:3000");
    }
}

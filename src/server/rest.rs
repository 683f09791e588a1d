//! JSON REST API, route for route the original's `/api/auth` and
//! `/api/messages`, plus conversations, groups, media and health. Handlers are thin: they parse,
//! call the same services as the server functions, and render `AppError`.

use axum::{
    Json, Router,
    body::Body,
    extract::{
        DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{delete, get, patch, post},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;

use super::{
    auth::{AuthUser, Session, SignupInput, clear_cookie, session_cookie},
    chat::{MessageChange, SendRequest},
    client_ip::ClientIp,
    media::{ProfileForm, multipart_from_body, read_image_form, read_profile_form},
    state::AppState,
    web::auth_rate,
};
use crate::api::AppError;

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = json!({ "message": self.message });
        if !self.errors.is_empty() {
            body["errors"] = json!(self.errors);
        }
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// `Json<T>` whose rejections are `AppError`s: 400 for syntax and wrong
/// types, 413 over the body limit, 415 without a JSON content type.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> AppError {
    match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::too_large("Request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::unsupported_media("Expected Content-Type: application/json"),
        _ => AppError::bad_request(format!("Invalid JSON body: {}", r.body_text())),
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        state.auth.authenticate_headers(&parts.headers).await
    }
}

pub fn routes(state: &AppState) -> Router<AppState> {
    let json_limit = DefaultBodyLimit::max(state.config.limits.max_json_bytes);
    // Multipart bodies are streamed and each file is capped while reading;
    // this bounds the whole request on top of that.
    let avatar_limit = DefaultBodyLimit::max(state.config.limits.avatar_max_bytes + 64 * 1024);
    let image_limit = DefaultBodyLimit::max(state.config.limits.image_max_bytes + 64 * 1024);
    Router::new()
        .route("/api/health", get(health))
        .route("/metrics", get(super::metrics::site_handler))
        .route("/api/auth/signup", post(signup).layer(json_limit))
        .route("/api/auth/login", post(login).layer(json_limit))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/update-profile", post(update_profile).put(update_profile).layer(avatar_limit))
        .route("/api/auth/get-user", get(get_user))
        .route("/api/auth/check-auth", get(check_auth))
        .route("/api/messages/users", get(users))
        // A static segment: matched before `/api/messages/{id}` (a peer's history).
        .route("/api/messages/search", get(search_messages))
        .route("/api/conversations", get(conversations))
        .route("/api/conversations/{id}/read", post(mark_read).layer(json_limit))
        .route(
            "/api/conversations/{id}/messages/{message_id}",
            patch(edit_message).delete(delete_message).layer(json_limit),
        )
        .route("/api/conversations/{id}/messages/{message_id}/reactions", post(react).layer(json_limit))
        .route("/api/groups", post(create_group).layer(json_limit))
        .route("/api/groups/{id}", get(group).patch(rename_group).layer(json_limit))
        .route("/api/groups/{id}/members", post(add_members).layer(json_limit))
        .route("/api/groups/{id}/members/{user_id}", delete(remove_member))
        // `{id}`: a user (the direct chat with them) or a group (`grp:…`).
        .route("/api/messages/send/{id}", post(send).layer(json_limit))
        .route("/api/messages/{id}", get(history))
        .route("/api/media", post(upload_media).layer(image_limit))
        .route("/api/media/{id}", get(media))
        .route("/ws", get(super::gateway::upgrade))
}

async fn health(State(state): State<AppState>) -> Response {
    Json(json!({ "status": "ok", "sessions": state.hub.session_count() })).into_response()
}

#[derive(Deserialize)]
struct SignupBody {
    email: String,
    password: String,
    full_name: String,
    #[serde(default)]
    bio: Option<String>,
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

fn session_response(state: &AppState, status: StatusCode, message: &str, session: Session) -> Response {
    let cookie = session_cookie(&session.token, state.auth.tokens().ttl().as_secs(), state.config.is_production());
    let mut resp =
        (status, Json(json!({ "message": message, "user": session.user, "token": session.token }))).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

async fn signup(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: Result<ApiJson<SignupBody>, AppError>,
) -> Result<Response, AppError> {
    auth_rate(&state, ip).await?;
    let ApiJson(b) = body?;
    let session = state
        .auth
        .signup(SignupInput { email: b.email, password: b.password, full_name: b.full_name, bio: b.bio })
        .await?;
    Ok(session_response(&state, StatusCode::CREATED, "Account created", session))
}

async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: Result<ApiJson<LoginBody>, AppError>,
) -> Result<Response, AppError> {
    auth_rate(&state, ip).await?;
    let ApiJson(b) = body?;
    let session = state.auth.login(&b.email, &b.password).await?;
    Ok(session_response(&state, StatusCode::OK, "Logged in", session))
}

/// Always clears the cookie; revokes the token when there is a valid one.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    if let Ok(auth) = state.auth.authenticate_headers(&headers).await {
        state.auth.logout(&auth.claims).await?;
    }
    let mut resp = Json(json!({ "message": "Logged out" })).into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_cookie(state.config.is_production())) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[derive(Deserialize)]
struct ProfileBody {
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    bio: Option<String>,
}

/// Accepts multipart (`full_name`, `bio`, `avatar`) or JSON (`full_name`, `bio`).
async fn update_profile(State(state): State<AppState>, auth: AuthUser, req: Request) -> Result<Response, AppError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let form = match content_type.as_deref() {
        Some(ct) if ct.starts_with("multipart/form-data") => {
            let multipart = multipart_from_body(Some(ct), req.into_body())?;
            read_profile_form(multipart, state.config.limits.avatar_max_bytes).await?
        }
        _ => {
            let ApiJson(b) = ApiJson::<ProfileBody>::from_request(req, &state).await?;
            ProfileForm { full_name: b.full_name, bio: b.bio, avatar: None }
        }
    };
    let user = state.auth.update_profile(&auth.user.id, form).await?;
    Ok(Json(json!({ "message": "Profile updated", "user": user })).into_response())
}

async fn get_user(auth: AuthUser) -> Response {
    Json(json!({ "user": auth.user })).into_response()
}

async fn check_auth(auth: AuthUser) -> Response {
    Json(json!({ "authenticated": true, "user": auth.user })).into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: String,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// The original's contact list (a JSON array of users), paged: `?q=`
/// searches, the next page's cursor is in `X-Next-Cursor` and in a
/// `Link: <…>; rel="next"` header, absent on the last page.
async fn users(
    State(state): State<AppState>,
    auth: AuthUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(q) = query.map_err(|e| AppError::bad_request(format!("Invalid query: {}", e.body_text())))?;
    let page = state.chat.search_contacts(&auth.user.id, &q.q, q.cursor.as_deref(), q.limit).await?;
    let mut response = Json(page.contacts).into_response();
    if let Some(next) = page.next_cursor {
        let mut link = format!("/api/messages/users?cursor={next}");
        if !q.q.is_empty() {
            link.push_str(&format!("&q={}", percent_encode(&q.q)));
        }
        if let Some(limit) = q.limit {
            link.push_str(&format!("&limit={limit}"));
        }
        // Cursors are hex and the query is percent-encoded: valid header values.
        if let (Ok(cursor), Ok(link)) =
            (HeaderValue::from_str(&next), HeaderValue::from_str(&format!("<{link}>; rel=\"next\"")))
        {
            response.headers_mut().insert("x-next-cursor", cursor);
            response.headers_mut().insert(http::header::LINK, link);
        }
    }
    Ok(response)
}

/// Searches the caller's conversations: `?q=` (1 to 100 characters),
/// `cursor` (the previous page's `next_cursor`), `limit`. A
/// [`MessageSearchPage`](crate::api::dto::MessageSearchPage), newest first.
async fn search_messages(
    State(state): State<AppState>,
    auth: AuthUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(q) = query.map_err(|e| AppError::bad_request(format!("Invalid query: {}", e.body_text())))?;
    Ok(Json(state.chat.search_messages(&auth.user.id, &q.q, q.cursor.as_deref(), q.limit).await?).into_response())
}

/// `text` with everything but unreserved URL characters percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Deserialize)]
struct PageQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

/// The signed-in user's conversations, most recent first, paged.
async fn conversations(
    State(state): State<AppState>,
    auth: AuthUser,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(q) = query.map_err(|e| AppError::bad_request(format!("Invalid query: {}", e.body_text())))?;
    Ok(Json(state.chat.conversations(&auth.user, q.cursor.as_deref(), q.limit).await?).into_response())
}

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<String>,
    limit: Option<usize>,
}

async fn history(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(peer): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(q) = query.map_err(|e| AppError::bad_request(e.body_text()))?;
    Ok(Json(state.chat.history(&auth.user.id, &peer, q.before.as_deref(), q.limit).await?).into_response())
}

#[derive(Deserialize)]
struct ReadBody {
    message_id: String,
}

/// Moves the caller's read marker in a conversation (the WebSocket's `read`
/// event does the same): 204, and the other members hear of it live.
async fn mark_read(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(conversation_id): Path<String>,
    body: Result<ApiJson<ReadBody>, AppError>,
) -> Result<Response, AppError> {
    let ApiJson(b) = body?;
    state.chat.mark_read(&auth.user.id, &conversation_id, &b.message_id, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct ReactBody {
    emoji: String,
    on: bool,
}

/// Adds (`on: true`) or removes the caller's emoji under a message: 204;
/// the members see it live.
async fn react(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((conversation_id, message_id)): Path<(String, String)>,
    body: Result<ApiJson<ReactBody>, AppError>,
) -> Result<Response, AppError> {
    let ApiJson(b) = body?;
    state.chat.react(&auth.user.id, &message_id, Some(&conversation_id), &b.emoji, b.on, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct EditBody {
    text: String,
    #[serde(default)]
    client_msg_id: Option<String>,
}

/// Replaces the text of one of the caller's messages: 200 with the new
/// version (`edited_at` set), once the log has it; the members see it live.
async fn edit_message(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((conversation_id, message_id)): Path<(String, String)>,
    body: Result<ApiJson<EditBody>, AppError>,
) -> Result<Response, AppError> {
    let ApiJson(b) = body?;
    let change = MessageChange::Edit { text: b.text };
    let sent = state.chat.change(&auth.user.id, &message_id, Some(&conversation_id), change, b.client_msg_id).await?;
    state.chat.deliver_change(&sent, None).await;
    Ok(([(header::CONTENT_TYPE, "application/json")], sent.json).into_response())
}

/// Deletes one of the caller's messages: 200 with its tombstone.
async fn delete_message(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((conversation_id, message_id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let sent =
        state.chat.change(&auth.user.id, &message_id, Some(&conversation_id), MessageChange::Delete, None).await?;
    state.chat.deliver_change(&sent, None).await;
    Ok(([(header::CONTENT_TYPE, "application/json")], sent.json).into_response())
}

#[derive(Deserialize)]
struct SendBody {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    client_msg_id: Option<String>,
    #[serde(default)]
    reply_to: Option<String>,
}

async fn send(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(peer): Path<String>,
    body: Result<ApiJson<SendBody>, AppError>,
) -> Result<Response, AppError> {
    let ApiJson(b) = body?;
    let req = SendRequest {
        client_msg_id: b.client_msg_id,
        to: peer,
        text: b.text.unwrap_or_default(),
        image: b.image,
        reply_to: b.reply_to,
    };
    let sent = state.chat.send(&auth.user.id, req).await?;
    // The log record's JSON is the message's JSON: no second serialisation.
    Ok((StatusCode::CREATED, [(header::CONTENT_TYPE, "application/json")], sent.json).into_response())
}

#[derive(Deserialize)]
struct CreateGroupBody {
    name: String,
    #[serde(default)]
    member_ids: Vec<String>,
}

/// Creates a group with the caller as its creator and admin: 201 with the
/// [`Group`](crate::api::dto::Group); every member hears of it live.
async fn create_group(
    State(state): State<AppState>,
    auth: AuthUser,
    body: Result<ApiJson<CreateGroupBody>, AppError>,
) -> Result<Response, AppError> {
    let ApiJson(b) = body?;
    let group = state.chat.create_group(&auth.user.id, &b.name, &b.member_ids).await?;
    Ok((StatusCode::CREATED, Json(group)).into_response())
}

/// A group's name and members with their roles (members only; 404 otherwise).
async fn group(State(state): State<AppState>, auth: AuthUser, Path(id): Path<String>) -> Result<Response, AppError> {
    Ok(Json(state.chat.group(&auth.user.id, &id).await?).into_response())
}

#[derive(Deserialize)]
struct RenameGroupBody {
    name: String,
}

/// Renames a group (admins only): 200 with the group.
async fn rename_group(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    body: Result<ApiJson<RenameGroupBody>, AppError>,
) -> Result<Response, AppError> {
    let ApiJson(b) = body?;
    Ok(Json(state.chat.rename_group(&auth.user.id, &id, &b.name).await?).into_response())
}

#[derive(Deserialize)]
struct AddMembersBody {
    user_ids: Vec<String>,
}

/// Adds members to a group (admins only): 200 with the group.
async fn add_members(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    body: Result<ApiJson<AddMembersBody>, AppError>,
) -> Result<Response, AppError> {
    let ApiJson(b) = body?;
    Ok(Json(state.chat.add_members(&auth.user.id, &id, &b.user_ids).await?).into_response())
}

/// Removes a member (admins only; not the creator): 200 with the group.
/// The caller's own id leaves the group instead: 204.
async fn remove_member(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    if user_id == auth.user.id {
        state.chat.leave_group(&auth.user.id, &id).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(state.chat.remove_member(&auth.user.id, &id, &user_id).await?).into_response())
}

async fn upload_media(State(state): State<AppState>, auth: AuthUser, req: Request) -> Result<Response, AppError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let multipart = multipart_from_body(content_type.as_deref(), req.into_body())?;
    let form = read_image_form(multipart, state.config.limits.image_max_bytes).await?;
    let url = state.chat.upload_image(&auth.user.id, form).await?;
    Ok((StatusCode::CREATED, Json(json!({ "url": url }))).into_response())
}

/// Serves media with its sniffed type. Ids are never reused (a new avatar
/// gets a new id), so responses are immutable and cache for a year, and a
/// revalidation is answered without reading the image. Only private media
/// authenticates the viewer.
async fn media(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let viewer = || async { state.auth.authenticate_headers(&headers).await.ok().map(|a| a.user.id) };
    let info = state.chat.media_access(&id, viewer).await?;
    let etag = format!("\"{id}\"");
    let cache = if info.conversation_id.is_some() {
        "private, max-age=31536000, immutable"
    } else {
        "public, max-age=31536000, immutable"
    };
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag), (header::CACHE_CONTROL, cache.to_string())])
            .into_response());
    }
    let data = state.chat.media_data(&id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, info.content_type),
            (header::CACHE_CONTROL, cache.to_string()),
            (header::ETAG, etag),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        Body::from(data),
    )
        .into_response())
}

//! Accounts: sign-up, log-in, log-out (with server-side revocation), the
//! current user, profile updates. One service behind both the REST routes
//! and the server functions.

pub mod password;
pub mod token;

use std::{collections::BTreeMap, sync::Arc};

use http::HeaderMap;

use self::token::{Claims, TokenError, TokenService};
use super::{
    bus::{Audience, Bus},
    clock,
    media::{ImageUpload, ProfileForm},
    presence::Presence,
    quota::Quotas,
    ratelimit::{self, LoginPolicy, LoginThrottle},
    store::{MediaRecord, ProfileChange, Store, StoreError, UserRecord},
};
use crate::{
    api::{
        AppError,
        dto::User,
        rules::{self, normalise_email},
    },
    protocol::ServerEvent,
};

pub const COOKIE_NAME: &str = "token";
const BAD_CREDENTIALS: &str = "Invalid email or password";

#[derive(Clone, Debug)]
pub struct SignupInput {
    pub email: String,
    pub password: String,
    pub full_name: String,
    pub bio: Option<String>,
}

/// A signed-in session: the user and their fresh token.
#[derive(Clone, Debug)]
pub struct Session {
    pub user: User,
    pub token: String,
    pub claims: Claims,
}

/// The caller of an authenticated request.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user: User,
    pub claims: Claims,
}

pub struct AuthService {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    presence: Arc<dyn Presence>,
    tokens: TokenService,
    /// A real hash of a random password: logins for unknown emails verify
    /// against it, so they take as long as logins with a wrong password.
    decoy_hash: String,
    /// Bounded hashing threads shared by sign-up and log-in.
    hasher: password::PasswordHasher,
    /// Log-in attempts per account (next to the per-IP limit the routes apply).
    throttle: Arc<dyn LoginThrottle>,
    login_policy: LoginPolicy,
    quotas: Arc<Quotas>,
}

/// What the account-level limits need, from the drivers and configuration.
pub struct AuthLimits {
    pub throttle: Arc<dyn LoginThrottle>,
    pub login_policy: LoginPolicy,
    pub quotas: Arc<Quotas>,
}

/// The answer to a log-in while the account is locked. The same for every
/// email, existing or not: a lock reveals nothing about the account.
fn account_locked(retry_after: u64) -> AppError {
    let wait = if retry_after >= 120 {
        format!("{} minutes", retry_after.div_ceil(60))
    } else {
        format!("{retry_after} seconds")
    };
    AppError {
        retry_after: Some(retry_after.max(1)),
        ..AppError::new(429, format!("Too many log-in attempts for this account; try again in {wait}"))
    }
}

/// A full hashing queue is a 503 the client may retry after a moment; any
/// other hashing failure is a bug or a broken machine.
fn hashing_error(e: password::PasswordError) -> AppError {
    match e {
        password::PasswordError::Busy => AppError {
            retry_after: Some(password::BUSY_RETRY_AFTER_SECS),
            ..AppError::unavailable(format!(
                "The server is busy; please retry {}",
                crate::api::error::wait_phrase(password::BUSY_RETRY_AFTER_SECS)
            ))
        },
        password::PasswordError::Hash(detail) => {
            tracing::error!("password hashing failed: {detail}");
            AppError::internal()
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate("email") => AppError::conflict("An account with this email already exists"),
            StoreError::Duplicate(what) => AppError::conflict(format!("Duplicate {what}")),
            StoreError::Unavailable(detail) => {
                tracing::error!("store unavailable: {detail}");
                AppError::unavailable("The service is temporarily unavailable; please retry")
            }
            StoreError::Corrupt(detail) => {
                tracing::error!("corrupt record: {detail}");
                AppError::internal()
            }
        }
    }
}

impl AuthService {
    pub async fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        tokens: TokenService,
        limits: AuthLimits,
    ) -> Result<Self, password::PasswordError> {
        let hasher = password::PasswordHasher::for_this_machine()?;
        let decoy_hash = hasher.hash(ulid::Ulid::new().to_string()).await?;
        let AuthLimits { throttle, login_policy, quotas } = limits;
        Ok(Self { store, bus, presence, tokens, hasher, decoy_hash, throttle, login_policy, quotas })
    }

    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    pub async fn signup(&self, input: SignupInput) -> Result<Session, AppError> {
        let email = normalise_email(&input.email);
        let full_name = input.full_name.trim().to_string();
        let bio = input.bio.unwrap_or_default().trim().to_string();
        check_fields([
            ("email", rules::email(&email)),
            ("password", rules::password(&input.password)),
            ("full_name", rules::full_name(&full_name)),
            ("bio", rules::bio(&bio)),
        ])?;
        let password_hash = self.hasher.hash(input.password).await.map_err(hashing_error)?;
        let record = UserRecord {
            id: ulid::Ulid::new().to_string(),
            email,
            password_hash,
            full_name,
            bio,
            avatar_media_id: None,
            created_at_ms: clock::now_ms(),
        };
        self.store.insert_user(&record).await?;
        // Nobody shows a user who did not exist a moment ago, so a sign-up
        // announces nothing; people find the newcomer by searching.
        self.open_session(record.to_user())
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<Session, AppError> {
        let email = normalise_email(email);
        if email.is_empty()
            || email.len() > rules::EMAIL_MAX_BYTES
            || password.is_empty()
            || password.len() > rules::PASSWORD_MAX_BYTES
        {
            return Err(AppError::unauthorized(BAD_CREDENTIALS));
        }
        // Counted before the password is checked, for any email: parallel
        // guesses cannot outrun the count, and a lock says nothing about
        // whether the account exists.
        ratelimit::login_attempt(self.throttle.as_ref(), &email, &self.login_policy).await.map_err(account_locked)?;
        let record = self.store.user_by_email(&email).await?;
        let stored = record.as_ref().map_or_else(|| self.decoy_hash.clone(), |r| r.password_hash.clone());
        let matches = self.hasher.verify(stored, password.to_string()).await.map_err(hashing_error)?;
        match record {
            Some(r) if matches => {
                if let Err(e) = self.throttle.succeeded(&email).await {
                    tracing::warn!("could not reset the log-in throttle: {e}");
                }
                self.open_session(r.to_user())
            }
            _ => Err(AppError::unauthorized(BAD_CREDENTIALS)),
        }
    }

    fn open_session(&self, user: User) -> Result<Session, AppError> {
        let (token, claims) = self.tokens.issue(&user.id).map_err(|e| {
            tracing::error!("{e}");
            AppError::internal()
        })?;
        Ok(Session { user, token, claims })
    }

    /// Revokes the token until its natural expiry: a copy stops working too.
    pub async fn logout(&self, claims: &Claims) -> Result<(), AppError> {
        self.store.revoke_token(&claims.jti, claims.exp.saturating_mul(1000)).await?;
        // Sockets opened with this token close too, on every instance.
        let ended = crate::server::hub::session_ended_frame(&claims.jti);
        if let Err(e) = self.bus.publish(Audience::User(claims.sub.clone()), ended).await {
            tracing::warn!("could not end the sessions of a revoked token: {e}");
        }
        Ok(())
    }

    /// Verifies a raw token: signature, expiry, revocation, user existence.
    pub async fn authenticate(&self, token: &str) -> Result<AuthUser, AppError> {
        let claims = self.tokens.verify(token).map_err(|e| match e {
            TokenError::Expired => AppError::unauthorized("Session expired; please log in again"),
            _ => AppError::unauthorized("Not authenticated"),
        })?;
        if self.store.is_token_revoked(&claims.jti).await? {
            return Err(AppError::unauthorized("Session ended; please log in again"));
        }
        let Some(record) = self.store.user_by_id(&claims.sub).await? else {
            return Err(AppError::unauthorized("Not authenticated"));
        };
        Ok(AuthUser { user: record.to_user(), claims })
    }

    /// Authenticates a request by `Authorization: Bearer` or the `token` cookie.
    pub async fn authenticate_headers(&self, headers: &HeaderMap) -> Result<AuthUser, AppError> {
        match token_from_headers(headers) {
            Some(token) => self.authenticate(&token).await,
            None => Err(AppError::unauthorized("Not authenticated")),
        }
    }

    pub async fn update_profile(&self, user_id: &str, form: ProfileForm) -> Result<User, AppError> {
        let full_name = form.full_name.map(|n| n.trim().to_string());
        let bio = form.bio.map(|b| b.trim().to_string());
        check_fields([
            ("full_name", full_name.as_deref().and_then(rules::full_name)),
            ("bio", bio.as_deref().and_then(rules::bio)),
        ])?;
        // Every edit is broadcast to the user's watchers; an avatar is an upload too.
        self.quotas.profile_update(user_id).await?;
        if let Some(upload) = &form.avatar {
            self.quotas.upload(user_id, upload.data.len()).await?;
        }
        let avatar_media_id = match form.avatar {
            Some(upload) => Some(self.store_avatar(user_id, upload).await?),
            None => None,
        };
        let change = ProfileChange { full_name, bio, avatar_media_id: avatar_media_id.clone() };
        let Some((record, replaced)) = self.store.update_profile(user_id, change).await? else {
            if let Some(id) = avatar_media_id {
                let _ = self.store.delete_media(&id).await;
            }
            return Err(AppError::unauthorized("Not authenticated"));
        };
        if let Some(old) = replaced
            && let Err(e) = self.store.delete_media(&old).await
        {
            tracing::warn!("could not delete replaced avatar {old}: {e}");
        }
        self.announce(&record).await;
        Ok(record.to_user())
    }

    async fn store_avatar(&self, user_id: &str, upload: ImageUpload) -> Result<String, AppError> {
        let media = MediaRecord {
            id: ulid::Ulid::new().to_string(),
            owner_id: user_id.to_string(),
            conversation_id: None,
            content_type: upload.content_type.to_string(),
            data: upload.data,
            created_at_ms: clock::now_ms(),
        };
        self.store.put_media(&media).await?;
        Ok(media.id)
    }

    /// Tells the sessions that show this user (its watchers) about the
    /// changed profile.
    async fn announce(&self, record: &UserRecord) {
        let online = self.presence.is_online(&record.id).await.unwrap_or(false);
        let event = ServerEvent::Contact { contact: record.to_contact(online) };
        if let Err(e) = self.bus.publish(Audience::Watchers(record.id.clone()), event.to_json().into()).await {
            tracing::warn!("could not announce contact change: {e}");
        }
    }
}

/// `Authorization: Bearer <t>` first, then the `token` cookie.
pub fn token_from_headers(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(t) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))
    {
        let t = t.trim();
        if !t.is_empty() {
            return Some(t.to_string());
        }
    }
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == COOKIE_NAME && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

/// `Set-Cookie` value carrying a session token.
pub fn session_cookie(token: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age_secs}{secure}")
}

/// `Set-Cookie` value that deletes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{secure}")
}

/// A 400 listing every field whose rule (see [`rules`]) failed, if any did.
fn check_fields<const N: usize>(checks: [(&str, Option<String>); N]) -> Result<(), AppError> {
    let errors: BTreeMap<String, Vec<String>> =
        checks.into_iter().filter_map(|(field, message)| Some((field.to_string(), vec![message?]))).collect();
    if errors.is_empty() { Ok(()) } else { Err(AppError::validation(errors)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_then_cookie() {
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, "theme=dark; token=abc".parse().unwrap());
        assert_eq!(token_from_headers(&h).as_deref(), Some("abc"));
        h.insert(http::header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(token_from_headers(&h).as_deref(), Some("xyz"));
        assert_eq!(token_from_headers(&HeaderMap::new()), None);
    }
}

//! Account server functions (the UI's side of `/api/auth/*`).

use leptos::prelude::*;
use leptos::server_fn::codec::{MultipartData, MultipartFormData};

use super::json::Reply;

use super::{AppError, dto::User};

/// Creates an account, signs it in (sets the `token` cookie) and returns it.
#[server(prefix = "/api/fn", output = Reply)]
pub async fn signup(
    email: String,
    password: String,
    full_name: String,
    #[server(default)] bio: String,
) -> Result<User, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::{auth::SignupInput, web};
            let state = web::state()?;
            web::check_auth_rate(&state).await?;
            let session = state.auth.signup(SignupInput { email, password, full_name, bio: Some(bio) }).await?;
            web::set_session_cookie(&state, &session.token);
            Ok(session.user)
        }
        .await,
    )
}

/// Signs in; sets the `token` cookie.
#[server(prefix = "/api/fn", output = Reply)]
pub async fn login(email: String, password: String) -> Result<User, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            web::check_auth_rate(&state).await?;
            let session = state.auth.login(&email, &password).await?;
            web::set_session_cookie(&state, &session.token);
            Ok(session.user)
        }
        .await,
    )
}

/// Signs out: revokes the token server-side and clears the cookie.
#[server(prefix = "/api/fn", output = Reply)]
pub async fn logout() -> Result<(), AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            if let Ok(auth) = web::request_auth(&state).await {
                state.auth.logout(&auth.claims).await?;
            }
            web::clear_session_cookie(&state);
            Ok(())
        }
        .await,
    )
}

/// The signed-in user, or `None`.
#[server(prefix = "/api/fn", output = Reply)]
pub async fn current_user() -> Result<Option<User>, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            Ok(web::request_auth(&state).await.ok().map(|a| a.user))
        }
        .await,
    )
}

/// Updates the profile from a multipart form with optional fields
/// `full_name`, `bio` and `avatar` (an image file).
#[server(prefix = "/api/fn", input = MultipartFormData, output = Reply)]
pub async fn update_profile(data: MultipartData) -> Result<User, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            let auth = web::request_auth(&state).await?;
            let multipart = web::multipart(data)?;
            let form = crate::server::media::read_profile_form(multipart, state.config.limits.avatar_max_bytes).await?;
            state.auth.update_profile(&auth.user.id, form).await
        }
        .await,
    )
}

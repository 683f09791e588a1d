//! Chat server functions (the UI's side of `/api/messages/*`). Live traffic
//! goes over the WebSocket (`crate::protocol`); these serve lists, history,
//! uploads and a send path for when the socket is down.

use leptos::prelude::*;
use leptos::server_fn::codec::{MultipartData, MultipartFormData};

use super::json::Reply;

use super::{
    AppError,
    dto::{ChatMessage, Contact, ContactPage, ConversationPage, Group, MessagePage, MessageSearchPage},
};

/// One page of the signed-in user's conversations, most recent first;
/// `cursor` is the previous page's `next_cursor`.
#[server(prefix = "/api/fn", output = Reply)]
pub async fn list_conversations(
    #[server(default)] cursor: Option<String>,
    #[server(default)] limit: Option<u32>,
) -> Result<ConversationPage, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            let auth = web::request_auth(&state).await?;
            state.chat.conversations(&auth.user, cursor.as_deref(), limit.map(|l| l as usize)).await
        }
        .await,
    )
}

/// People whose name has a word starting with `q`, or whose email starts
/// with it; alphabetical, one page at a time.
#[server(prefix = "/api/fn", output = Reply)]
pub async fn search_users(
    q: String,
    #[server(default)] cursor: Option<String>,
    #[server(default)] limit: Option<u32>,
) -> Result<ContactPage, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            let auth = web::request_auth(&state).await?;
            state.chat.search_contacts(&auth.user.id, &q, cursor.as_deref(), limit.map(|l| l as usize)).await
        }
        .await,
    )
}

/// Messages of the signed-in user's conversations with every word of `q`
/// (the last as a prefix), newest first, one page at a time.
#[server(prefix = "/api/fn", output = Reply)]
pub async fn search_messages(
    q: String,
    #[server(default)] cursor: Option<String>,
    #[server(default)] limit: Option<u32>,
) -> Result<MessageSearchPage, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            let auth = web::request_auth(&state).await?;
            state.chat.search_messages(&auth.user.id, &q, cursor.as_deref(), limit.map(|l| l as usize)).await
        }
        .await,
    )
}

/// One user, with presence (a conversation opened by its URL).
#[server(prefix = "/api/fn", output = Reply)]
pub async fn get_contact(id: String) -> Result<Contact, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            let auth = web::request_auth(&state).await?;
            state.chat.contact(&auth.user.id, &id).await
        }
        .await,
    )
}

/// One page of the conversation with `peer_id` (a user, or a group id of
/// which the user is a member): the newest `limit` messages
/// before `before` (a message id), oldest to newest.
#[server(prefix = "/api/fn", output = Reply)]
pub async fn conversation(
    peer_id: String,
    #[server(default)] before: Option<String>,
    #[server(default)] limit: Option<u32>,
) -> Result<MessagePage, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            let auth = web::request_auth(&state).await?;
            state.chat.history(&auth.user.id, &peer_id, before.as_deref(), limit.map(|l| l as usize)).await
        }
        .await,
    )
}

/// Sends a message through the same pipeline as the WebSocket; `peer_id`
/// is a user or a group id.
#[server(prefix = "/api/fn", output = Reply)]
pub async fn send_message(
    peer_id: String,
    client_msg_id: String,
    #[server(default)] text: String,
    #[server(default)] image: Option<String>,
    #[server(default)] reply_to: Option<String>,
) -> Result<ChatMessage, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::{chat::SendRequest, web};
            let state = web::state()?;
            let auth = web::request_auth(&state).await?;
            state
                .chat
                .send(
                    &auth.user.id,
                    SendRequest { client_msg_id: Some(client_msg_id), to: peer_id, text, image, reply_to },
                )
                .await
                .map(|sent| sent.message)
        }
        .await,
    )
}

/// Uploads an image for a message to `to` (multipart fields `to`, `image`);
/// returns its URL, visible to the two participants only.
#[server(prefix = "/api/fn", input = MultipartFormData, output = Reply)]
pub async fn upload_image(data: MultipartData) -> Result<String, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            let auth = web::request_auth(&state).await?;
            let multipart = web::multipart(data)?;
            let upload = crate::server::media::read_image_form(multipart, state.config.limits.image_max_bytes).await?;
            state.chat.upload_image(&auth.user.id, upload).await
        }
        .await,
    )
}

/// Creates a group named `name` with the signed-in user (its admin) and
/// `member_ids`; every member hears of it live.
#[server(prefix = "/api/fn", output = Reply)]
pub async fn create_group(name: String, #[server(default)] member_ids: Vec<String>) -> Result<Group, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            let auth = web::request_auth(&state).await?;
            state.chat.create_group(&auth.user.id, &name, &member_ids).await
        }
        .await,
    )
}

/// A group's name and members with their roles (members only).
#[server(prefix = "/api/fn", output = Reply)]
pub async fn get_group(id: String) -> Result<Group, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            let auth = web::request_auth(&state).await?;
            state.chat.group(&auth.user.id, &id).await
        }
        .await,
    )
}

/// Renames a group (admins only).
#[server(prefix = "/api/fn", output = Reply)]
pub async fn rename_group(id: String, name: String) -> Result<Group, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            let auth = web::request_auth(&state).await?;
            state.chat.rename_group(&auth.user.id, &id, &name).await
        }
        .await,
    )
}

/// Adds members to a group (admins only).
#[server(prefix = "/api/fn", output = Reply)]
pub async fn add_group_members(id: String, user_ids: Vec<String>) -> Result<Group, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            let auth = web::request_auth(&state).await?;
            state.chat.add_members(&auth.user.id, &id, &user_ids).await
        }
        .await,
    )
}

/// Removes a member from a group (admins only; never its creator).
#[server(prefix = "/api/fn", output = Reply)]
pub async fn remove_group_member(id: String, user_id: String) -> Result<Group, AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            let auth = web::request_auth(&state).await?;
            state.chat.remove_member(&auth.user.id, &id, &user_id).await
        }
        .await,
    )
}

/// The signed-in user leaves a group.
#[server(prefix = "/api/fn", output = Reply)]
pub async fn leave_group(id: String) -> Result<(), AppError> {
    crate::server::web::finish(
        async move {
            use crate::server::web;
            let state = web::state()?;
            let auth = web::request_auth(&state).await?;
            state.chat.leave_group(&auth.user.id, &id).await
        }
        .await,
    )
}

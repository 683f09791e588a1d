//! Uploaded images: type detection by content (never by file name or the
//! client's Content-Type), size limits enforced while streaming, and the
//! multipart forms that carry them. One reader serves the REST routes and
//! the server functions, which both hand over a `multer::Multipart`.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

use super::image_meta;
use crate::api::AppError;

/// A validated image.
#[derive(Clone, Debug)]
pub struct ImageUpload {
    pub content_type: &'static str,
    pub data: Bytes,
}

/// Profile edit: every field optional.
#[derive(Clone, Debug, Default)]
pub struct ProfileForm {
    pub full_name: Option<String>,
    pub bio: Option<String>,
    pub avatar: Option<ImageUpload>,
}

/// A message image and the user it is for.
#[derive(Clone, Debug)]
pub struct ImageForm {
    pub to: String,
    pub image: ImageUpload,
}

const MAX_TEXT_FIELD_BYTES: usize = 16 * 1024;

/// The image type of `data` from its magic bytes: PNG, JPEG, GIF or WebP.
pub fn sniff_image(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// The image of an upload (avatar or message image), typed by content and
/// stripped of its location and camera metadata (see [`image_meta`]).
pub fn validate_image(data: Bytes) -> Result<ImageUpload, AppError> {
    let Some(content_type) = sniff_image(&data) else {
        return Err(AppError::unsupported_media("Only PNG, JPEG, WebP and GIF images are accepted"));
    };
    let data = match image_meta::strip_metadata(content_type, &data) {
        Ok(Cow::Borrowed(_)) => data,
        Ok(Cow::Owned(stripped)) => Bytes::from(stripped),
        Err(e) => return Err(AppError::bad_request(format!("Unreadable image: {e}"))),
    };
    Ok(ImageUpload { content_type, data })
}

fn multipart_error(e: multer::Error) -> AppError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            AppError::too_large("The upload is too large")
        }
        other => AppError::bad_request(format!("Malformed multipart form: {other}")),
    }
}

async fn read_limited(field: &mut multer::Field<'_>, max: usize, what: &str) -> Result<Bytes, AppError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if buf.len() + chunk.len() > max {
            return Err(AppError::too_large(format!("{what} must be at most {} KiB", max / 1024)));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

async fn read_text(field: &mut multer::Field<'_>, name: &str) -> Result<String, AppError> {
    let bytes = read_limited(field, MAX_TEXT_FIELD_BYTES, name).await?;
    String::from_utf8(bytes.to_vec()).map_err(|_| AppError::field(name, "Must be valid UTF-8 text"))
}

/// Reads `full_name`, `bio` and `avatar` (a file; an empty file part, as
/// browsers send when nothing was chosen, means "unchanged").
pub async fn read_profile_form(mut form: multer::Multipart<'_>, avatar_max: usize) -> Result<ProfileForm, AppError> {
    let mut out = ProfileForm::default();
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            "full_name" => out.full_name = Some(read_text(&mut field, "full_name").await?),
            "bio" => out.bio = Some(read_text(&mut field, "bio").await?),
            "avatar" => {
                let data = read_limited(&mut field, avatar_max, "Avatar").await?;
                if !data.is_empty() {
                    out.avatar = Some(validate_image(data)?);
                }
            }
            // Unknown fields are drained and ignored, like unknown JSON keys.
            _ => while field.chunk().await.map_err(multipart_error)?.is_some() {},
        }
    }
    Ok(out)
}

/// Reads `to` (recipient id) and `image` (a file).
pub async fn read_image_form(mut form: multer::Multipart<'_>, image_max: usize) -> Result<ImageForm, AppError> {
    let (mut to, mut image) = (None, None);
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            "to" => to = Some(read_text(&mut field, "to").await?.trim().to_string()),
            "image" => {
                let data = read_limited(&mut field, image_max, "Image").await?;
                if data.is_empty() {
                    return Err(AppError::field("image", "Choose an image"));
                }
                image = Some(validate_image(data)?);
            }
            _ => while field.chunk().await.map_err(multipart_error)?.is_some() {},
        }
    }
    match (to, image) {
        (Some(to), Some(image)) if !to.is_empty() => Ok(ImageForm { to, image }),
        (_, None) => Err(AppError::field("image", "Choose an image")),
        _ => Err(AppError::field("to", "Recipient is required")),
    }
}

/// Builds a multipart reader from a raw request body and its Content-Type.
pub fn multipart_from_body(
    content_type: Option<&str>,
    body: axum::body::Body,
) -> Result<multer::Multipart<'static>, AppError> {
    let boundary = content_type
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or_else(|| AppError::unsupported_media("Expected multipart/form-data"))?;
    Ok(multer::Multipart::new(body.into_data_stream(), boundary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_content() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"GIF89a..."), Some("image/gif"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"<svg xmlns=...>"), None);
        assert_eq!(sniff_image(b""), None);
    }
}

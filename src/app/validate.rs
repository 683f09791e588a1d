//! Client-side form checks, so most mistakes are caught before a round
//! trip. The field rules are the server's own ([`crate::api::rules`], compiled
//! into both builds), so the two cannot disagree; the server stays
//! authoritative: whatever it answers in `AppError.errors` replaces these
//! messages.

use std::collections::BTreeMap;

pub use crate::api::rules::{
    BIO_MAX_CHARS, EMAIL_MAX_BYTES, FULL_NAME_MAX_CHARS, PASSWORD_MAX_BYTES, PASSWORD_MIN_CHARS, bio, email, full_name,
    password,
};

/// Field name (as sent to the server) → message to show under that field.
pub type FieldMessages = BTreeMap<&'static str, String>;

/// Image types the server accepts, for avatars and message images alike
/// (it checks the content, see `server::media::sniff_image`).
pub const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/webp", "image/gif"];
/// `accept` attribute value matching [`IMAGE_TYPES`].
pub const IMAGE_ACCEPT: &str = "image/png,image/jpeg,image/webp,image/gif";

/// `None` when `mime` is an image type the server accepts.
pub fn image_type(mime: &str) -> Option<String> {
    (!IMAGE_TYPES.contains(&mime)).then(|| "Choose a PNG, JPEG, WebP or GIF image".to_string())
}

/// Checks the login form.
pub fn login(email_value: &str, password_value: &str) -> FieldMessages {
    collect([("email", email(email_value)), ("password", login_password(password_value))])
}

/// Checks the signup form.
pub fn signup(full_name_value: &str, email_value: &str, password_value: &str, bio_value: &str) -> FieldMessages {
    collect([
        ("full_name", full_name(full_name_value)),
        ("email", email(email_value)),
        ("password", password(password_value)),
        ("bio", bio(bio_value)),
    ])
}

/// Checks the profile form's text fields (the avatar is checked on its own,
/// with [`image_type`]).
pub fn profile(full_name_value: &str, bio_value: &str) -> FieldMessages {
    collect([("full_name", full_name(full_name_value)), ("bio", bio(bio_value))])
}

/// At login only emptiness is checked: a wrong-length password simply fails
/// to match, and saying why would leak nothing useful to the user.
fn login_password(value: &str) -> Option<String> {
    value.is_empty().then(|| "Password is required".to_string())
}

fn collect<const N: usize>(checks: [(&'static str, Option<String>); N]) -> FieldMessages {
    checks.into_iter().filter_map(|(field, message)| message.map(|m| (field, m))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_report_each_bad_field() {
        let errors = signup("", "nope", "short", "");
        assert_eq!(errors.keys().copied().collect::<Vec<_>>(), ["email", "full_name", "password"]);
        assert!(signup("Ada", "ada@example.com", "correct horse", "").is_empty());
        assert!(signup("Ada", "ada@example.com", "correct horse", &"x".repeat(501)).contains_key("bio"));
        assert!(login("ada@example.com", "x").is_empty());
        assert_eq!(login("", "").len(), 2);
        assert!(profile("Ada", "").is_empty());
        assert_eq!(profile(" ", &"x".repeat(501)).keys().copied().collect::<Vec<_>>(), ["bio", "full_name"]);
    }

    #[test]
    fn image_types_match_accept_attribute() {
        for mime in IMAGE_TYPES {
            assert!(image_type(mime).is_none());
            assert!(IMAGE_ACCEPT.contains(mime));
        }
        assert!(image_type("image/svg+xml").is_some());
    }

    /// The client's list is the server's: every type the server sniffs is
    /// one the pickers offer.
    #[cfg(feature = "ssr")]
    #[test]
    fn image_types_are_the_servers() {
        let samples: [&[u8]; 4] =
            [b"\x89PNG\r\n\x1a\n....", &[0xFF, 0xD8, 0xFF, 0xE0], b"GIF89a...", b"RIFF\0\0\0\0WEBPVP8 "];
        let sniffed: Vec<&str> = samples.iter().filter_map(|s| crate::server::media::sniff_image(s)).collect();
        assert_eq!(sniffed.len(), IMAGE_TYPES.len());
        for mime in sniffed {
            assert!(IMAGE_TYPES.contains(&mime), "{mime}");
        }
    }
}

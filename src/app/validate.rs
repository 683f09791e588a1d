//! Client-side checks that mirror the server's rules, so most mistakes are
//! caught before a round trip. The server stays authoritative: whatever it
//! answers in `AppError.errors` replaces these messages.

use std::collections::BTreeMap;

/// Field name (as sent to the server) → message to show under that field.
pub type FieldMessages = BTreeMap<&'static str, String>;

/// Password bounds, in bytes (the server counts bytes, not characters).
pub const PASSWORD_MIN_BYTES: usize = 8;
pub const PASSWORD_MAX_BYTES: usize = 128;
/// Full name bounds, in characters, after trimming.
pub const FULL_NAME_MAX_CHARS: usize = 50;
/// Image types the server accepts, for avatars and message images alike
/// (it checks the content, see `server::media::sniff_image`).
pub const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/webp", "image/gif"];
/// `accept` attribute value matching [`IMAGE_TYPES`].
pub const IMAGE_ACCEPT: &str = "image/png,image/jpeg,image/webp,image/gif";

pub fn email(value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() {
        Some("Email is required".into())
    } else if !value.contains('@') || value.starts_with('@') || value.ends_with('@') {
        Some("Enter a valid email address".into())
    } else {
        None
    }
}

pub fn password(value: &str) -> Option<String> {
    let len = value.len();
    if len == 0 {
        Some("Password is required".into())
    } else if !(PASSWORD_MIN_BYTES..=PASSWORD_MAX_BYTES).contains(&len) {
        Some(format!(
            "Password must be {PASSWORD_MIN_BYTES} to {PASSWORD_MAX_BYTES} characters long"
        ))
    } else {
        None
    }
}

pub fn full_name(value: &str) -> Option<String> {
    let chars = value.trim().chars().count();
    if chars == 0 {
        Some("Full name is required".into())
    } else if chars > FULL_NAME_MAX_CHARS {
        Some(format!("Full name must be at most {FULL_NAME_MAX_CHARS} characters"))
    } else {
        None
    }
}

/// `None` when `mime` is an image type the server accepts.
pub fn image_type(mime: &str) -> Option<String> {
    (!IMAGE_TYPES.contains(&mime)).then(|| "Choose a PNG, JPEG, WebP or GIF image".to_string())
}

/// Checks the login form.
pub fn login(email_value: &str, password_value: &str) -> FieldMessages {
    collect([("email", email(email_value)), ("password", login_password(password_value))])
}

/// Checks the signup form (the bio is free text; the server bounds it).
pub fn signup(full_name_value: &str, email_value: &str, password_value: &str) -> FieldMessages {
    collect([
        ("full_name", full_name(full_name_value)),
        ("email", email(email_value)),
        ("password", password(password_value)),
    ])
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
    fn email_needs_an_at_sign_between_parts() {
        assert!(email("ada@example.com").is_none());
        assert!(email("  ada@example.com ").is_none());
        assert!(email("").is_some());
        assert!(email("ada.example.com").is_some());
        assert!(email("@example.com").is_some());
        assert!(email("ada@").is_some());
    }

    #[test]
    fn password_is_bounded_in_bytes() {
        assert!(password("12345678").is_none());
        assert!(password("1234567").is_some());
        assert!(password(&"x".repeat(128)).is_none());
        assert!(password(&"x".repeat(129)).is_some());
        // 4 characters but 8 bytes: accepted, like the server.
        assert!(password("éééé").is_none());
    }

    #[test]
    fn full_name_is_bounded_in_characters() {
        assert!(full_name("Ada").is_none());
        assert!(full_name("   ").is_some());
        assert!(full_name(&"é".repeat(50)).is_none());
        assert!(full_name(&"é".repeat(51)).is_some());
    }

    #[test]
    fn forms_report_each_bad_field() {
        let errors = signup("", "nope", "short");
        assert_eq!(errors.keys().copied().collect::<Vec<_>>(), ["email", "full_name", "password"]);
        assert!(signup("Ada", "ada@example.com", "correct horse").is_empty());
        assert!(login("ada@example.com", "x").is_empty());
        assert_eq!(login("", "").len(), 2);
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
